//! The speed and memory benchmark behind `glowflow bench`: for one architecture and batch size,
//! on synthetic random 8-bit images, the median time of
//!
//! - a training step: forward, backward (stored or recomputed activations) and an Adam update;
//! - an exact log-likelihood evaluation of the batch (no graph);
//! - sampling a batch at temperature 0.7;
//!
//! each after untimed warm-up repetitions (on a GPU, each repetition ends when the device has
//! finished its work), with the peak resident memory of each phase (Linux
//! `VmHWM`, reset through `/proc/self/clear_refs`). Activation memory is measured around the
//! gradient pass of every training step (forward and backward, before the optimiser update): its
//! peak minus the resident memory just before it minus the gradients it allocates (one f32 per
//! parameter), the largest over the steps. `bench/torch_reference.py` measures PyTorch the same
//! way. On a GPU the device memory is what burn's memory pool holds reserved at the end of each
//! phase (the pool keeps what it reserved for reuse, so this is the phase's high-water mark).

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::device::shards_on;
use crate::error::{GlowError, Result};
use crate::flow::conv::{set_conv_route, ConvRoute};
use crate::likelihood::preprocess;
use crate::model::config::GlowConfig;
use crate::model::params::flat_params;
use crate::train::config::DEFAULT_WEIGHT_Y;
use crate::train::gradients::{loss_and_gradients, GradientPass};
use crate::train::optimizer::{OptimizerSettings, OptimizerState};
use crate::train::trainer::apply_gradients;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Images per batch.
    pub batch_size: usize,
    /// Untimed repetitions before timing.
    pub warmup: usize,
    /// Timed repetitions (the median is reported).
    pub repeats: usize,
    /// Constant-memory training step.
    pub recompute_activations: bool,
    /// Phases to run, among `train`, `eval`, `sample`.
    pub phases: Vec<String>,
    /// Seed of the images and weights.
    pub seed: u64,
    /// How the coupling networks' convolutions are computed; the benchmark sets it for the whole
    /// process ([`set_conv_route`]).
    pub conv: ConvRoute,
}

/// One phase's timings and memory.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    /// Seconds of every timed repetition.
    pub times_s: Vec<f64>,
    /// Their median.
    pub median_s: f64,
    /// Batch size over the median.
    pub images_per_s: f64,
    /// Peak resident memory during the phase (MiB).
    pub peak_rss_mib: f64,
    /// Device memory reserved by burn's pool at the end of the phase (MiB); `None` on the CPU.
    pub device_reserved_mib: Option<f64>,
}

/// The benchmark's output (written as JSON by the CLI).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The architecture.
    pub config: GlowConfig,
    /// The options.
    pub options: BenchOptions,
    /// Float parameters (trained or not).
    pub parameters: usize,
    /// Resident memory before the model was built (MiB).
    pub baseline_rss_mib: f64,
    /// Concurrent shards of a batch ([`crate::parallel`]): one per worker thread on the CPU, one
    /// on a GPU.
    pub shards: usize,
    /// Gradients alive at the end of a gradient pass, 4 bytes per parameter (MiB): one set per
    /// shard with stored activations, one set in all when recomputing (whose shards split each
    /// map's backward pass and add up their gradients at once).
    pub gradients_mib: f64,
    /// Training step, if run.
    pub train: Option<PhaseResult>,
    /// Largest gradient-pass peak - resident before it - gradients (MiB), if training ran.
    pub activation_mib: Option<f64>,
    /// Exact log-likelihood evaluation, if run.
    pub eval: Option<PhaseResult>,
    /// Sampling at temperature 0.7, if run.
    pub sample: Option<PhaseResult>,
    /// Worker threads of the CPU backend (rayon).
    pub threads: usize,
    /// The device, as burn describes it.
    pub device: String,
    /// glibc's tunables this process ran with (`GLIBC_TUNABLES`), if any: the `glowflow`
    /// program adds `glibc.malloc.hugetlb=1` itself where the kernel gives transparent huge pages
    /// only on request, and the peers of `bench/speed.sh` run with it too.
    pub glibc_tunables: Option<String>,
}

/// `(VmRSS, VmHWM)` of this process in MiB (zeros where /proc is not available).
fn resident_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident memory to the current one (Linux `clear_refs` mode 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Waits until `device` has finished the work queued on it (a no-op on the CPU, which runs each
/// operation when it is called).
fn finish(device: &Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| GlowError::Device(format!("{device:?} failed while benchmarking: {e:?}")))
}

/// Times `run` `warmup + repeats` times on `device` and records the phase's peak memory.
fn time_phase(
    options: &BenchOptions,
    device: &Device,
    mut run: impl FnMut() -> Result<()>,
) -> Result<PhaseResult> {
    reset_peak();
    for _ in 0..options.warmup {
        run()?;
    }
    finish(device)?;
    let mut times_s = Vec::with_capacity(options.repeats);
    for _ in 0..options.repeats {
        let started = Instant::now();
        run()?;
        finish(device)?;
        times_s.push(started.elapsed().as_secs_f64());
    }
    let mut sorted = times_s.clone();
    sorted.sort_by(f64::total_cmp);
    let median_s = sorted[sorted.len() / 2];
    Ok(PhaseResult {
        times_s,
        median_s,
        images_per_s: options.batch_size as f64 / median_s,
        peak_rss_mib: resident_mib().1,
        device_reserved_mib: device
            .memory_pool_usage()
            .map(|usage| usage.bytes_reserved as f64 / (1024.0 * 1024.0)),
    })
}

/// Runs the benchmark for `config` on `device` (the CPU, or a GPU: [`crate::device`]).
pub fn run_benchmark(
    config: &GlowConfig,
    options: &BenchOptions,
    device: &Device,
) -> Result<BenchResult> {
    config.validate()?;
    if options.repeats == 0 || options.batch_size == 0 {
        return Err(GlowError::Config(
            "bench needs at least one repetition and one image per batch".into(),
        ));
    }
    for phase in &options.phases {
        if !["train", "eval", "sample"].contains(&phase.as_str()) {
            return Err(GlowError::Config(format!(
                "unknown benchmark phase `{phase}`; choose from train, eval, sample"
            )));
        }
    }
    set_conv_route(options.conv);
    let wants = |p: &str| options.phases.iter().any(|q| q == p);
    let baseline_rss_mib = resident_mib().0;
    let image = config.image;
    let shape = [
        options.batch_size,
        image.channels,
        image.height,
        image.width,
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let count = shape.iter().product();
    let pixels: Vec<f32> = (0..count).map(|_| f32::from(rng.random::<u8>())).collect();
    let noise: Vec<f32> = (0..count).map(|_| rng.random::<f32>()).collect();
    let tensors = |device: &Device| {
        (
            Tensor::<4>::from_data(TensorData::new(pixels.clone(), shape), device),
            Tensor::<4>::from_data(TensorData::new(noise.clone(), shape), device),
        )
    };
    let train_device = device.clone().autodiff();
    let (images, dequantise) = tensors(&train_device);
    let x = preprocess(images, dequantise, config.n_bits);
    let classes = match config.n_classes {
        0 => None,
        k => Some(crate::flow::prior::one_hot(
            &(0..options.batch_size).map(|i| i % k).collect::<Vec<_>>(),
            k,
            &train_device,
        )?),
    };
    let mut model = Some(config.init(&train_device)?.data_init(x, classes.as_ref())?);
    let parameters: usize = flat_params(model.as_ref().expect("built"))
        .iter()
        .map(|p| p.dims()[0])
        .sum();
    let per_device = shards_on(device, crate::parallel::worker_threads());
    let shards = crate::parallel::split(options.batch_size, per_device).len();
    let gradient_sets = if options.recompute_activations {
        1
    } else {
        shards
    };
    let gradients_mib = (gradient_sets * parameters * 4) as f64 / (1024.0 * 1024.0);
    let mut activation_mib: Option<f64> = None;
    let mut step_peak_mib = 0.0f64;

    let train = if wants("train") {
        let settings = OptimizerSettings::adam();
        let mut optimizer = OptimizerState::new(&flat_params(model.as_ref().expect("built")));
        Some(time_phase(options, device, || {
            let (images, dequantise) = tensors(&train_device);
            let current = model.take().expect("a model between steps");
            let before = resident_mib().0;
            reset_peak();
            let pass = GradientPass {
                recompute: options.recompute_activations,
                shards,
                weight_y: DEFAULT_WEIGHT_Y,
            };
            // The loss is read back, so the gradient pass has finished when this returns.
            let (_, grads) = loss_and_gradients(
                &current,
                images,
                dequantise,
                classes.as_ref(),
                pass,
                &Cluster::single(),
            )?;
            let activation = resident_mib().1 - before - gradients_mib;
            activation_mib = Some(activation_mib.map_or(activation, |a| a.max(activation)));
            let (updated, _) =
                apply_gradients(current, &mut optimizer, &settings, 1e-4, 1.0, grads);
            model = Some(updated);
            step_peak_mib = step_peak_mib.max(resident_mib().1);
            Ok(())
        })?)
        .map(|phase| PhaseResult {
            // The peak was reset before each gradient pass: the largest step's peak is the phase's.
            peak_rss_mib: step_peak_mib,
            ..phase
        })
    } else {
        None
    };
    let plain = model.expect("a model").valid().with_shards(shards);
    let plain_classes = classes.map(|c| c.inner());
    let eval = if wants("eval") {
        Some(time_phase(options, device, || {
            let (images, dequantise) = tensors(device);
            let bpd = plain.bits_per_dim(images, dequantise, plain_classes.as_ref())?;
            let _ = bpd.sum().into_scalar::<f64>();
            Ok(())
        })?)
    } else {
        None
    };
    let sample = if wants("sample") {
        let mut sample_rng = rand::rngs::StdRng::seed_from_u64(options.seed + 1);
        Some(time_phase(options, device, || {
            let x = plain.sample(
                options.batch_size,
                0.7,
                plain_classes.as_ref(),
                &mut sample_rng,
            )?;
            let _ = x.sum().into_scalar::<f64>();
            Ok(())
        })?)
    } else {
        None
    };
    Ok(BenchResult {
        config: config.clone(),
        options: options.clone(),
        parameters,
        baseline_rss_mib,
        shards,
        gradients_mib,
        train,
        activation_mib,
        eval,
        sample,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        device: format!("{device:?}"),
        glibc_tunables: std::env::var("GLIBC_TUNABLES").ok(),
    })
}

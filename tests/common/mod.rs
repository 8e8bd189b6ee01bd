//! Helpers shared by the integration tests: an f64 device, random weights, and the brute-force
//! Jacobian the log-determinants are checked against (with a determinant of its own, so that the
//! oracle shares no code with the layers it checks).
#![allow(dead_code)]

pub mod fixtures;

use std::sync::Once;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use glowflow::tensor_ops::{from_f64, replace_value, to_f64_vec};
use rand::{Rng, SeedableRng};

/// The flex CPU device with f64 as its default float type (configured once per test process,
/// before any tensor exists). Tests that use it check maths, not f32 rounding.
pub fn f64_device() -> Device {
    static CONFIGURE: Once = Once::new();
    let mut device = Device::flex();
    CONFIGURE.call_once(|| {
        device
            .configure(FloatDType::F64)
            .expect("the f64 device is configured before any tensor is created");
    });
    device
}

/// The flex CPU device with its default f32.
pub fn f32_device() -> Device {
    Device::flex()
}

/// Fixed, non-trained parameters that must keep their exact values: permutation matrices,
/// signs and ActNorm's init flag.
const FIXED: [&str; 3] = ["p", "sign_s", "initialized"];

/// Adds `N(0, std²)` noise to every trained float parameter, so that zero-initialised layers
/// (coupling outputs, priors) are no longer the identity.
pub struct Perturb {
    rng: rand::rngs::StdRng,
    std: f64,
    path: Vec<String>,
}

impl ModuleMapper for Perturb {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.last().cloned().unwrap_or_default();
        if FIXED.contains(&name.as_str()) {
            return param;
        }
        let shape = param.dims();
        let device = param.device();
        let noise: Vec<f64> = (0..shape.iter().product::<usize>())
            .map(|_| self.std * self.rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        let value = param.val() + from_f64(noise, shape, &device);
        replace_value(param, value)
    }
}

/// `module` with every trained parameter perturbed by `N(0, std²)` noise.
pub fn perturb<M: Module>(module: M, std: f64, seed: u64) -> M {
    module.map(&mut Perturb {
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        std,
        path: Vec::new(),
    })
}

/// A tensor of `N(0, std²)` values.
pub fn normal<const D: usize>(
    shape: [usize; D],
    std: f64,
    seed: u64,
    device: &Device,
) -> Tensor<D> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    glowflow::tensor_ops::random_normal(shape, std, &mut rng, device)
}

/// log|det J| of `f` at the single sample `x` (`[1, C, H, W]`), from the full Jacobian built by
/// central finite differences in f64 and factorised on the host.
pub fn brute_force_log_det(f: impl Fn(Tensor<4>) -> Vec<f64>, x: &Tensor<4>) -> f64 {
    let shape = x.dims();
    assert_eq!(shape[0], 1, "the brute-force Jacobian takes one sample");
    let device = x.device();
    let base = to_f64_vec(x.clone());
    let n = base.len();
    let h = 1e-5;
    let mut jacobian = vec![0.0; n * n];
    for j in 0..n {
        let mut plus = base.clone();
        let mut minus = base.clone();
        plus[j] += h;
        minus[j] -= h;
        let f_plus = f(from_f64(plus, shape, &device));
        let f_minus = f(from_f64(minus, shape, &device));
        assert_eq!(
            f_plus.len(),
            n,
            "the map must be square to have a determinant"
        );
        for i in 0..n {
            jacobian[i * n + j] = (f_plus[i] - f_minus[i]) / (2.0 * h);
        }
    }
    log_abs_det_qr(&jacobian, n)
}

/// `log|det A|` of a row-major `n x n` matrix in f64 by Householder QR: `A = Q R` with `Q`
/// orthogonal, so `|det A| = Π |R_kk|`, and the reflection that clears column `k` below the
/// diagonal leaves `|R_kk|` = the norm of that column's remaining part. A different
/// factorisation from the library's LU (`host_linalg::log_abs_det`), on purpose. `-inf` for a
/// singular matrix.
pub fn log_abs_det_qr(a: &[f64], n: usize) -> f64 {
    assert_eq!(a.len(), n * n, "a square matrix");
    let mut r = a.to_vec();
    let mut log_det = 0.0;
    for k in 0..n {
        let norm = (k..n).map(|i| r[i * n + k].powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            return f64::NEG_INFINITY;
        }
        log_det += norm.ln();
        // v = x - α e₁ with α = -sign(x₀)·‖x‖ (no cancellation); H = I - 2 v vᵀ / vᵀv.
        let alpha = if r[k * n + k] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (k..n).map(|i| r[i * n + k]).collect();
        v[0] -= alpha;
        let v_norm2: f64 = v.iter().map(|x| x * x).sum();
        for j in k..n {
            let dot: f64 = (k..n).map(|i| v[i - k] * r[i * n + j]).sum();
            let f = 2.0 * dot / v_norm2;
            for i in k..n {
                r[i * n + j] -= f * v[i - k];
            }
        }
    }
    log_det
}

/// Sample `i` of a batch, as a batch of one.
pub fn sample(x: &Tensor<4>, i: usize) -> Tensor<4> {
    x.clone().narrow(0, i, 1)
}

/// Largest absolute elementwise difference; infinite when any value is not finite (a NaN must
/// fail every `<` bound, and `f64::max` would drop it).
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
    max_abs_gap(&to_f64_vec(a), &to_f64_vec(b))
}

/// [`max_abs_diff`] of host values (same length).
pub fn max_abs_gap(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "values to compare pair up");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .map(|d| if d.is_nan() { f64::INFINITY } else { d })
        .fold(0.0, f64::max)
}

/// Host values of a 1-D tensor.
pub fn values(x: Tensor<1>) -> Vec<f64> {
    to_f64_vec(x)
}

/// Asserts `|a - b| <= rel · max(1, |b|)`.
pub fn assert_rel_close(a: f64, b: f64, rel: f64, what: &str) {
    let tol = rel * b.abs().max(1.0);
    assert!(
        (a - b).abs() <= tol,
        "{what}: {a} vs {b} (difference {:.3e}, tolerance {tol:.3e})",
        (a - b).abs()
    );
}

/// A tensor from f32 values, for test inputs written out by hand.
pub fn tensor4(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A fresh, empty scratch directory unique to this process and `name`.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("glowflow-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes a small MNIST-format dataset (plain IDX files) of `size x size` grey images in `dir`:
/// each image is a bright square whose position depends on its class, plus noise.
pub fn write_idx_dataset(dir: &std::path::Path, n_train: usize, n_test: usize, size: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let mut images = vec![0, 0, 8, 3];
        for v in [n, size, size] {
            images.extend((v as u32).to_be_bytes());
        }
        let mut labels = vec![0, 0, 8, 1];
        labels.extend((n as u32).to_be_bytes());
        for i in 0..n {
            let class = i % 4;
            labels.push(class as u8);
            let (oy, ox) = ((class / 2) * size / 2, (class % 2) * size / 2);
            for y in 0..size {
                for x in 0..size {
                    let inside =
                        (oy..oy + size / 2).contains(&y) && (ox..ox + size / 2).contains(&x);
                    let base: i32 = if inside { 200 } else { 30 };
                    let v = (base + rng.random_range(-25..=25)).clamp(0, 255);
                    images.push(v as u8);
                }
            }
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images)
            .expect("write images");
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels)
            .expect("write labels");
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// An empty directory unique to this process and `name`.
    pub fn new(name: &str) -> Self {
        TempDir(scratch_dir(name))
    }

    /// The path of `name` inside the directory, with its parent folders created.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("create parent");
        path
    }

    /// Writes `bytes` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The image cache's entries and temporaries in the cache directory `dir`, by name (its lock
/// file left out); none if `dir` does not exist.
pub fn cache_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|name| name != "cache.lock")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Asserts that `err` names `path` and mentions every one of `facts`.
pub fn assert_error_mentions(err: glowflow::GlowError, path: &std::path::Path, facts: &[&str]) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name {}: {msg}",
        path.display()
    );
    for fact in facts {
        assert!(msg.contains(fact), "error does not mention {fact:?}: {msg}");
    }
}

/// A tiny `channels`x4x4 model config (L = 2, K = 2, width 8) with the given layers.
pub fn tiny_config(
    channels: usize,
    coupling: glowflow::CouplingKind,
    permutation: glowflow::PermutationKind,
    lu: bool,
) -> glowflow::GlowConfig {
    glowflow::GlowConfig {
        image: glowflow::ImageShape {
            channels,
            height: 4,
            width: 4,
        },
        levels: 2,
        steps: 2,
        width: 8,
        coupling,
        permutation,
        lu,
        ..glowflow::GlowConfig::default()
    }
}

/// The fashion-mnist preset's training recipe, shrunk for the synthetic 8x8 dataset in `data`:
/// batches of 8, 6 steps with 2 of warm-up, init on 16 images, a checkpoint every 2 steps (2
/// kept), an 8-image evaluation every 3, no intermediate samples, a metrics row every step, and a
/// constant learning rate after the warm-up, so that a test may extend `steps` on resume
/// (tests/schedule.rs covers the preset's cosine decay).
pub fn tiny_train_config(data: &std::path::Path) -> glowflow::train::config::TrainConfig {
    let (_, mut train) = glowflow::train::presets::preset("fashion-mnist").expect("preset");
    train.data = glowflow::data::source::DataSource::Idx { dir: data.into() };
    train.batch_size = 8;
    train.steps = 6;
    train.warmup_steps = 2;
    train.lr_decay = glowflow::train::schedule::LrDecay::Constant;
    train.init_images = 16;
    train.checkpoint_every = 2;
    train.keep_checkpoints = 2;
    train.eval_every = 3;
    train.eval_images = 8;
    train.eval_batch_size = 8;
    train.sample_every = 0;
    train.log_every = 1;
    train
}

/// A tiny 1x8x8 model config (L = 2, K = 2, LU 1x1 convolutions) of the given coupling width.
pub fn grey8_config(width: usize) -> glowflow::GlowConfig {
    glowflow::GlowConfig {
        image: glowflow::ImageShape {
            channels: 1,
            height: 8,
            width: 8,
        },
        levels: 2,
        steps: 2,
        width,
        lu: true,
        ..glowflow::GlowConfig::default()
    }
}

/// Random 8-bit images and dequantisation noise of `shape`.
pub fn random_batch(shape: [usize; 4], seed: u64, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let count = shape.iter().product();
    let images = (0..count).map(|_| f64::from(rng.random::<u8>())).collect();
    let noise = (0..count).map(|_| rng.random::<f64>()).collect();
    (
        from_f64(images, shape, device),
        from_f64(noise, shape, device),
    )
}

/// A data-initialised model on the autodiff version of `device`, every parameter perturbed so
/// that no coupling is the identity (0.02: larger perturbations make the exp coupling so
/// ill-conditioned, gradients ~1e9, that inverting it loses digits in any implementation).
pub fn trained_like(
    config: glowflow::GlowConfig,
    device: &Device,
    images: &Tensor<4>,
    noise: &Tensor<4>,
) -> glowflow::Glow {
    let device = device.clone().autodiff();
    let n = images.dims()[0];
    let classes = (config.n_classes > 0).then(|| {
        glowflow::flow::prior::one_hot(
            &(0..n).map(|i| i % config.n_classes).collect::<Vec<_>>(),
            config.n_classes,
            &device,
        )
        .expect("labels")
    });
    let x = glowflow::likelihood::preprocess(images.clone(), noise.clone(), config.n_bits);
    let model = config
        .init(&device)
        .expect("valid")
        .data_init(x, classes.as_ref())
        .expect("init");
    perturb(model, 0.02, 5)
}

/// Largest `‖a - b‖ / ‖b‖` over the parameters, after checking both have the same gradients
/// present.
pub fn worst_relative_error(a: &[Option<Tensor<1>>], b: &[Option<Tensor<1>>]) -> f64 {
    assert_eq!(a.len(), b.len(), "one entry per parameter");
    let mut worst = 0.0f64;
    for (i, (ga, gb)) in a.iter().zip(b).enumerate() {
        match (ga, gb) {
            (None, None) => {}
            (Some(ga), Some(gb)) => {
                let (va, vb) = (to_f64_vec(ga.clone()), to_f64_vec(gb.clone()));
                let diff: f64 = va.iter().zip(&vb).map(|(x, y)| (x - y).powi(2)).sum();
                let norm: f64 = vb.iter().map(|y| y * y).sum();
                worst = worst.max(diff.sqrt() / norm.sqrt().max(1e-30));
            }
            _ => panic!("parameter {i}: a gradient in one mode only"),
        }
    }
    worst
}

/// Worst relative gradient error of the recompute mode against ordinary backpropagation for a
/// perturbed, data-initialised model of `config` on a random batch of `n` (losses checked equal).
/// A model with a classifier head trains it with `weight_y = 0.5`, and its last three parameters
/// (the head's) must have gradients.
pub fn recompute_vs_backprop(
    config: glowflow::GlowConfig,
    device: &Device,
    n: usize,
    what: &str,
) -> f64 {
    let image = config.image;
    let shape = [n, image.channels, image.height, image.width];
    let ad = device.clone().autodiff();
    let (images, noise) = random_batch(shape, 3, &ad);
    let model = trained_like(config.clone(), device, &images, &noise);
    let classes = (config.n_classes > 0).then(|| {
        model
            .one_hot(
                &(0..n)
                    .map(|i| (i + 1) % config.n_classes)
                    .collect::<Vec<_>>(),
                &ad,
            )
            .expect("labels")
    });
    let weight_y = if config.class_head { 0.5 } else { 0.0 };
    let gradients = |recompute| {
        let pass = glowflow::train::gradients::GradientPass {
            recompute,
            shards: 1,
            weight_y,
        };
        let (loss, grads) = glowflow::train::gradients::loss_and_gradients(
            &model,
            images.clone(),
            noise.clone(),
            classes.as_ref(),
            pass,
            &glowflow::cluster::Cluster::single(),
        )
        .expect("a gradient pass");
        (loss, grads)
    };
    let (loss_bp, grads_bp) = gradients(false);
    let (loss_rc, grads_rc) = gradients(true);
    let (objective_bp, objective_rc) = (loss_bp.objective(weight_y), loss_rc.objective(weight_y));
    assert!(
        (objective_bp - objective_rc).abs() <= 1e-6 * objective_bp.abs(),
        "{what}: loss {loss_bp:?} vs {loss_rc:?}"
    );
    assert_eq!(
        loss_bp.head.is_some(),
        config.class_head,
        "{what}: head figures"
    );
    let trained = grads_bp.iter().filter(|g| g.is_some()).count();
    assert!(trained > 10, "{what}: only {trained} trained parameters");
    if config.class_head {
        let head = &grads_bp[grads_bp.len() - 3..];
        assert!(
            head.iter().all(Option::is_some),
            "{what}: the head is trained"
        );
    }
    worst_relative_error(&grads_rc, &grads_bp)
}

/// Test bits/dim of the model saved in `run`, in f32, computed here from the model's `log_prob`
/// the way the run's evaluations promise to: its test images in batches of its
/// `eval_batch_size`, batch `b` dequantised with the noise of evaluation stream `b` of `seed`,
/// `x = (floor(v / 2^(8-n)) + u) / 2^n - 0.5`, and `n - log p(x) / (D log 2)` averaged over
/// the images (`n` = the model's `n_bits`).
pub fn test_bpd_by_hand(run: &std::path::Path, seed: u64) -> f64 {
    let (log_probs, _, to_bits) = test_log_probs_by_hand(run, seed, None);
    log_probs.iter().map(|&lp| to_bits(lp)).sum::<f64>() / log_probs.len() as f64
}

/// `log p(x)` (nats) of each test image of the model saved in `run`, dequantised as
/// [`test_bpd_by_hand`] says, given each image's own label; also the images' labels and the map
/// from `log p(x)` to bits/dim. `sizes`, `(n, b)`: only the first `n` images, in batches of `b`
/// instead of the run's.
pub fn test_log_probs_by_hand(
    run: &std::path::Path,
    seed: u64,
    sizes: Option<(usize, usize)>,
) -> (Vec<f64>, Vec<usize>, impl Fn(f64) -> f64) {
    let by_batch = by_eval_batch(run, seed, sizes, |model, x, own| {
        to_f64_vec(model.log_prob(x, own.as_ref()).expect("log p"))
    });
    let to_bits = by_batch.to_bits();
    (by_batch.values, by_batch.labels, to_bits)
}

/// `log p(x | k)` (nats) of each test image of the class-conditional model saved in `run` under
/// every class `k` of its `n_classes` (one row per image, from the one-hot label `k`),
/// dequantised as [`test_log_probs_by_hand`] says; also the images' labels and the map to
/// bits/dim.
pub fn test_log_probs_by_class(
    run: &std::path::Path,
    seed: u64,
    sizes: Option<(usize, usize)>,
) -> (Vec<Vec<f64>>, Vec<usize>, impl Fn(f64) -> f64) {
    let device = f32_device();
    let by_batch = by_eval_batch(run, seed, sizes, |model, x, _| {
        let n = x.dims()[0];
        let by_class: Vec<Vec<f64>> = (0..model.config().n_classes)
            .map(|k| {
                let class = model.one_hot(&vec![k; n], &device).expect("labels");
                to_f64_vec(model.log_prob(x.clone(), Some(&class)).expect("log p"))
            })
            .collect();
        (0..n)
            .map(|i| by_class.iter().map(|column| column[i]).collect())
            .collect()
    });
    let to_bits = by_batch.to_bits();
    (by_batch.values, by_batch.labels, to_bits)
}

/// The classifier head's logits (one row per test image) of the model saved in `run`, by hand
/// ([`head_logits_of`], each image dequantised as [`test_bpd_by_hand`] says and encoded under
/// its label). Also the images' labels.
pub fn head_logits_by_hand(run: &std::path::Path, seed: u64) -> (Vec<Vec<f64>>, Vec<usize>) {
    let by_batch = by_eval_batch(run, seed, None, |model, x, own| {
        head_logits_of(model, x, own.as_ref())
    });
    (by_batch.values, by_batch.labels)
}

/// The classifier head's logits (one row per image) of `model` for images `x`, by hand from its
/// parameters: `x` encoded under the one-hot `classes`, the top latent rebuilt from the top's
/// `ε` as `z = μ + σ·ε`, then `(mean_{h,w} z · W + b) · exp(s · logs)` in f64.
pub fn head_logits_of(
    model: &glowflow::Glow,
    x: Tensor<4>,
    classes: Option<&Tensor<2>>,
) -> Vec<Vec<f64>> {
    let n = x.dims()[0];
    let (latents, _) = model.encode(x, classes).expect("encode");
    let eps = latents.levels.last().expect("a top level").clone();
    let (mean, log_std) = model.top.mean_log_std(n, classes, &eps.device());
    let [_, c, h, w] = eps.dims();
    let z = to_f64_vec(mean + log_std.exp() * eps);
    let head = model.top.classifier.as_ref().expect("a head");
    let weight = to_f64_vec(head.weight.val());
    let k = weight.len() / c;
    let bias = to_f64_vec(head.bias.val());
    let logs = to_f64_vec(head.logs.val());
    let factor = model.config().zero_logscale_factor;
    z.chunks(c * h * w)
        .map(|image| {
            let means: Vec<f64> = image
                .chunks(h * w)
                .map(|channel| channel.iter().sum::<f64>() / (h * w) as f64)
                .collect();
            (0..k)
                .map(|j| {
                    let dot: f64 = (0..c).map(|i| means[i] * weight[i * k + j]).sum();
                    (dot + bias[j]) * (factor * logs[j]).exp()
                })
                .collect()
        })
        .collect()
}

/// What [`by_eval_batch`] gives.
pub struct ByBatch<T> {
    /// The values of every image, in order.
    pub values: Vec<T>,
    /// The images' labels (empty for an unlabelled dataset).
    pub labels: Vec<usize>,
    /// The model's bits per colour channel.
    pub n_bits: u32,
    /// Dimensions of one image.
    pub dims: f64,
}

impl<T> ByBatch<T> {
    /// The map from `log p(x)` (nats) to bits/dim: `n_bits - log p(x) / (D log 2)`.
    fn to_bits(&self) -> impl Fn(f64) -> f64 {
        let (n_bits, dims) = (self.n_bits, self.dims);
        move |lp: f64| f64::from(n_bits) - lp / (dims * std::f64::consts::LN_2)
    }
}

/// `per_image(model, x, own one-hot labels)` over the test images of the model saved in `run`,
/// batched and dequantised as `glowflow eval` does (see [`test_log_probs_by_hand`], `sizes`
/// included), in f32.
fn by_eval_batch<T>(
    run: &std::path::Path,
    seed: u64,
    sizes: Option<(usize, usize)>,
    mut per_image: impl FnMut(&glowflow::Glow, Tensor<4>, Option<Tensor<2>>) -> Vec<T>,
) -> ByBatch<T> {
    use glowflow::data::batches::{gather, stream_rng, EVAL_STREAM};
    let device = f32_device();
    let model = glowflow::load_model(run, &device).expect("load the run");
    let (_, train) = glowflow::train::config::read_run_configs(run).expect("run configs");
    let test = train
        .data
        .load(
            glowflow::data::dataset::Split::Test,
            &model.config().image,
            &mut |_| {},
        )
        .expect("test set");
    // A source with random crops is evaluated on each image's central window of the model's
    // size, cut here pixel by pixel: the excess halved and rounded down at the top and left.
    let test = match train.data.random_crop_from() {
        None => test,
        Some(_) => {
            let image = model.config().image;
            let [c, h, w] = test.shape;
            let (top, left) = ((h - image.height) / 2, (w - image.width) / 2);
            let mut pixels = Vec::new();
            for i in 0..test.len() {
                for channel in 0..c {
                    for row in 0..image.height {
                        for column in 0..image.width {
                            let at = ((i * c + channel) * h + top + row) * w + left + column;
                            pixels.push(test.pixels[at]);
                        }
                    }
                }
            }
            glowflow::data::dataset::ImageDataset {
                shape: [c, image.height, image.width],
                pixels: pixels.into(),
                ..test
            }
        }
    };
    let n_bits = model.config().n_bits;
    let (bins, reduce) = (f64::from(1u32 << n_bits), f64::from(1u32 << (8 - n_bits)));
    let (images, batch_size) = sizes.unwrap_or((test.len(), train.eval_batch_size));
    let indices: Vec<usize> = (0..images).collect();
    let mut values = Vec::new();
    for (b, batch) in indices.chunks(batch_size).enumerate() {
        let mut noise_rng = stream_rng(seed, EVAL_STREAM, b as u64);
        let batch = gather(&test, batch, &mut noise_rng, b as u64);
        let (images, noise, own) = batch
            .to_tensors(test.shape, model.config().n_classes, &device)
            .expect("tensors");
        let x = ((images / reduce).floor() + noise) / bins - 0.5;
        values.extend(per_image(&model, x, own));
    }
    let mut labels = test.labels.clone().unwrap_or_default();
    labels.truncate(images);
    ByBatch {
        values,
        labels,
        n_bits,
        dims: test.image_size() as f64,
    }
}

/// Owned arguments as the `&str`s the command helpers take.
pub fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The image cache of the tests' `glowflow` processes: beside the build, not the user's cache.
pub const TEST_IMAGE_CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/image-cache");

/// The `glowflow` binary of this build, with folder datasets cached in [`TEST_IMAGE_CACHE`].
pub fn glowflow_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_glowflow"));
    command.env(glowflow::data::image_cache::CACHE_ENV, TEST_IMAGE_CACHE);
    command
}

/// The `glowflow` binary of this build, run with `args`.
pub fn glowflow(args: &[&str]) -> std::process::Output {
    glowflow_command()
        .args(args)
        .output()
        .expect("the glowflow binary runs")
}

/// Runs a glowflow command that must succeed, and returns its (stdout, stderr).
pub fn succeeds(args: &[&str]) -> (String, String) {
    succeeded(glowflow_command().args(args))
}

/// Runs `command`, which must succeed, and returns its (stdout, stderr).
pub fn succeeded(command: &mut std::process::Command) -> (String, String) {
    let out = command.output().expect("the command runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{command:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Runs a command that must fail cleanly (an error message, no panic), and returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = glowflow(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    stderr
}

/// A tiny model and run on the synthetic 8x8 dataset: every step logged, nothing evaluated or
/// sampled before the end.
pub const TINY_RUN: [&str; 18] = [
    "--image",
    "1x8x8",
    "--levels",
    "2",
    "--depth",
    "2",
    "--width",
    "8",
    "--batch-size",
    "8",
    "--init-images",
    "16",
    "--log-every",
    "1",
    "--eval-every",
    "0",
    "--sample-every",
    "0",
];

/// A grey PNG read from `source` as (width, height, pixels); anything else fails the test.
pub fn grey_png(source: impl std::io::Read) -> (usize, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(source).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

//! Whether a device computes Glow as the CPU does: the checks `glowflow check-device` runs before
//! a GPU is trusted with a run (`bench/gpu_check.sh` runs them on the lent GPU machine).
//!
//! The weights are made on the CPU, from a seed: a freshly initialised model, data-initialised on
//! the check's images and then trained for a few Adam steps, so that its couplings (zero at
//! initialisation, hence the identity) compute real functions. A copy goes to the device. Then:
//!
//! 1. **Round trip** at the paper's depth (3×32×32, L = 3, K = 32, width 512, affine coupling):
//!    `max |x − f⁻¹(f(x))|` over the preprocessed images (values in `[−½, ½]`), encoded and
//!    decoded on the device, at most `1e-3`.
//! 2. **Log-likelihood**: the bits/dim of the same images and dequantisation noise on the device
//!    and on the CPU, at most `1e-4` apart for every image.
//! 3. **Gradients** of the mean bits/dim of a smaller model (3×16×16, L = 2, K = 4, width 64) on
//!    the device and on the CPU: for every trained parameter `‖g_dev − g_cpu‖ / ‖g_cpu‖ ≤ 1e-4`
//!    (the largest is reported).
//!
//! On the CPU itself the comparisons are of the CPU with itself: the command then checks only
//! that it runs.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::{GlowError, Result};
use crate::model::config::{GlowConfig, ImageShape};
use crate::model::glow::Glow;
use crate::model::params::flat_params;
use crate::tensor_ops::to_f64_vec;
use crate::train::gradients::{loss_and_gradients, FlatGrads, GradientPass};
use crate::train::optimizer::{OptimizerSettings, OptimizerState};
use crate::train::trainer::apply_gradients;

/// Tolerance of the round trip (max absolute error of the preprocessed pixels).
pub const ROUND_TRIP_TOLERANCE: f64 = 1e-3;
/// Tolerance of the log-likelihood (bits/dim, per image).
pub const BITS_PER_DIM_TOLERANCE: f64 = 1e-4;
/// Tolerance of the gradients (relative error per parameter tensor).
pub const GRADIENT_TOLERANCE: f64 = 1e-4;

/// Adam steps on the CPU that give the couplings non-zero weights before the checks.
const TRAINING_STEPS: usize = 3;
/// Their learning rate. Adam's first steps move every weight by about this much in the direction
/// of its gradient, so a zero-initialised output convolution over 512 × 9 inputs moves its
/// outputs coherently, by up to a few thousand times it. The paper's depth in f32 has a cliff
/// there: on the CPU, 3e-5 to 8e-5 left a round-trip error of 6.6e-7, 1e-4 one of 3e-2 and 2e-4
/// overflowed; 5e-5 keeps a margin below it.
const LEARNING_RATE: f64 = 5e-5;

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was compared.
    pub name: &'static str,
    /// The largest error measured.
    pub measured: f64,
    /// The largest error allowed.
    pub tolerance: f64,
    /// `measured <= tolerance` (and finite).
    pub passed: bool,
}

impl Check {
    fn new(name: &'static str, measured: f64, tolerance: f64) -> Self {
        Check {
            name,
            measured,
            tolerance,
            passed: measured <= tolerance,
        }
    }
}

/// Every check's outcome on one device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    /// The device, as burn describes it.
    pub device: String,
    /// Images per batch of each check.
    pub batch_size: usize,
    /// The checks, in the order of the module docs.
    pub checks: Vec<Check>,
    /// Whether every check passed.
    pub passed: bool,
}

/// The paper's CIFAR-10 architecture ([`GlowConfig::default`]).
fn paper_model(seed: u64) -> GlowConfig {
    GlowConfig {
        seed,
        ..GlowConfig::default()
    }
}

/// A model small enough for the gradients to be compared quickly.
fn small_model(seed: u64) -> GlowConfig {
    GlowConfig {
        image: ImageShape {
            channels: 3,
            height: 16,
            width: 16,
        },
        levels: 2,
        steps: 4,
        width: 64,
        seed,
        ..GlowConfig::default()
    }
}

/// Seeded 8-bit images and dequantisation noise for `config`, made on the host.
struct Batch {
    pixels: Vec<f32>,
    noise: Vec<f32>,
    shape: [usize; 4],
}

impl Batch {
    fn new(config: &GlowConfig, n: usize, seed: u64) -> Self {
        let image = config.image;
        let shape = [n, image.channels, image.height, image.width];
        let count = shape.iter().product();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Smooth images (a random level per image and channel plus a little pixel noise) rather
        // than uniform noise, so that the trained weights see something like images.
        let levels: Vec<f32> = (0..n * image.channels)
            .map(|_| rng.random_range(40.0..215.0))
            .collect();
        let plane = image.height * image.width;
        let pixels = (0..count)
            .map(|i| (levels[i / plane] + rng.random_range(-40.0f32..40.0)).round())
            .collect();
        let noise = (0..count).map(|_| rng.random::<f32>()).collect();
        Batch {
            pixels,
            noise,
            shape,
        }
    }

    /// `(images, noise)` on `device`.
    fn on(&self, device: &Device) -> (Tensor<4>, Tensor<4>) {
        (
            Tensor::from_data(TensorData::new(self.pixels.clone(), self.shape), device),
            Tensor::from_data(TensorData::new(self.noise.clone(), self.shape), device),
        )
    }
}

/// The model `config` describes, data-initialised on `batch` and trained for a few Adam steps on
/// it, all on the CPU; returned with autodiff.
fn trained_on_cpu(config: &GlowConfig, batch: &Batch) -> Result<Glow> {
    let cpu = Device::flex().autodiff();
    let (images, noise) = batch.on(&cpu);
    let untrained = config.init(&cpu)?;
    let x = untrained.preprocess(images, noise);
    let mut model = untrained.data_init(x, None)?;
    let settings = OptimizerSettings::adam();
    let mut optimizer = OptimizerState::new(&flat_params(&model));
    for _ in 0..TRAINING_STEPS {
        let (images, noise) = batch.on(&cpu);
        let grads = gradients(&model, images, noise)?;
        model = apply_gradients(model, &mut optimizer, &settings, LEARNING_RATE, 1.0, grads).0;
    }
    Ok(model)
}

/// Every parameter's gradient of a batch's mean bits/dim, in one shard.
fn gradients(model: &Glow, images: Tensor<4>, noise: Tensor<4>) -> Result<FlatGrads> {
    let pass = GradientPass {
        recompute: false,
        shards: 1,
        weight_y: 0.0,
    };
    Ok(loss_and_gradients(model, images, noise, None, pass, &Cluster::single())?.1)
}

/// `max |a − b|` over two equally long lists (infinite where one is not finite).
fn max_abs_difference(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| match (a - b).abs() {
            d if d.is_finite() => d,
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}

/// The largest `‖a − b‖ / ‖b‖` over the parameters with a gradient on both sides (infinite where
/// only one side has one).
fn max_relative_difference(device_grads: FlatGrads, cpu_grads: FlatGrads) -> f64 {
    device_grads
        .into_iter()
        .zip(cpu_grads)
        .map(|pair| match pair {
            (Some(d), Some(c)) => {
                let (d, c) = (to_f64_vec(d), to_f64_vec(c));
                let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
                let off = d
                    .iter()
                    .zip(&c)
                    .map(|(d, c)| (d - c).powi(2))
                    .sum::<f64>()
                    .sqrt();
                match off / norm.max(f64::MIN_POSITIVE) {
                    r if r.is_finite() => r,
                    _ => f64::INFINITY,
                }
            }
            (None, None) => 0.0,
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}

/// Runs the checks of the module docs on `device` with batches of `batch_size` images drawn
/// from `seed`.
pub fn check_device(device: &Device, batch_size: usize, seed: u64) -> Result<DeviceReport> {
    if batch_size == 0 {
        return Err(GlowError::Config(
            "check-device needs at least one image per batch (--batch-size)".into(),
        ));
    }
    let device = device.clone().inner();
    let cpu = Device::flex();

    let paper = paper_model(seed);
    let batch = Batch::new(&paper, batch_size, seed);
    let trained = trained_on_cpu(&paper, &batch)?.valid();
    let on_device = trained.clone().to_device(&device);
    let (images, noise) = batch.on(&device);
    let x = on_device.preprocess(images.clone(), noise.clone());
    let (latents, _) = on_device.encode(x.clone(), None)?;
    let (decoded, _) = on_device.decode(&latents, None)?;
    let round_trip = max_abs_difference(&to_f64_vec(decoded), &to_f64_vec(x));
    let bpd_device = to_f64_vec(on_device.bits_per_dim(images, noise, None)?);
    let (images, noise) = batch.on(&cpu);
    let bpd_cpu = to_f64_vec(trained.bits_per_dim(images, noise, None)?);
    let bits_per_dim = max_abs_difference(&bpd_device, &bpd_cpu);

    let small = small_model(seed);
    let batch = Batch::new(&small, batch_size, seed + 1);
    let trained = trained_on_cpu(&small, &batch)?;
    let (images, noise) = batch.on(&cpu.clone().autodiff());
    let cpu_grads = gradients(&trained, images, noise)?;
    let on_device = trained.fork(&device.clone().autodiff());
    let (images, noise) = batch.on(&device.clone().autodiff());
    let device_grads = gradients(&on_device, images, noise)?;
    let gradients = max_relative_difference(device_grads, cpu_grads);

    let checks = vec![
        Check::new(
            "round trip at the paper's depth (largest error of decode(encode(x)))",
            round_trip,
            ROUND_TRIP_TOLERANCE,
        ),
        Check::new(
            "bits/dim on the device vs the CPU (max per image)",
            bits_per_dim,
            BITS_PER_DIM_TOLERANCE,
        ),
        Check::new(
            "gradients on the device vs the CPU (max relative per parameter)",
            gradients,
            GRADIENT_TOLERANCE,
        ),
    ];
    Ok(DeviceReport {
        device: format!("{device:?}"),
        batch_size,
        passed: checks.iter().all(|c| c.passed),
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_treat_non_finite_values_as_failures() {
        assert_eq!(max_abs_difference(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert_eq!(max_abs_difference(&[f64::NAN], &[0.0]), f64::INFINITY);
        assert!(!Check::new("x", f64::INFINITY, 1.0).passed);
        assert!(!Check::new("x", f64::NAN, 1.0).passed);
        let device = Device::flex();
        let g = |v: &[f32]| Some(Tensor::<1>::from_floats(v, &device));
        let relative =
            max_relative_difference(vec![g(&[3.0, 4.0]), None], vec![g(&[3.0, 4.5]), None]);
        let expected = 0.5 / (3.0f64 * 3.0 + 4.5 * 4.5).sqrt();
        assert!((relative - expected).abs() < 1e-12, "{relative}");
        assert_eq!(
            max_relative_difference(vec![g(&[1.0])], vec![None]),
            f64::INFINITY
        );
    }
}

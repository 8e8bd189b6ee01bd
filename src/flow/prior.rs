//! The prior on the top level's latent: a diagonal Gaussian, learned (openai/glow `--learntop`)
//! and optionally conditioned on a one-hot class label (`--ycond`).
//!
//! ```text
//! h = LearnTop(0) + ClassBias(y)          [N, 2C, H, W]; each term is zero-initialised
//! (μ, log σ) = (h[:, :C], h[:, C:])
//! ε = (z - μ) / σ                          log|det ∂ε/∂z| = -Σ log σ
//! ```
//!
//! `LearnTop` is a zero convolution applied to zeros: with edge padding it learns a per-channel
//! mean and log-std plus a border correction, exactly as openai/glow's. `ClassBias` is a zero
//! linear map of the one-hot label, broadcast over positions. As a map, the prior is the
//! standardisation `z -> ε` conditioned on the labels.
//!
//! A class-conditional model may also carry a classifier head on the same latent (openai/glow's
//! `classifier` under `--weight_y`, y0ast's `project_class`): a zero linear map of the latent's
//! mean over positions,
//!
//! ```text
//! logits = Classifier(mean_{h,w} z)        [N, K]
//! ```
//!
//! which is no part of the density: training adds its cross-entropy to the loss
//! ([`crate::train::gradients`]).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::conv::{Padding, ZeroConv2d, ZeroLinear};
use super::{Condition, InvertibleMap};
use crate::error::{GlowError, Result};
use crate::host_linalg::products_with_rows;
use crate::tensor_ops::{channel_halves, sum_per_sample};

/// The prior on the top-level latent.
#[derive(Module, Debug)]
pub struct TopPrior {
    /// Learned mean and log-std, when `learn_top`.
    pub learned: Option<ZeroConv2d>,
    /// Class-conditional mean and log-std offsets, when the model has classes.
    pub class_bias: Option<ZeroLinear>,
    /// The classifier head `C -> K` on the latent's mean over positions, when the model has one.
    pub classifier: Option<ZeroLinear>,
    /// `[C, H, W]` of the top latent.
    pub shape: [usize; 3],
}

impl TopPrior {
    /// A top prior over latents of shape `[C, H, W]`.
    pub fn new(
        shape: [usize; 3],
        learn_top: bool,
        n_classes: usize,
        padding: Padding,
        logscale_factor: f64,
        device: &Device,
    ) -> Self {
        let c2 = 2 * shape[0];
        TopPrior {
            learned: learn_top
                .then(|| ZeroConv2d::new([c2, c2], 3, padding, logscale_factor, device)),
            class_bias: (n_classes > 0)
                .then(|| ZeroLinear::new(n_classes, c2, logscale_factor, device)),
            classifier: None,
            shape,
        }
    }

    /// The prior with a zero-initialised classifier head over `n_classes` classes.
    pub fn with_classifier(self, n_classes: usize, logscale_factor: f64, device: &Device) -> Self {
        TopPrior {
            classifier: Some(ZeroLinear::new(
                self.shape[0],
                n_classes,
                logscale_factor,
                device,
            )),
            ..self
        }
    }

    /// The classifier head's logits `[N, K]` for top latents `z` (`[N, C, H, W]`, the prior's
    /// input), when the model has a head.
    pub fn class_logits(&self, z: Tensor<4>) -> Option<Tensor<2>> {
        let head = self.classifier.as_ref()?;
        let [n, c, _, _] = z.dims();
        Some(head.forward(z.mean_dim(2).mean_dim(3).reshape([n, c])))
    }

    /// `(μ, log σ)` for a batch of `n`, each `[n, C, H, W]`.
    pub fn mean_log_std(
        &self,
        n: usize,
        classes: Condition,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let [c, h, w] = self.shape;
        let zeros = Tensor::<4>::zeros([1, 2 * c, h, w], device);
        let mut params = match &self.learned {
            Some(conv) => conv.forward(zeros),
            None => zeros,
        }
        .expand([n, 2 * c, h, w]);
        if let (Some(linear), Some(y)) = (&self.class_bias, classes) {
            params = params + linear.forward(y.clone()).reshape([n, 2 * c, 1, 1]);
        }
        channel_halves(params)
    }

    /// `(μ_k, log σ_k)` of every class `k` of `n_classes`, each `[K, C, H, W]` (row `k` is what
    /// [`TopPrior::mean_log_std`] gives every image of label `k`): the parameters depend on the
    /// label alone, so scoring a batch under every class needs them once per class, not once per
    /// image and class.
    pub fn class_parameters(
        &self,
        n_classes: usize,
        device: &Device,
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        let classes: Vec<usize> = (0..n_classes).collect();
        let labels = one_hot(&classes, n_classes, device)?;
        Ok(self.mean_log_std(n_classes, Some(&labels), device))
    }

    /// `log N(z; μ_k, σ_k²)` (nats, summed over the latent's `D` dimensions) of every top latent
    /// `z` of `latents` (`[N, D]` row-major) under every class `k` (`means`, `log_stds`: `[K,
    /// D]`, [`TopPrior::class_parameters`]), as `[N, K]` row-major, in f64 on the host. With
    /// `a_kd = 1 / (2 σ_kd²)`,
    ///
    /// ```text
    /// Σ_d -(z_d - μ_kd)² a_kd - log σ_kd - ½ log 2π
    ///   = -Σ_d z_d² a_kd + Σ_d z_d (2 a_kd μ_kd) - Σ_d (a_kd μ_kd² + log σ_kd + ½ log 2π)
    /// ```
    ///
    /// two matrix products of `[N, D]` by `[D, K]` instead of `N·K` passes over `D` (1000 classes
    /// made those cost more than the flow). In f64 the expansion's cancellation stays far below
    /// the f32 rounding of the latents themselves.
    pub fn log_density_per_class(
        latents: &[f64],
        means: &[f64],
        log_stds: &[f64],
        d: usize,
    ) -> Vec<f64> {
        let half_log_two_pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let a: Vec<f64> = log_stds.iter().map(|s| 0.5 * (-2.0 * s).exp()).collect();
        let linear: Vec<f64> = a.iter().zip(means).map(|(a, m)| 2.0 * a * m).collect();
        let constant: Vec<f64> = a
            .chunks(d)
            .zip(means.chunks(d))
            .zip(log_stds.chunks(d))
            .map(|((a, m), s)| {
                let terms = a.iter().zip(m).zip(s);
                terms
                    .map(|((a, m), s)| a * m * m + s + half_log_two_pi)
                    .sum()
            })
            .collect();
        let squares: Vec<f64> = latents.iter().map(|z| z * z).collect();
        let quadratic = products_with_rows(&squares, &a, d);
        let cross = products_with_rows(latents, &linear, d);
        let k = constant.len();
        quadratic
            .iter()
            .zip(cross)
            .enumerate()
            .map(|(i, (q, c))| c - q - constant[i % k])
            .collect()
    }
}

impl InvertibleMap for TopPrior {
    /// `z -> (ε, -Σ log σ)`, `ε = (z - μ(c)) / σ(c)`.
    fn forward(&self, z: Tensor<4>, c: Condition) -> (Tensor<4>, Tensor<1>) {
        let n = z.dims()[0];
        let (mean, log_std) = self.mean_log_std(n, c, &z.device());
        let eps = (z - mean) * log_std.clone().neg().exp();
        (eps, sum_per_sample(log_std).neg())
    }

    /// `ε -> (z, Σ log σ)`, `z = μ(c) + σ(c) · ε`.
    fn inverse(&self, eps: Tensor<4>, c: Condition) -> (Tensor<4>, Tensor<1>) {
        let n = eps.dims()[0];
        let (mean, log_std) = self.mean_log_std(n, c, &eps.device());
        let z = mean + eps * log_std.clone().exp();
        (z, sum_per_sample(log_std))
    }
}

/// One-hot rows `[N, n_classes]` for class labels; a label outside `0..n_classes` is an error.
pub fn one_hot(labels: &[usize], n_classes: usize, device: &Device) -> Result<Tensor<2>> {
    let mut values = vec![0.0f32; labels.len() * n_classes];
    for (i, &label) in labels.iter().enumerate() {
        if label >= n_classes {
            return Err(GlowError::Label(format!(
                "label {label} (sample {i}) is outside 0..{n_classes}; the model was built \
                 with n_classes = {n_classes}"
            )));
        }
        values[i * n_classes + label] = 1.0;
    }
    Ok(Tensor::from_data(
        TensorData::new(values, [labels.len(), n_classes]),
        device,
    ))
}

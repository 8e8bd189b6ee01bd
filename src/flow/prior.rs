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

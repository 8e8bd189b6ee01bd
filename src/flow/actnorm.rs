//! ActNorm: a per-channel affine map with data-dependent initialisation (Glow §3.1).
//!
//! ```text
//! forward:  y = (x + b) · exp(s · logs)          log|det| = H · W · Σ_c s · logs_c
//! inverse:  x = y · exp(-s · logs) - b            log|det| = -H · W · Σ_c s · logs_c
//! ```
//!
//! `s` is openai/glow's log-scale factor (3 by default: the stored parameter is a third of the log
//! scale, which makes it move faster under Adam; 1 is the paper's plain parameterisation).
//! On the first batch, `b = -mean_c(x)` and `s · logs = -log(std_c(x) + 1e-6)`, so the output has
//! zero mean and unit variance per channel. Whether that has happened is stored in the model
//! (`initialized`), so a reloaded model never initialises again.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use super::{Condition, InvertibleMap};
use crate::tensor_ops::replace_value;

/// Per-channel affine normalisation with data-dependent initialisation.
#[derive(Module, Debug)]
pub struct ActNorm {
    /// Per-channel shift `b`, shape `[C]`.
    pub bias: Param<Tensor<1>>,
    /// Per-channel log-scale (before the factor `s`), shape `[C]`.
    pub logs: Param<Tensor<1>>,
    /// 1 once the data-dependent initialisation has run, 0 before: saved with the weights.
    pub initialized: Param<Tensor<1>>,
    /// The log-scale factor `s`.
    pub logscale_factor: f64,
}

impl ActNorm {
    /// An uninitialised ActNorm over `channels` channels: the identity until `data_init` runs.
    pub fn new(channels: usize, logscale_factor: f64, device: &Device) -> Self {
        ActNorm {
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            logs: Param::from_tensor(Tensor::zeros([channels], device)),
            initialized: Param::from_tensor(Tensor::zeros([1], device)).set_require_grad(false),
            logscale_factor,
        }
    }

    /// Whether the data-dependent initialisation has run (or was loaded from a saved model).
    pub fn is_initialized(&self) -> bool {
        self.initialized.val().into_scalar::<f32>() > 0.5
    }

    /// The log-scale per channel, `s · logs`, broadcastable over `[N, C, H, W]`.
    fn log_scale(&self) -> Tensor<4> {
        let c = self.logs.dims()[0];
        (self.logs.val() * self.logscale_factor).reshape([1, c, 1, 1])
    }

    fn bias4(&self) -> Tensor<4> {
        let c = self.bias.dims()[0];
        self.bias.val().reshape([1, c, 1, 1])
    }

    /// `H · W · Σ_c s · logs_c`, repeated for each of the `n` samples.
    fn log_det(&self, n: usize, h: usize, w: usize) -> Tensor<1> {
        let per_sample = (self.logs.val() * (self.logscale_factor * (h * w) as f64)).sum();
        per_sample.expand([n])
    }
}

impl InvertibleMap for ActNorm {
    fn forward(&self, x: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, _, h, w] = x.dims();
        let y = (x + self.bias4()) * self.log_scale().exp();
        (y, self.log_det(n, h, w))
    }

    fn inverse(&self, y: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, _, h, w] = y.dims();
        let x = y * self.log_scale().neg().exp() - self.bias4();
        (x, self.log_det(n, h, w).neg())
    }

    fn data_init(self, x: Tensor<4>, c: Condition) -> (Self, Tensor<4>) {
        if self.is_initialized() {
            let (y, _) = self.forward(x, c);
            return (self, y);
        }
        let channels = x.dims()[1];
        let mean = x.clone().detach().mean_dims(&[0, 2, 3]);
        let centred = x.clone().detach() - mean.clone();
        let std = centred.clone().square().mean_dims(&[0, 2, 3]).sqrt();
        let bias = mean.reshape([channels]).neg();
        let logs = (std.reshape([channels]) + 1e-6).log().neg() / self.logscale_factor;
        let layer = ActNorm {
            bias: replace_value(self.bias, bias),
            logs: replace_value(self.logs, logs),
            initialized: self.initialized.map(|flag| flag.ones_like()),
            logscale_factor: self.logscale_factor,
        };
        let (y, _) = layer.forward(x, c);
        (layer, y)
    }
}

//! ActNorm: a per-channel affine map with data-dependent initialisation (Glow §3.1).
//!
//! ```text
//! forward:  y = (x + b) · exp(s · logs)          log|det| = H · W · Σ_c s · logs_c
//! inverse:  x = y · exp(-s · logs) - b            log|det| = -H · W · Σ_c s · logs_c
//! ```
//!
//! With the linear parameterisation (rosinality/glow-pytorch's `scale * (x + loc)`) the stored
//! parameter is the scale itself:
//!
//! ```text
//! forward:  y = (x + b) · a                        log|det| = H · W · Σ_c log|a_c|
//! inverse:  x = y / a - b
//! ```
//!
//! `s` is openai/glow's log-scale factor (3 by default: the stored parameter is a third of the log
//! scale, which makes it move faster under Adam; 1 is the paper's plain parameterisation).
//! On the first batch, `b = -mean_c(x)` and `s · logs = -log(std_c(x) + 1e-6)` (or
//! `a = 1 / (std_c(x) + 1e-6)`), so the output has
//! zero mean and unit variance per channel. Whether that has happened is stored in the model
//! (`initialized`), so a reloaded model never initialises again.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::actnorm_relu::actnorm_relu;
use super::{Condition, InvertibleMap};
use crate::tensor_ops::replace_value;

/// How ActNorm stores its per-channel scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActNormScale {
    /// The log-scale divided by the factor `s`: `scale = exp(s · logs)` (openai/glow).
    #[default]
    Exp,
    /// The scale itself (rosinality/glow-pytorch).
    Linear,
}

/// Per-channel affine normalisation with data-dependent initialisation.
#[derive(Module, Debug)]
pub struct ActNorm {
    /// Per-channel shift `b`, shape `[C]`.
    pub bias: Param<Tensor<1>>,
    /// Per-channel log-scale (before the factor `s`), or the scale `a` itself with the linear
    /// parameterisation, shape `[C]`.
    pub logs: Param<Tensor<1>>,
    /// 1 once the data-dependent initialisation has run, 0 before: saved with the weights.
    pub initialized: Param<Tensor<1>>,
    /// The log-scale factor `s` (unused by the linear parameterisation).
    pub logscale_factor: f64,
    /// What `logs` holds.
    #[module(skip)]
    pub parameterisation: ActNormScale,
}

impl ActNorm {
    /// An uninitialised ActNorm over `channels` channels: the identity until `data_init` runs.
    pub fn new(channels: usize, logscale_factor: f64, device: &Device) -> Self {
        Self::with_scale(channels, ActNormScale::Exp, logscale_factor, device)
    }

    /// [`ActNorm::new`] with the given parameterisation of the scale: the identity until
    /// `data_init` runs (`logs` starts at 0 for `exp`, at 1 for `linear`).
    pub fn with_scale(
        channels: usize,
        parameterisation: ActNormScale,
        logscale_factor: f64,
        device: &Device,
    ) -> Self {
        let logs = match parameterisation {
            ActNormScale::Exp => Tensor::zeros([channels], device),
            ActNormScale::Linear => Tensor::ones([channels], device),
        };
        ActNorm {
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            logs: Param::from_tensor(logs),
            initialized: Param::from_tensor(Tensor::zeros([1], device)).set_require_grad(false),
            logscale_factor,
            parameterisation,
        }
    }

    /// Whether the data-dependent initialisation has run (or was loaded from a saved model).
    pub fn is_initialized(&self) -> bool {
        self.initialized.val().into_scalar::<f32>() > 0.5
    }

    /// The log-scale per channel, `s · logs` (or `log|a|`), shape `[C]`.
    fn log_scale(&self) -> Tensor<1> {
        match self.parameterisation {
            ActNormScale::Exp => self.logs.val() * self.logscale_factor,
            ActNormScale::Linear => self.logs.val().abs().log(),
        }
    }

    /// The scale per channel, `exp(s · logs)` (or `a`), shape `[C]`.
    fn scale(&self) -> Tensor<1> {
        match self.parameterisation {
            ActNormScale::Exp => self.log_scale().exp(),
            ActNormScale::Linear => self.logs.val(),
        }
    }

    /// [`Self::scale`], broadcastable over `[N, C, H, W]`.
    fn scale4(&self) -> Tensor<4> {
        let c = self.logs.dims()[0];
        self.scale().reshape([1, c, 1, 1])
    }

    /// `relu(y)` of the forward map's `y`, fused into one pass on the CPU
    /// ([`actnorm_relu`]): the coupling network's hidden activation.
    pub fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        let (bias, scale) = self.channel_affine();
        actnorm_relu(x, bias, scale)
    }

    /// The per-channel `(b, s)` of the forward map `y = (x + b) · s`, each `[C]`.
    pub fn channel_affine(&self) -> (Tensor<1>, Tensor<1>) {
        (self.bias.val(), self.scale())
    }

    fn bias4(&self) -> Tensor<4> {
        let c = self.bias.dims()[0];
        self.bias.val().reshape([1, c, 1, 1])
    }

    /// `H · W · Σ_c s · logs_c` (or `H · W · Σ_c log|a_c|`), repeated for each of the `n` samples.
    fn log_det(&self, n: usize, h: usize, w: usize) -> Tensor<1> {
        let per_sample = match self.parameterisation {
            ActNormScale::Exp => (self.logs.val() * (self.logscale_factor * (h * w) as f64)).sum(),
            ActNormScale::Linear => self.log_scale().sum() * (h * w) as f64,
        };
        per_sample.expand([n])
    }
}

impl InvertibleMap for ActNorm {
    fn forward(&self, x: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, _, h, w] = x.dims();
        let y = (x + self.bias4()) * self.scale4();
        (y, self.log_det(n, h, w))
    }

    fn inverse(&self, y: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, c, h, w] = y.dims();
        let x = match self.parameterisation {
            ActNormScale::Exp => y * self.log_scale().reshape([1, c, 1, 1]).neg().exp(),
            ActNormScale::Linear => y / self.scale4(),
        } - self.bias4();
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
        let std = std.reshape([channels]) + 1e-6;
        let logs = match self.parameterisation {
            ActNormScale::Exp => std.log().neg() / self.logscale_factor,
            ActNormScale::Linear => std.recip(),
        };
        let layer = ActNorm {
            bias: replace_value(self.bias, bias),
            logs: replace_value(self.logs, logs),
            initialized: self.initialized.map(|flag| flag.ones_like()),
            logscale_factor: self.logscale_factor,
            parameterisation: self.parameterisation,
        };
        let (y, _) = layer.forward(x, c);
        (layer, y)
    }
}

//! Additive and affine coupling (Glow §3.3, after RealNVP), split by channel halves.
//!
//! The first half `x_a` passes through unchanged and conditions the transform of the second half
//! `x_b` through a network `h = NN(x_a)`: conv3x3 → ReLU → conv1x1 → ReLU → zero-initialised
//! conv3x3. The output is `y = [x_a ; y_b]`.
//!
//! ```text
//! additive:                y_b = x_b + h                          log|det| = 0
//! affine, openai/glow:     y_b = (x_b + t) · sigmoid(r + 2)        log|det| = Σ log sigmoid(r + 2)
//! affine, paper:           y_b = x_b · exp(r) + t                  log|det| = Σ r
//! ```
//!
//! The openai/glow affine form optionally takes a scale floor `f ∈ [0, 1)`:
//! `s = f + (1 − f) · sigmoid(r + 2)`, `y_b = (x_b + t) · s`, `log|det| = Σ log s`. With `f = 0`
//! it is openai/glow's coupling bit for bit. With `f > 0` the inverse `x_b = y_b / s − t`
//! multiplies by at most `1 / f`: a latent sampled outside the training range (temperature 1)
//! can no longer drive `sigmoid(r + 2)` to zero and the inverse to infinity in one coupling,
//! which is how the unfloored model's samples overflow (BENCHMARKS.md, "Samples that overflow at
//! T = 1.0"). The shift `t` stays unbounded, so values can still grow over many couplings.
//!
//! For the affine forms, `t = h[:, 0::2]` and `r = h[:, 1::2]` (openai/glow's interleaved read).
//! Because the last convolution starts at zero, an additive step starts as the identity, a paper
//! affine step too, and an openai affine step as the fixed scale `sigmoid(2) ≈ 0.881`.

use burn::module::Module;
use burn::tensor::activation::{log_sigmoid, relu, sigmoid};
use burn::tensor::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::conv::{HiddenConv2d, Padding, ZeroConv2d};
use super::{Condition, InvertibleMap};
use crate::error::{GlowError, Result};
use crate::tensor_ops::{channel_halves, channel_interleaved, sum_per_sample};

/// Which coupling transform a flow step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CouplingKind {
    /// `y_b = x_b + h`: volume-preserving.
    Additive,
    /// `y_b = (x_b + t) · sigmoid(r + 2)` (openai/glow's code).
    Affine,
    /// `y_b = x_b · exp(r) + t` (the paper's equations).
    AffineExp,
}

/// Sizes and options of a coupling layer's network.
#[derive(Debug, Clone, Copy)]
pub struct CouplingOptions {
    /// The transform.
    pub kind: CouplingKind,
    /// Hidden channels of the network.
    pub width: usize,
    /// Padding of the 3x3 convolutions.
    pub padding: Padding,
    /// ActNorm log-scale factor for the hidden convolutions (ActNorm instead of bias), or `None`
    /// for biased hidden convolutions.
    pub hidden_actnorm: Option<f64>,
    /// Log-scale factor of the zero-initialised output convolution.
    pub zero_logscale_factor: f64,
    /// The affine coupling's scale floor `f` (0 for openai/glow's coupling).
    pub scale_floor: f64,
}

/// The coupling network `NN`: conv3x3 → ReLU → conv1x1 → ReLU → zero conv3x3.
#[derive(Module, Debug)]
pub struct CouplingNet {
    /// First 3x3 convolution, `C/2 -> width`.
    pub conv_in: HiddenConv2d,
    /// 1x1 convolution, `width -> width`.
    pub conv_hidden: HiddenConv2d,
    /// Zero-initialised 3x3 convolution, `width -> C/2` (additive) or `C` (affine).
    pub conv_out: ZeroConv2d,
}

impl CouplingNet {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv_in.forward_relu(x);
        let h = self.conv_hidden.forward_relu(h);
        self.conv_out.forward(h)
    }

    fn data_init(self, x: Tensor<4>) -> Self {
        let (conv_in, h) = self.conv_in.data_init(x);
        let (conv_hidden, _) = self.conv_hidden.data_init(relu(h));
        CouplingNet {
            conv_in,
            conv_hidden,
            conv_out: self.conv_out,
        }
    }
}

/// A coupling layer over `C` channels (`C` even).
#[derive(Module, Debug)]
pub struct Coupling {
    /// The conditioning network.
    pub net: CouplingNet,
    /// The transform applied to the second half.
    #[module(skip)]
    pub kind: CouplingKind,
    /// The affine scale's floor `f`: `s = f + (1 − f) · sigmoid(r + 2)`.
    #[module(skip)]
    pub scale_floor: f64,
}

impl Coupling {
    /// A coupling layer over `channels` channels; an odd count is an error, since the layer
    /// splits its input in halves.
    pub fn new(
        channels: usize,
        options: &CouplingOptions,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Result<Self> {
        if channels < 2 || !channels.is_multiple_of(2) {
            return Err(GlowError::shape(
                "coupling",
                format!(
                    "{channels} channels cannot be split in two equal halves; \
                     the coupling layer needs an even channel count (2 or more)"
                ),
            ));
        }
        if options.width == 0 {
            return Err(GlowError::Config(
                "coupling width is 0; set `width` to the number of hidden channels (e.g. 512)"
                    .into(),
            ));
        }
        let half = channels / 2;
        let out = match options.kind {
            CouplingKind::Additive => half,
            CouplingKind::Affine | CouplingKind::AffineExp => channels,
        };
        let net = CouplingNet {
            conv_in: HiddenConv2d::new(
                [half, options.width],
                3,
                options.padding,
                options.hidden_actnorm,
                rng,
                device,
            ),
            conv_hidden: HiddenConv2d::new(
                [options.width, options.width],
                1,
                options.padding,
                options.hidden_actnorm,
                rng,
                device,
            ),
            conv_out: ZeroConv2d::new(
                [options.width, out],
                3,
                options.padding,
                options.zero_logscale_factor,
                device,
            ),
        };
        Ok(Coupling {
            net,
            kind: options.kind,
            scale_floor: options.scale_floor,
        })
    }

    /// The layer with its zero-initialised output convolution rebuilt with `padding` (as zeros),
    /// for models whose zero convolutions are padded unlike the hidden ones.
    pub fn with_output_padding(self, padding: Padding, device: &Device) -> Self {
        let conv = &self.net.conv_out;
        if conv.conv.padding == padding {
            return self;
        }
        let [c_out, c_in, k, _] = conv.conv.weight.dims();
        let conv_out = ZeroConv2d::new([c_in, c_out], k, padding, conv.logscale_factor, device);
        Coupling {
            net: CouplingNet {
                conv_out,
                ..self.net
            },
            ..self
        }
    }

    /// For the affine kinds: the shift `t` and the log-scale `log s` read out of `h = NN(x_a)`.
    fn shift_and_log_scale(&self, h: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (shift, raw) = channel_interleaved(h);
        let log_scale = match self.kind {
            CouplingKind::AffineExp => raw,
            _ if self.scale_floor == 0.0 => log_sigmoid(raw + 2.0),
            _ => {
                let floor = self.scale_floor;
                (sigmoid(raw + 2.0) * (1.0 - floor) + floor).log()
            }
        };
        (shift, log_scale)
    }

    /// `y_b` and `log|det ∂y/∂x|` from the second half `x_b` and the network's output
    /// `h = NN(x_a)`.
    fn transform(&self, x_b: Tensor<4>, h: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        match self.kind {
            CouplingKind::Additive => {
                let n = x_b.dims()[0];
                let device = x_b.device();
                (x_b + h, Tensor::zeros([n], &device))
            }
            CouplingKind::Affine | CouplingKind::AffineExp => {
                let (shift, log_scale) = self.shift_and_log_scale(h);
                let scale = log_scale.clone().exp();
                let y_b = match self.kind {
                    CouplingKind::Affine => (x_b + shift) * scale,
                    _ => x_b * scale + shift,
                };
                (y_b, sum_per_sample(log_scale))
            }
        }
    }

    /// `x_b` and `log|det ∂x/∂y|` from the second half `y_b` and `h = NN(y_a)`, which equals
    /// `NN(x_a)` since `y_a = x_a`.
    fn untransform(&self, y_b: Tensor<4>, h: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        match self.kind {
            CouplingKind::Additive => {
                let n = y_b.dims()[0];
                let device = y_b.device();
                (y_b - h, Tensor::zeros([n], &device))
            }
            CouplingKind::Affine | CouplingKind::AffineExp => {
                let (shift, log_scale) = self.shift_and_log_scale(h);
                let inv_scale = log_scale.clone().neg().exp();
                let x_b = match self.kind {
                    CouplingKind::Affine => y_b * inv_scale - shift,
                    _ => (y_b - shift) * inv_scale,
                };
                (x_b, sum_per_sample(log_scale).neg())
            }
        }
    }

    /// The inverse and a re-run of the forward pass on its result that share one evaluation of
    /// the network, for the constant-memory backward pass ([`crate::train::gradients`]), which
    /// would otherwise evaluate `NN` once to invert and once more to rebuild the graph. With
    /// `track` making a plain value a leaf of a graph and `plain` reading a tracked value back:
    ///
    /// ```text
    /// x_a = track(y_a);   h = NN(x_a)                   the only evaluation, with a graph
    /// x_b = track(untransform(y_b, plain(h)))          the inverse, from h's values
    /// (y', log|det|) = ([x_a ; transform(x_b, h)], Σ log s)    forward(x), tracked
    /// ```
    ///
    /// Returns the input `x = [y_a ; x_b]` (plain), the leaves `[x_a, x_b]` and `(y', log|det|)`.
    pub fn invert_and_rerun(
        &self,
        y: Tensor<4>,
        track: impl Fn(Tensor<4>) -> Tensor<4>,
        plain: impl Fn(Tensor<4>) -> Tensor<4>,
    ) -> (Tensor<4>, [Tensor<4>; 2], (Tensor<4>, Tensor<1>)) {
        let (y_a, y_b) = channel_halves(y);
        let x_a = track(y_a.clone());
        let h = self.net.forward(x_a.clone());
        let (x_b_value, _) = self.untransform(y_b, plain(h.clone()));
        let x_b = track(x_b_value.clone());
        let (y_b, log_det) = self.transform(x_b.clone(), h);
        let rerun = (Tensor::cat(vec![x_a.clone(), y_b], 1), log_det);
        (Tensor::cat(vec![y_a, x_b_value], 1), [x_a, x_b], rerun)
    }
}

impl InvertibleMap for Coupling {
    fn forward(&self, x: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let (x_a, x_b) = channel_halves(x);
        let h = self.net.forward(x_a.clone());
        let (y_b, log_det) = self.transform(x_b, h);
        (Tensor::cat(vec![x_a, y_b], 1), log_det)
    }

    fn inverse(&self, y: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let (y_a, y_b) = channel_halves(y);
        let h = self.net.forward(y_a.clone());
        let (x_b, log_det) = self.untransform(y_b, h);
        (Tensor::cat(vec![y_a, x_b], 1), log_det)
    }

    fn data_init(self, x: Tensor<4>, c: Condition) -> (Self, Tensor<4>) {
        let (x_a, _) = channel_halves(x.clone());
        let layer = Coupling {
            net: self.net.data_init(x_a),
            ..self
        };
        let (y, _) = layer.forward(x, c);
        (layer, y)
    }
}

//! The convolutions inside coupling networks and priors: "same"-size 2-D convolutions with
//! openai/glow's edge-aware padding, the zero-initialised output convolution, and the
//! zero-initialised linear map used for class conditioning.
//!
//! Edge-aware padding (openai/glow `add_edge_padding`) pads with zeros and appends one input
//! channel that is 1 in the padded border and 0 inside, so the network can tell real zeros from
//! padding. Because that channel is the same for every sample, its contribution is computed once
//! per call as a `[1, C_out, H, W]` term and broadcast over the batch:
//!
//! ```text
//! conv([x_pad ; e], [W ; W_e]) = conv(x, W, zero padding) + conv(e, W_e, no padding)
//! ```
//!
//! Padding with ones (rosinality/glow-pytorch's `ZeroConv2d`, `F.pad(x, [1, 1, 1, 1], value=1)`)
//! is the same sum with the border kernel tied to the main one, `W_e = Σ_c W[:, c]`: each padded
//! pixel is 1 in every input channel.
//!
//! The main convolution is computed as matrix products on the CPU ([`super::conv_matmul`]: their
//! backward passes are matrix products too, which burn's CPU backend runs far faster than its
//! generic convolution gradients) and with burn's own `conv2d` on a GPU, whose backends tune
//! their convolution kernels; [`ConvRoute`] overrides the choice for measuring both.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::actnorm::ActNorm;
use super::conv_matmul::{pointwise_relu, same_conv};
use super::InvertibleMap;
use crate::device::runs_on_host;
use crate::tensor_ops::random_normal;

/// How [`SameConv2d`] computes its main convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConvRoute {
    /// Matrix products on the CPU, burn's `conv2d` on a GPU.
    Auto,
    /// Always the matrix-product forms of [`super::conv_matmul::same_conv`].
    MatrixProducts,
    /// Always burn's `conv2d` (padding `k / 2`).
    Burn,
}

/// The process's [`ConvRoute`] (`Auto` unless [`set_conv_route`] chose another).
static CONV_ROUTE: AtomicU8 = AtomicU8::new(ConvRoute::Auto as u8);

/// Makes every [`SameConv2d`] of this process compute its convolution by `route`: a benchmark
/// knob (`glowflow bench --conv`); both routes compute the same function up to rounding.
pub fn set_conv_route(route: ConvRoute) {
    CONV_ROUTE.store(route as u8, Ordering::Relaxed);
}

/// Whether the process's route computes convolutions on `device` as matrix products.
fn by_matrix_products(device: &Device) -> bool {
    match CONV_ROUTE.load(Ordering::Relaxed) {
        r if r == ConvRoute::MatrixProducts as u8 => true,
        r if r == ConvRoute::Burn as u8 => false,
        _ => runs_on_host(device),
    }
}

/// The zero-padded "same" convolution of `x` with `weight` by the process's route on `x`'s device.
fn same_size_conv(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    if by_matrix_products(&x.device()) {
        same_conv(x, weight)
    } else {
        let pad = weight.dims()[2] / 2;
        conv2d(
            x,
            weight,
            None,
            ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
        )
    }
}

/// How a 3x3 convolution sees beyond the image border.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Padding {
    /// Zero padding plus a border-indicator channel (openai/glow's default).
    Edge,
    /// Plain zero padding (the PyTorch ports).
    Zero,
    /// Padding with ones (rosinality/glow-pytorch's zero-initialised convolutions).
    Ones,
}

/// A stride-1 convolution whose output has the input's height and width.
#[derive(Module, Debug)]
pub struct SameConv2d {
    /// Kernel, `[C_out, C_in, k, k]` with odd `k`.
    pub weight: Param<Tensor<4>>,
    /// Kernel over the border-indicator channel, `[C_out, 1, k, k]`, with edge padding and `k > 1`.
    pub edge_weight: Option<Param<Tensor<4>>>,
    /// Per-channel bias, `[C_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// How the border is padded.
    #[module(skip)]
    pub padding: Padding,
}

impl SameConv2d {
    /// A convolution with the given weights (a zero bias if `bias`); `padding` decides whether a
    /// border-indicator kernel, initialised like the main one, is added.
    fn from_weights(
        weight: Tensor<4>,
        edge_weight: Tensor<4>,
        padding: Padding,
        bias: bool,
    ) -> Self {
        let [c_out, _, k, _] = weight.dims();
        let device = weight.device();
        SameConv2d {
            weight: Param::from_tensor(weight),
            edge_weight: (padding == Padding::Edge && k > 1)
                .then(|| Param::from_tensor(edge_weight)),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([c_out], &device))),
            padding,
        }
    }

    /// Kernel weights drawn from `N(0, std²)` (openai/glow uses std 0.05).
    pub fn normal(
        channels: [usize; 2],
        kernel: usize,
        std: f64,
        padding: Padding,
        bias: bool,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Self {
        let [c_in, c_out] = channels;
        let weight = random_normal([c_out, c_in, kernel, kernel], std, rng, device);
        let edge = random_normal([c_out, 1, kernel, kernel], std, rng, device);
        Self::from_weights(weight, edge, padding, bias)
    }

    /// All-zero kernel and bias.
    pub fn zeros(channels: [usize; 2], kernel: usize, padding: Padding, device: &Device) -> Self {
        let [c_in, c_out] = channels;
        let weight = Tensor::zeros([c_out, c_in, kernel, kernel], device);
        let edge = Tensor::zeros([c_out, 1, kernel, kernel], device);
        Self::from_weights(weight, edge, padding, true)
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The `[C_out, C_in]` matrix of a 1x1 convolution without bias computed as matrix products,
    /// whose output is exactly `pointwise(x, matrix)`; `None` for any other.
    fn pointwise_matrix(&self) -> Option<Tensor<2>> {
        let [c_out, c_in, k, _] = self.weight.dims();
        (k == 1 && self.bias.is_none() && by_matrix_products(&self.weight.device()))
            .then(|| self.weight.val().reshape([c_out, c_in]))
    }

    /// `conv(x)` with "same" output size.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let [c_out, _, k, _] = self.weight.dims();
        let pad = k / 2;
        let mut y = same_size_conv(x, self.weight.val());
        if let Some(bias) = &self.bias {
            y = y + bias.val().reshape([1, c_out, 1, 1]);
        }
        let border_kernel = match (&self.edge_weight, self.padding) {
            (Some(edge_weight), _) => Some(edge_weight.val()),
            (None, Padding::Ones) if k > 1 => Some(self.weight.val().sum_dim(1)),
            _ => None,
        };
        if let Some(border_kernel) = border_kernel {
            let device = y.device();
            let inside = Tensor::<4>::ones([1, 1, h, w], &device);
            let border = inside
                .pad([(pad, pad), (pad, pad)], PadMode::Constant(0.0))
                .neg()
                + 1.0;
            let valid = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
            y = y + conv2d(border, border_kernel, None, valid);
        }
        y
    }
}

/// A convolution followed by ActNorm (openai/glow's hidden convolutions, no bias) or with a
/// bias (the PyTorch ports).
#[derive(Module, Debug)]
pub struct HiddenConv2d {
    /// The convolution.
    pub conv: SameConv2d,
    /// Data-initialised normalisation of its output, when used instead of a bias.
    pub norm: Option<ActNorm>,
}

impl HiddenConv2d {
    /// A hidden convolution; `actnorm` chooses ActNorm (openai/glow) over a bias.
    pub fn new(
        channels: [usize; 2],
        kernel: usize,
        padding: Padding,
        actnorm: Option<f64>,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Self {
        let conv = SameConv2d::normal(
            channels,
            kernel,
            0.05,
            padding,
            actnorm.is_none(),
            rng,
            device,
        );
        let norm = actnorm.map(|factor| ActNorm::new(channels[1], factor, device));
        HiddenConv2d { conv, norm }
    }

    /// `norm(conv(x))`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        match &self.norm {
            Some(norm) => norm.forward(y, None).0,
            None => y,
        }
    }

    /// `relu(norm(conv(x)))`: the norm and the relu fused ([`ActNorm::forward_relu`]), and a
    /// 1x1 convolution's products fused with them ([`pointwise_relu`]).
    pub fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        match (&self.norm, self.conv.pointwise_matrix()) {
            (Some(norm), Some(matrix)) => {
                let (bias, scale) = norm.channel_affine();
                pointwise_relu(x, matrix, bias, scale)
            }
            (Some(norm), None) => norm.forward_relu(self.conv.forward(x)),
            (None, _) => relu(self.conv.forward(x)),
        }
    }

    /// Initialises the ActNorm from the convolution's output on `x`.
    pub fn data_init(self, x: Tensor<4>) -> (Self, Tensor<4>) {
        let y = self.conv.forward(x);
        match self.norm {
            Some(norm) => {
                let (norm, y) = norm.data_init(y, None);
                (
                    HiddenConv2d {
                        conv: self.conv,
                        norm: Some(norm),
                    },
                    y,
                )
            }
            None => (self, y),
        }
    }
}

/// A zero-initialised convolution with a learned per-channel output scale:
/// `y = (conv(x) + b) · exp(s · logs)` (openai/glow `conv2d_zeros`, `s` = 3 by default).
/// At initialisation its output is exactly zero.
#[derive(Module, Debug)]
pub struct ZeroConv2d {
    /// The convolution (with bias), all zeros at initialisation.
    pub conv: SameConv2d,
    /// Per-channel log output scale, `[C_out]`.
    pub logs: Param<Tensor<1>>,
    /// The log-scale factor `s`.
    pub logscale_factor: f64,
}

impl ZeroConv2d {
    /// A zero convolution `channels[0] -> channels[1]` with a `kernel x kernel` kernel.
    pub fn new(
        channels: [usize; 2],
        kernel: usize,
        padding: Padding,
        logscale_factor: f64,
        device: &Device,
    ) -> Self {
        ZeroConv2d {
            conv: SameConv2d::zeros(channels, kernel, padding, device),
            logs: Param::from_tensor(Tensor::zeros([channels[1]], device)),
            logscale_factor,
        }
    }

    /// `(conv(x) + b) · exp(s · logs)`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = self.conv.out_channels();
        let scale = (self.logs.val() * self.logscale_factor)
            .exp()
            .reshape([1, c, 1, 1]);
        self.conv.forward(x) * scale
    }
}

/// A zero-initialised linear map with a learned output scale, `y = (x W + b) · exp(s · logs)`
/// (openai/glow `linear_zeros`), used to condition priors on a one-hot class.
#[derive(Module, Debug)]
pub struct ZeroLinear {
    /// `[in, out]`.
    pub weight: Param<Tensor<2>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
    /// `[out]`.
    pub logs: Param<Tensor<1>>,
    /// The log-scale factor `s`.
    pub logscale_factor: f64,
}

impl ZeroLinear {
    /// A zero linear map `inputs -> outputs`.
    pub fn new(inputs: usize, outputs: usize, logscale_factor: f64, device: &Device) -> Self {
        ZeroLinear {
            weight: Param::from_tensor(Tensor::zeros([inputs, outputs], device)),
            bias: Param::from_tensor(Tensor::zeros([outputs], device)),
            logs: Param::from_tensor(Tensor::zeros([outputs], device)),
            logscale_factor,
        }
    }

    /// `(x W + b) · exp(s · logs)` for `x` of shape `[N, in]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let out = self.bias.dims()[0];
        let scale = (self.logs.val() * self.logscale_factor)
            .exp()
            .reshape([1, out]);
        (x.matmul(self.weight.val()) + self.bias.val().reshape([1, out])) * scale
    }
}

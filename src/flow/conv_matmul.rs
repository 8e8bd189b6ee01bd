//! Stride-1 "same" convolutions written as matrix products, so that their backward passes are
//! matrix products too.
//!
//! burn's `flex` CPU backend differentiates `conv2d` with generic convolutions (its weight
//! gradient runs a convolution with batch and channels swapped, i.e. an `H x W` kernel); on
//! Glow's shapes that took 1.0-2.5x the time of the forms below (`examples/conv_backward.rs`).
//! Glow's convolutions have one small side:
//! the first of a coupling network reads `C/2` channels, the last writes `C`, and the middle one is
//! 1x1. With `r = k / 2` and zero padding,
//!
//! ```text
//! y[o, p] = Σ_{c, s} W[o, c, s] · x[c, p + s - r]            s = (dy, dx) ∈ {0..k}²
//! ```
//!
//! is computed as
//!
//! - **1x1**: one product `W · x` at every pixel;
//! - **shifted inputs** (few input channels): the `k²` shifted copies of `x` stacked into
//!   `[N, C·k², H·W]` (im2col), then one product with `W` as `[O, C·k²]`;
//! - **shifted outputs** (few output channels): one product `Z = W' · x` with `W'` as
//!   `[k²·O, C]`, then `y[p] = Σ_s Z_s[p + s - r]`, shifting the small `O`-channel maps.
//!
//! Each form holds `k²` copies of the smaller side only, and its backward pass is products and
//! shifts of the same kinds. On the CPU each piece is glowflow's own kernel, forward and
//! backward: the products are [`host_gemm::matmul`](super::host_gemm::matmul) (gemm calls that
//! write straight into their outputs), the shifted copies [`taps::gather`] and [`taps::sum`] (one
//! pass each); on other devices they are burn's products, pads and slices.

use burn::tensor::Tensor;

use super::host_gemm::matmul;
use super::pointwise_relu::pointwise_actnorm_relu;
use super::taps;

/// `y[n, o, p] = Σ_c w[o, c] · x[n, c, p]`: a 1x1 convolution with the `[O, C]` matrix `w`.
///
/// Usually one product per sample, `[O, C] · [C, H·W]`, run in parallel over the batch. When the
/// channels far outnumber the pixels (`C ≥ 8·H·W`: the deep levels of wide networks) the weight
/// gradient of that form is a batch of `[O, C]` products summed afterwards, mostly memory
/// traffic; there the batch is folded into the columns instead, `[O, C] · [C, N·H·W]`, whose
/// weight gradient is one product. Measured forward + backward at batch 32, 512 channels
/// (`examples/conv_backward.rs`): at 8x8 51 → 19 ms, at 4x4 37 → 5 ms; at 16x16 the two forms
/// are even forward + backward and the per-sample one is faster forward (33 vs 40 ms).
pub fn pointwise(x: Tensor<4>, w: Tensor<2>) -> Tensor<4> {
    pointwise_by(x, w, |w, x, _| matmul(w, x))
}

/// `relu((pointwise(x, w) + b) · s)` with `b` and `s` per output channel: a coupling network's
/// hidden 1x1 convolution with its ActNorm and relu, each product followed at once by its
/// activation ([`pointwise_actnorm_relu`]), in the form [`pointwise`] chooses.
pub fn pointwise_relu(x: Tensor<4>, w: Tensor<2>, bias: Tensor<1>, scale: Tensor<1>) -> Tensor<4> {
    pointwise_by(x, w, |w, x, plane| {
        pointwise_actnorm_relu(w, x, bias, scale, plane)
    })
}

/// [`pointwise`]'s two forms, each product `[1, O, C] · [B, C, P]` computed by
/// `product(w, x, H·W)`.
fn pointwise_by(
    x: Tensor<4>,
    w: Tensor<2>,
    product: impl FnOnce(Tensor<3>, Tensor<3>, usize) -> Tensor<3>,
) -> Tensor<4> {
    let [n, c, h, wd] = x.dims();
    let o = w.dims()[0];
    if c < 8 * h * wd {
        product(w.unsqueeze(), x.reshape([n, c, h * wd]), h * wd).reshape([n, o, h, wd])
    } else {
        let columns = x.swap_dims(0, 1).reshape([1, c, n * h * wd]);
        product(w.unsqueeze(), columns, h * wd)
            .reshape([o, n, h, wd])
            .swap_dims(0, 1)
    }
}

/// The zero-padded stride-1 convolution of `x` `[N, C, H, W]` with `weight` `[O, C, k, k]` (odd
/// `k`), output `[N, O, H, W]`: equal to burn's `conv2d` with padding `k / 2`.
pub fn same_conv(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [o, c, k, _] = weight.dims();
    if k == 1 {
        pointwise(x, weight.reshape([o, c]))
    } else if c <= o {
        conv_by_shifted_inputs(x, weight)
    } else {
        conv_by_shifted_outputs(x, weight)
    }
}

/// im2col: `[N, C·k², H·W]` of shifted inputs times `W` as `[O, C·k²]`.
fn conv_by_shifted_inputs(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let [o, _, k, _] = weight.dims();
    // Row c·k² + dy·k + dx, matching W's [O, C, k, k] layout.
    let columns = taps::gather(x, k).reshape([n, c * k * k, h * w]);
    matmul(weight.reshape([1, o, c * k * k]), columns).reshape([n, o, h, w])
}

/// `Z = W' · x` with `W'` as `[k²·O, C]`, then the sum of the `k²` shifted `O`-channel maps.
fn conv_by_shifted_outputs(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let k = weight.dims()[2];
    // Rows s·O + o with s = dy·k + dx.
    let stacked = taps::stacked_weight(weight);
    taps::sum(pointwise(x, stacked), k)
}

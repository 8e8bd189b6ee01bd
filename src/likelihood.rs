//! From 8-bit pixels to the continuous inputs Glow models, and from log-densities to bits per
//! dimension, exactly as openai/glow computes them.
//!
//! With `B = 2^n_bits` bins, an 8-bit value `v` is reduced to `k = floor(v / 2^(8 - n_bits))`,
//! dequantised with uniform noise `u ~ U[0, 1)` and scaled to `[-0.5, 0.5)`:
//!
//! ```text
//! x = (k + u) / B - 0.5
//! ```
//!
//! The density of the discrete data is bounded by that of `x` times the volume `B^-D` of each
//! bin, so for an image of `D = C·H·W` dimensions
//!
//! ```text
//! bits/dim = -(log p(x) - D · log B) / (D · log 2)
//! ```

use burn::tensor::{Device, Tensor};
use rand::Rng;

use crate::tensor_ops::from_f64;

/// Number of bins `2^n_bits`.
pub fn n_bins(n_bits: u32) -> f64 {
    f64::from(1u32 << n_bits)
}

/// `x = (floor(v / 2^(8 - n_bits)) + u) / 2^n_bits - 0.5` for 8-bit values `v` (as floats).
pub fn preprocess(images: Tensor<4>, noise: Tensor<4>, n_bits: u32) -> Tensor<4> {
    let reduce = f64::from(1u32 << (8 - n_bits));
    ((images / reduce).floor() + noise) / n_bins(n_bits) - 0.5
}

/// Uniform dequantisation noise `U[0, 1)` from a seeded host generator.
pub fn uniform_noise(shape: [usize; 4], rng: &mut impl Rng, device: &Device) -> Tensor<4> {
    let count = shape.iter().product();
    from_f64(
        (0..count).map(|_| rng.random::<f64>()).collect(),
        shape,
        device,
    )
}

/// Bits per dimension from `log p(x)` (nats) per sample, for images of `dims` dimensions.
pub fn bits_per_dim(log_prob: Tensor<1>, dims: usize, n_bits: u32) -> Tensor<1> {
    let d = dims as f64;
    (log_prob - d * n_bins(n_bits).ln()).neg() / (d * std::f64::consts::LN_2)
}

/// Model-space images in `[-0.5, 0.5]` back to 8-bit values (as floats in `0..=255`): the bin
/// `floor((x + 0.5) · B)`, clamped to a valid bin, scaled back up to 8 bits.
pub fn to_pixels(x: Tensor<4>, n_bits: u32) -> Tensor<4> {
    let bins = n_bins(n_bits);
    let reduce = f64::from(1u32 << (8 - n_bits));
    ((x + 0.5) * bins).floor().clamp(0.0, bins - 1.0) * reduce
}

/// The cross-entropy `-log₂ softmax(l)_y` of each row `l` of `logits` (`[N, K]`) at the one-hot
/// label row `y` of `labels`, in bits (openai/glow's `bits_y`):
///
/// ```text
/// (log Σ_k exp(l_k) - Σ_k y_k l_k) / ln 2
/// ```
///
/// computed with the row's largest logit taken out of the exponentials.
pub fn cross_entropy_bits(logits: Tensor<2>, labels: Tensor<2>) -> Tensor<1> {
    let n = logits.dims()[0];
    let max = logits.clone().detach().max_dim(1);
    let log_sum_exp = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let at_label = (labels * logits).sum_dim(1);
    ((log_sum_exp - at_label) / std::f64::consts::LN_2).reshape([n])
}

/// The index of the largest entry of `row` (the first of equal ones) and `log Σ exp(row)`.
pub fn argmax_and_log_sum_exp(row: &[f64]) -> (usize, f64) {
    let (best, max) = row
        .iter()
        .copied()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
    let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
    (best, max + sum.ln())
}

/// A classifier's figures for one row of `logits` whose class is `label`: its cross-entropy in
/// bits (as [`cross_entropy_bits`], in f64) and 1 if its largest logit (the first of equal
/// ones) is not the label's, else 0.
pub fn classifier_row(logits: &[f64], label: usize) -> [f64; 2] {
    let (best, log_sum_exp) = argmax_and_log_sum_exp(logits);
    [
        (log_sum_exp - logits[label]) / std::f64::consts::LN_2,
        f64::from(u8::from(best != label)),
    ]
}

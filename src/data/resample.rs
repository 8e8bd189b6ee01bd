//! Pillow's Lanczos resampling, bit for bit: `Image.resize(size, Image.LANCZOS)` (called
//! `Image.ANTIALIAS` before Pillow 10), with which openai/glow made its LSUN data.
//!
//! Each axis is resampled on its own, the width first, through 8-bit pixels. Scaling an axis of
//! `n` samples to `m`, output sample `i` is centred at `c = (i + 1/2)·n/m` in the input. With the
//! filter scale `s = max(n/m, 1)` (the window widened when shrinking, so that it also low-passes)
//! it weighs input sample `j`, from `trunc(c − 3s + 1/2)` up to but not including
//! `trunc(c + 3s + 1/2)`, clamped to the axis, by `L((j + 1/2 − c)/s)`, where
//! `L(x) = sinc(x)·sinc(x/3)` for `−3 ≤ x < 3` and 0 beyond, the weights divided by their sum.
//! The weights are then rounded (half away from zero) to fixed point with 22 fractional bits
//! (`PRECISION_BITS`); a sample is the floor of half a unit plus the weighted sum of its inputs,
//! clamped to `0..=255`.
//!
//! Pillow 13 resamples the height first for some non-square sizes, which changes a few samples.
//! Resizing a square image to a square size (all that folders need), it still resamples the
//! width first, as Pillow 12 and openai/glow's Pillow of 2018 always did.

use std::borrow::Cow;
use std::f64::consts::PI;

/// Fractional bits of the fixed-point weights: 32 − 8 − 2, room for 8-bit samples and for sums
/// outside `0..=255` (the window's negative lobes), as Pillow's 32-bit sums have.
const PRECISION_BITS: u32 = 22;

/// Half the Lanczos window's width, in input samples at filter scale 1.
const SUPPORT: f64 = 3.0;

/// `image`, interleaved 8-bit pixels of shape `[height, width, channels]` (every length
/// positive), resized to `[height, width]` = `size` with Pillow's Lanczos filter (the module's
/// formulas). An axis whose length does not change is left as it is.
pub fn lanczos(image: &[u8], shape: [usize; 3], size: [usize; 2]) -> Vec<u8> {
    let [height, width, channels] = shape;
    let [new_height, new_width] = size;
    let mut pixels = Cow::Borrowed(image);
    if new_width != width {
        let taps = taps(width, new_width);
        pixels = Cow::Owned(resample_axis(
            &pixels,
            [height, width, channels],
            &taps,
            channels,
        ));
    }
    if new_height != height {
        let taps = taps(height, new_height);
        pixels = Cow::Owned(resample_axis(
            &pixels,
            [1, height, new_width * channels],
            &taps,
            channels,
        ));
    }
    pixels.into_owned()
}

/// The truncated sinc window `L(x) = sinc(x)·sinc(x/3)` on `[−3, 3)`, `sinc(x) = sin(πx)/(πx)`.
fn window(x: f64) -> f64 {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            let x = x * PI;
            x.sin() / x
        }
    };
    if (-SUPPORT..SUPPORT).contains(&x) {
        sinc(x) * sinc(x / SUPPORT)
    } else {
        0.0
    }
}

/// The inputs that one output sample of an axis reads: from `first`, one fixed-point weight each.
struct Taps {
    /// The first input sample read.
    first: usize,
    /// The weights of the inputs from `first` on, scaled by `2^PRECISION_BITS`.
    weights: Vec<i32>,
}

/// The taps of each output sample of an axis of `input` samples scaled to `output`, in the
/// order and precision of Pillow's arithmetic (the module's formulas).
fn taps(input: usize, output: usize) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = SUPPORT * filter_scale;
    let inverse = 1.0 / filter_scale;
    let unit = f64::from(1u32 << PRECISION_BITS);
    (0..output)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            // Truncation toward zero, as C's cast from double to int.
            let first = ((centre - support + 0.5) as i64).max(0) as usize;
            let end = ((centre + support + 0.5) as i64).clamp(0, input as i64) as usize;
            let raw: Vec<f64> = (first..end)
                .map(|j| window((j as f64 - centre + 0.5) * inverse))
                .collect();
            let sum: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if sum != 0.0 { w / sum } else { w };
                    let half = if w < 0.0 { -0.5 } else { 0.5 };
                    (half + w * unit) as i32
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// Resamples axis 1 of `pixels`, laid out `[outer, len, inner]`, to `taps.len()` samples:
/// `[outer, taps.len(), inner]`, `channels` of `inner` at a time (a pixel's, in registers).
fn resample_axis(pixels: &[u8], shape: [usize; 3], taps: &[Taps], channels: usize) -> Vec<u8> {
    match channels {
        3 => resample_axis_by::<3>(pixels, shape, taps),
        _ => resample_axis_by::<1>(pixels, shape, taps),
    }
}

/// [`resample_axis`] `N` samples of `inner` at a time (`N` divides `inner`). The sums are
/// Pillow's 32-bit ones; they cannot overflow, since a sample's weights add up to 1 and their
/// magnitudes to less than 2 (the window's lobes), so `|sum| < 255 · 2 · 2^22 < 2^31`.
fn resample_axis_by<const N: usize>(
    pixels: &[u8],
    [outer, len, inner]: [usize; 3],
    taps: &[Taps],
) -> Vec<u8> {
    let mut resampled = Vec::with_capacity(outer * taps.len() * inner);
    for block in pixels.chunks_exact((len * inner).max(1)).take(outer) {
        for tap in taps {
            for k in (0..inner).step_by(N) {
                let mut sums = [1i32 << (PRECISION_BITS - 1); N];
                for (j, &weight) in tap.weights.iter().enumerate() {
                    let start = (tap.first + j) * inner + k;
                    for (sum, &sample) in sums.iter_mut().zip(&block[start..start + N]) {
                        *sum = sum.wrapping_add(i32::from(sample).wrapping_mul(weight));
                    }
                }
                resampled.extend(sums.map(|sum| (sum >> PRECISION_BITS).clamp(0, 255) as u8));
            }
        }
    }
    resampled
}

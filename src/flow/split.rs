//! Split (factor-out) with a learned conditional prior (Glow §3, multi-scale architecture).
//!
//! Half of the channels leave the flow at each level. Their prior is a diagonal Gaussian whose
//! mean and log-std are computed from the half that stays, `(μ, log σ) = ZeroConv(z_a)` (read
//! interleaved, as openai/glow does). The split is the bijection
//!
//! ```text
//! z = [z_a ; z_b]  ->  [z_a ; ε],   ε = (z_b - μ(z_a)) / σ(z_a)      log|det| = -Σ log σ
//! ```
//!
//! so `ε` is standard normal under the model. Sampling at temperature `T` draws `ε ~ N(0, T²)`.
//! The map keeps both halves; the model's walk ([`crate::model::walk`]) lets `ε` leave the flow.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::conv::{Padding, ZeroConv2d};
use super::{Condition, InvertibleMap};
use crate::tensor_ops::{channel_halves, channel_interleaved, sum_per_sample};

/// The factor-out at the end of a level, with its learned prior.
#[derive(Module, Debug)]
pub struct Split {
    /// `z_a` (C/2 channels) -> `[μ, log σ]` interleaved (C channels), zero at initialisation.
    pub prior: ZeroConv2d,
}

impl Split {
    /// A split of a `channels`-channel tensor (`channels` even, checked by the model config).
    pub fn new(channels: usize, padding: Padding, logscale_factor: f64, device: &Device) -> Self {
        Split {
            prior: ZeroConv2d::new(
                [channels / 2, channels],
                3,
                padding,
                logscale_factor,
                device,
            ),
        }
    }

    fn mean_log_std(&self, z_a: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        channel_interleaved(self.prior.forward(z_a))
    }
}

impl InvertibleMap for Split {
    /// `[z_a ; z_b] -> ([z_a ; ε], -Σ log σ)`.
    fn forward(&self, z: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let (z_a, z_b) = channel_halves(z);
        let (mean, log_std) = self.mean_log_std(z_a.clone());
        let eps = (z_b - mean) * log_std.clone().neg().exp();
        (
            Tensor::cat(vec![z_a, eps], 1),
            sum_per_sample(log_std).neg(),
        )
    }

    /// `[z_a ; ε] -> ([z_a ; z_b], Σ log σ)`.
    fn inverse(&self, y: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let (z_a, eps) = channel_halves(y);
        let (mean, log_std) = self.mean_log_std(z_a.clone());
        let z_b = mean + eps * log_std.clone().exp();
        (Tensor::cat(vec![z_a, z_b], 1), sum_per_sample(log_std))
    }
}

//! Squeeze (space-to-depth): each 2x2 block of pixels becomes 4 channels.
//!
//! ```text
//! [N, C, H, W] -> [N, 4C, H/2, W/2],   y[n, 4c + 2dy + dx, i, j] = x[n, c, 2i + dy, 2j + dx]
//! ```
//!
//! The channel order matches openai/glow's `squeeze2d`. It only moves values: log|det| = 0.

use burn::tensor::Tensor;

use super::{Condition, InvertibleMap};

/// Space-to-depth by a factor of 2.
#[derive(Debug, Clone, Copy, Default)]
pub struct Squeeze;

impl InvertibleMap for Squeeze {
    /// `[N, C, H, W] -> [N, 4C, H/2, W/2]`; `H` and `W` must be even.
    fn forward(&self, x: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, c, h, w] = x.dims();
        let device = x.device();
        let y = x
            .reshape([n, c, h / 2, 2, w / 2, 2])
            .permute([0, 1, 3, 5, 2, 4])
            .reshape([n, c * 4, h / 2, w / 2]);
        (y, Tensor::zeros([n], &device))
    }

    /// `[N, 4C, H, W] -> [N, C, 2H, 2W]`.
    fn inverse(&self, y: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, c4, h, w] = y.dims();
        let c = c4 / 4;
        let device = y.device();
        let x = y
            .reshape([n, c, 2, 2, h, w])
            .permute([0, 1, 4, 2, 5, 3])
            .reshape([n, c, h * 2, w * 2]);
        (x, Tensor::zeros([n], &device))
    }
}

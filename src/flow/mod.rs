//! The invertible maps Glow is built from, and the one contract they share.
//!
//! Every layer is a bijection `y = f(x)` on `[N, C, H, W]` tensors that reports, per sample, the
//! log-determinant of its Jacobian:
//!
//! ```text
//! forward(x) -> (y, log|det ∂y/∂x|)          data -> latent direction
//! inverse(y) -> (x, log|det ∂x/∂y|)          latent -> data; equals -(forward log-det) at x = f⁻¹(y)
//! ```
//!
//! Layers hold no hidden state that the inverse cannot see, so the input of any layer can be
//! recomputed from its output.

pub mod actnorm;
pub mod conv;
pub mod conv_matmul;
pub mod coupling;
pub mod permute;
pub mod split;
pub mod squeeze;
pub mod step;

use burn::tensor::Tensor;

/// A bijection on `[N, C, H, W]` tensors with a per-sample log-determinant.
pub trait InvertibleMap: Sized {
    /// `y = f(x)` and `log|det ∂y/∂x|` for each sample, shape `[N]`.
    fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<1>);

    /// `x = f⁻¹(y)` and `log|det ∂x/∂y|` for each sample, shape `[N]`.
    fn inverse(&self, y: Tensor<4>) -> (Tensor<4>, Tensor<1>);

    /// Data-dependent initialisation: sets whatever the layer initialises from data using the
    /// batch `x`, and returns the initialised layer with its output on `x`. Layers with nothing
    /// to initialise just run forward.
    fn data_init(self, x: Tensor<4>) -> (Self, Tensor<4>) {
        let (y, _) = self.forward(x);
        (self, y)
    }
}

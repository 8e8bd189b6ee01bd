//! The invertible maps Glow is built from, the one contract they share, and their composition.
//!
//! Every piece of the model, priors included, is a bijection `y = f(x; c)` on `[N, C, H, W]`
//! tensors, optionally conditioned on `c` (the one-hot class labels of a class-conditional
//! model, as FrEIA's `c` and distrax's conditional bijectors), that reports, per sample, the
//! log-determinant of its Jacobian in `x`:
//!
//! ```text
//! forward(x, c) -> (y, log|det ∂y/∂x|)          data -> latent direction
//! inverse(y, c) -> (x, log|det ∂x/∂y|)          latent -> data; equals -(forward log-det) at x = f⁻¹(y)
//! ```
//!
//! Maps hold no hidden state that the inverse cannot see, so the input of any map can be
//! recomputed from its output. [`forward_chain`] and [`inverse_chain`] compose maps
//! `f = f_n ∘ … ∘ f_1`; the multi-scale walk of the whole model (which also factors latents out)
//! is [`crate::model::walk`].

pub mod actnorm;
pub mod actnorm_relu;
pub mod conv;
pub mod conv_matmul;
pub mod coupling;
pub mod host_float;
pub mod host_gemm;
pub mod permute;
pub mod pointwise_relu;
pub mod prior;
pub mod split;
pub mod squeeze;
pub mod step;
pub mod taps;

use burn::tensor::Tensor;

/// What a map is conditioned on besides its input: the one-hot class labels `[N, n_classes]` of
/// a class-conditional model, or nothing. Only the top prior reads it; every other map ignores it.
pub type Condition<'a> = Option<&'a Tensor<2>>;

/// A bijection on `[N, C, H, W]` tensors with a per-sample log-determinant.
pub trait InvertibleMap {
    /// `y = f(x; c)` and `log|det ∂y/∂x|` for each sample, shape `[N]`.
    fn forward(&self, x: Tensor<4>, c: Condition) -> (Tensor<4>, Tensor<1>);

    /// `x = f⁻¹(y; c)` and `log|det ∂x/∂y|` for each sample, shape `[N]`.
    fn inverse(&self, y: Tensor<4>, c: Condition) -> (Tensor<4>, Tensor<1>);

    /// Data-dependent initialisation: sets whatever the map initialises from data using the
    /// batch `x`, and returns the initialised map with its output on `x`. Maps with nothing to
    /// initialise just run forward.
    fn data_init(self, x: Tensor<4>, c: Condition) -> (Self, Tensor<4>)
    where
        Self: Sized,
    {
        let (y, _) = self.forward(x, c);
        (self, y)
    }
}

/// `f_n ∘ … ∘ f_1` applied to `x`: `maps` in order, log-determinants added in the same order.
pub fn forward_chain(
    maps: &[&dyn InvertibleMap],
    x: Tensor<4>,
    c: Condition,
) -> (Tensor<4>, Tensor<1>) {
    chain(maps.iter().copied(), x, |map, x| map.forward(x, c))
}

/// `f_1⁻¹ ∘ … ∘ f_n⁻¹` applied to `y`, the inverse of [`forward_chain`] on the same `maps`.
pub fn inverse_chain(
    maps: &[&dyn InvertibleMap],
    y: Tensor<4>,
    c: Condition,
) -> (Tensor<4>, Tensor<1>) {
    chain(maps.iter().rev().copied(), y, |map, y| map.inverse(y, c))
}

/// Applies `apply` with each map in turn, adding the log-determinants as they come.
fn chain<'m>(
    maps: impl Iterator<Item = &'m dyn InvertibleMap>,
    input: Tensor<4>,
    apply: impl Fn(&dyn InvertibleMap, Tensor<4>) -> (Tensor<4>, Tensor<1>),
) -> (Tensor<4>, Tensor<1>) {
    let mut log_det: Option<Tensor<1>> = None;
    let mut z = input;
    for map in maps {
        let (out, ld) = apply(map, z);
        z = out;
        log_det = Some(match log_det {
            Some(sum) => sum + ld,
            None => ld,
        });
    }
    (z, log_det.expect("a chain has at least one map"))
}

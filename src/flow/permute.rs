//! Channel mixing between couplings (Glow §3.2): the invertible 1x1 convolution, plain or
//! LU-decomposed, and the fixed reverse and shuffle permutations the paper compares it with.
//!
//! ```text
//! 1x1 conv:      y[:, :, i, j] = W x[:, :, i, j]          log|det| = H · W · log|det W|
//! LU 1x1 conv:   W = P · (L + I) · (U + diag(sign · exp(log_s)))
//!                                                        log|det| = H · W · Σ log_s
//! reverse:       y = x[:, C-1, ..., 0]                    log|det| = 0
//! shuffle:       y = x[:, π]  for a fixed random π         log|det| = 0
//! ```
//!
//! `W` starts as a random rotation (log|det W| = 0). In the LU form `P` and `sign` are fixed, `L`
//! is strictly lower and `U` strictly upper triangular (masked), and `log_s` is trained. The
//! inverse needs `W⁻¹`, computed on the host in f64.

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::conv_matmul::pointwise;
use super::{Condition, InvertibleMap};
use crate::host_linalg;
use crate::tensor_ops::{from_f64, to_f64_vec};

/// The channel permutation a flow step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermutationKind {
    /// Learned invertible 1x1 convolution (Glow).
    InvConv,
    /// Fixed reversal of the channel order (RealNVP).
    Reverse,
    /// Fixed random permutation of the channels.
    Shuffle,
}

/// A channel mixing layer.
// burn's `Module` derive has no `Box` support, and a model holds one of these per step, so the
// size difference between variants costs nothing worth an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Permutation {
    /// 1x1 convolution with an unconstrained weight.
    Conv(InvConv),
    /// 1x1 convolution with an LU-parameterised weight.
    ConvLu(InvConvLu),
    /// A fixed permutation of the channels.
    Fixed(FixedPermutation),
}

impl Permutation {
    /// A channel mixing layer over `channels` channels; `lu` selects the LU parameterisation of
    /// the 1x1 convolution.
    pub fn new(
        kind: PermutationKind,
        lu: bool,
        channels: usize,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Self {
        match (kind, lu) {
            (PermutationKind::InvConv, false) => {
                Permutation::Conv(InvConv::new(channels, rng, device))
            }
            (PermutationKind::InvConv, true) => {
                Permutation::ConvLu(InvConvLu::new(channels, rng, device))
            }
            (PermutationKind::Reverse, _) => {
                let order: Vec<usize> = (0..channels).rev().collect();
                Permutation::Fixed(FixedPermutation::new(&order, device))
            }
            (PermutationKind::Shuffle, _) => {
                let mut order: Vec<usize> = (0..channels).collect();
                order.shuffle(rng);
                Permutation::Fixed(FixedPermutation::new(&order, device))
            }
        }
    }
}

/// `W⁻¹`, inverted on the host in f64. A singular `W` (only possible for diverged weights) gives
/// a matrix of NaNs, so decoding yields non-finite values (see
/// [`crate::tensor_ops::non_finite_samples`]) instead of panicking.
fn inverse_weight(weight: Tensor<2>) -> Tensor<2> {
    let [c, _] = weight.dims();
    let device = weight.device();
    inverse_of_host(&to_f64_vec(weight), c, &device)
}

/// [`inverse_weight`] of a `c x c` matrix already on the host (row-major f64).
fn inverse_of_host(weight: &[f64], c: usize, device: &Device) -> Tensor<2> {
    let inv = host_linalg::invert(weight, c).unwrap_or_else(|| vec![f64::NAN; c * c]);
    from_f64(inv, [c, c], device)
}

/// `H · W · log|det W|` for each of `n` samples.
fn log_det_per_sample(log_abs_det: Tensor<1>, n: usize, h: usize, w: usize) -> Tensor<1> {
    (log_abs_det * (h * w) as f64).expand([n])
}

/// The plain invertible 1x1 convolution.
#[derive(Module, Debug)]
pub struct InvConv {
    /// `[C, C]`, a random rotation at initialisation.
    pub weight: Param<Tensor<2>>,
}

impl InvConv {
    fn new(channels: usize, rng: &mut impl Rng, device: &Device) -> Self {
        let w = host_linalg::random_rotation(channels, rng);
        InvConv {
            weight: Param::from_tensor(from_f64(w, [channels, channels], device)),
        }
    }

    /// `log|det W|`, computed on the host in f64 (a sum of log-pivots, which cannot overflow as a
    /// product could), made differentiable with its exact gradient `W⁻ᵀ`:
    ///
    /// ```text
    /// log|det W| + Σ (W - stop(W)) ⊙ stop(W⁻ᵀ)
    /// ```
    ///
    /// whose value is `log|det W|` and whose derivative in `W` is `W⁻ᵀ`, instead of burn's
    /// differentiable LU, which records every elimination step of the `C x C` matrix in the
    /// graph. A singular `W` (diverged weights) gives `-inf` and a NaN gradient, which the
    /// training loop's non-finite guard handles.
    fn log_abs_det(&self) -> Tensor<1> {
        let w = self.weight.val();
        let [c, _] = w.dims();
        let device = w.device();
        let host = to_f64_vec(w.clone());
        let value = host_linalg::log_abs_det(&host, c);
        let gradient = inverse_of_host(&host, c, &device).transpose();
        let zero_with_gradient = ((w.clone() - w.detach()) * gradient).sum();
        zero_with_gradient + value
    }
}

impl InvertibleMap for InvConv {
    fn forward(&self, x: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, _, h, w] = x.dims();
        let y = pointwise(x, self.weight.val());
        (y, log_det_per_sample(self.log_abs_det(), n, h, w))
    }

    fn inverse(&self, y: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, _, h, w] = y.dims();
        let x = pointwise(y, inverse_weight(self.weight.val()));
        (x, log_det_per_sample(self.log_abs_det().neg(), n, h, w))
    }
}

/// The LU-decomposed invertible 1x1 convolution.
#[derive(Module, Debug)]
pub struct InvConvLu {
    /// Fixed permutation matrix `P`, `[C, C]`.
    pub p: Param<Tensor<2>>,
    /// Lower factor; only its strictly lower triangle is used, `[C, C]`.
    pub l: Param<Tensor<2>>,
    /// Upper factor; only its strictly upper triangle is used, `[C, C]`.
    pub u: Param<Tensor<2>>,
    /// Fixed signs of the diagonal of the upper factor, `[C]`.
    pub sign_s: Param<Tensor<1>>,
    /// Log-magnitudes of the diagonal of the upper factor, `[C]`.
    pub log_s: Param<Tensor<1>>,
}

impl InvConvLu {
    fn new(channels: usize, rng: &mut impl Rng, device: &Device) -> Self {
        let c = channels;
        let w = host_linalg::random_rotation(c, rng);
        let f = host_linalg::lu(&w, c);
        let diag: Vec<f64> = (0..c).map(|i| f.u[i * c + i]).collect();
        let fixed = |values: Vec<f64>, shape: [usize; 2]| {
            Param::from_tensor(from_f64(values, shape, device)).set_require_grad(false)
        };
        InvConvLu {
            p: fixed(f.p, [c, c]),
            l: Param::from_tensor(from_f64(f.l, [c, c], device)),
            u: Param::from_tensor(from_f64(f.u, [c, c], device)),
            sign_s: Param::from_tensor(from_f64(
                diag.iter().map(|d| d.signum()).collect(),
                [c],
                device,
            ))
            .set_require_grad(false),
            log_s: Param::from_tensor(from_f64(
                diag.iter().map(|d| d.abs().ln()).collect(),
                [c],
                device,
            )),
        }
    }

    /// `W = P · (tril(L, -1) + I) · (triu(U, 1) + diag(sign · exp(log_s)))`.
    pub fn weight(&self) -> Tensor<2> {
        let c = self.log_s.dims()[0];
        let device = self.log_s.device();
        let eye = Tensor::<2>::eye(c, &device);
        let lower = self.l.val().tril(-1) + eye.clone();
        let diag = (self.sign_s.val() * self.log_s.val().exp()).reshape([1, c]);
        let upper = self.u.val().triu(1) + eye * diag;
        self.p.val().matmul(lower).matmul(upper)
    }
}

impl InvertibleMap for InvConvLu {
    fn forward(&self, x: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, _, h, w] = x.dims();
        let y = pointwise(x, self.weight());
        (y, log_det_per_sample(self.log_s.val().sum(), n, h, w))
    }

    fn inverse(&self, y: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let [n, _, h, w] = y.dims();
        let x = pointwise(y, inverse_weight(self.weight()));
        (x, log_det_per_sample(self.log_s.val().sum().neg(), n, h, w))
    }
}

/// A fixed permutation of the channels, stored with the model.
#[derive(Module, Debug)]
pub struct FixedPermutation {
    /// `y[:, i] = x[:, order[i]]`.
    pub order: Param<Tensor<1, Int>>,
    /// The inverse permutation.
    pub inverse_order: Param<Tensor<1, Int>>,
}

impl FixedPermutation {
    fn new(order: &[usize], device: &Device) -> Self {
        let mut inverse = vec![0i64; order.len()];
        for (i, &o) in order.iter().enumerate() {
            inverse[o] = i as i64;
        }
        let forward: Vec<i64> = order.iter().map(|&o| o as i64).collect();
        let index = |values: Vec<i64>| {
            let n = values.len();
            Param::initialized(
                ParamId::new(),
                Tensor::<1, Int>::from_data(TensorData::new(values, [n]), device),
            )
        };
        FixedPermutation {
            order: index(forward),
            inverse_order: index(inverse),
        }
    }
}

impl InvertibleMap for FixedPermutation {
    fn forward(&self, x: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let n = x.dims()[0];
        let device = x.device();
        (x.select(1, self.order.val()), Tensor::zeros([n], &device))
    }

    fn inverse(&self, y: Tensor<4>, _c: Condition) -> (Tensor<4>, Tensor<1>) {
        let n = y.dims()[0];
        let device = y.device();
        (
            y.select(1, self.inverse_order.val()),
            Tensor::zeros([n], &device),
        )
    }
}

impl InvertibleMap for Permutation {
    fn forward(&self, x: Tensor<4>, c: Condition) -> (Tensor<4>, Tensor<1>) {
        match self {
            Permutation::Conv(layer) => layer.forward(x, c),
            Permutation::ConvLu(layer) => layer.forward(x, c),
            Permutation::Fixed(layer) => layer.forward(x, c),
        }
    }

    fn inverse(&self, y: Tensor<4>, c: Condition) -> (Tensor<4>, Tensor<1>) {
        match self {
            Permutation::Conv(layer) => layer.inverse(y, c),
            Permutation::ConvLu(layer) => layer.inverse(y, c),
            Permutation::Fixed(layer) => layer.inverse(y, c),
        }
    }
}

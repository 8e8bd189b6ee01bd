//! `relu(ActNorm(x))`, the coupling network's hidden activation, as one pass on the CPU.
//!
//! Per channel `c`, with `u = x + b_c` and `a = u · s_c`:
//!
//! ```text
//! forward:   z = relu(a)                        (NaN passes through, as burn's relu)
//! backward:  g = ∂/∂z where a > 0 (or a is NaN), else 0
//!            ∂/∂x = g · s_c      ∂/∂b_c = Σ g · s_c      ∂/∂s_c = Σ g · u
//! ```
//!
//! the sums running over the batch and the pixels. Composed of burn operations this is an add,
//! a multiply and a relu forward, each its own pass over the activations with its own output
//! buffer, and about as many passes backward plus two reductions; here it is one pass each way,
//! the per-channel sums accumulated in f64. The forward values are those of the composition bit
//! for bit (the same f32 operations in the same order).
//!
//! `x` and `∂/∂z` are read in place wherever their channel planes are contiguous
//! ([`super::host_float::Planes`]), and `z` and `∂/∂x` keep the layout of `x`: the
//! channel-major output of a batch-folded 1×1 product passes through to the next batch-folded
//! product without a copy either way. Without a graph, an input that owns its buffer is
//! rewritten in place.
//!
//! Like [`super::host_gemm`], a burn backend extension for `Flex` and `Autodiff<Flex>`; other
//! devices compute the composition.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex};
use burn::tensor::activation::relu;
use burn::tensor::{DType, Tensor};
use multiversion::multiversion;

use super::host_float::{
    dense_plane_order, dims4, extend_mapped, host_values, per_channel, plane_order, planes_tensor,
    HostFloat, Planes,
};
use crate::device::runs_on_host;

/// `relu((x + b) · s)` with `b` and `s` per channel (`[C]`) over `x` `[N, C, H, W]`.
pub fn actnorm_relu(x: Tensor<4>, bias: Tensor<1>, scale: Tensor<1>) -> Tensor<4> {
    let c = bias.dims()[0];
    if !runs_on_host(&x.device()) {
        return relu((x + bias.reshape([1, c, 1, 1])) * scale.reshape([1, c, 1, 1]));
    }
    Tensor::from_dispatch(<Dispatch as HostActNormRelu>::actnorm_relu(
        x.into_dispatch(),
        bias.into_dispatch(),
        scale.into_dispatch(),
    ))
}

/// The fused activation as a backend operation (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait HostActNormRelu: Backend {
    /// `relu((x + b) · s)`, `x` `[N, C, H, W]`, `b` and `s` `[C]`.
    fn actnorm_relu(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl HostActNormRelu for Flex {
    fn actnorm_relu(x: FlexTensor, bias: FlexTensor, scale: FlexTensor) -> FlexTensor {
        match x.dtype() {
            DType::F32 => forward::<f32>(x, &bias, &scale),
            DType::F64 => forward::<f64>(x, &bias, &scale),
            other => panic!("actnorm_relu runs on f32 or f64 tensors, not {other:?}"),
        }
    }
}

/// Independent running sums per plane in the backward pass.
const LANES: usize = 16;

/// Whether relu passes the gradient at `a` (burn's rule: `a > 0` or NaN).
#[inline(always)]
fn passes<T: HostFloat>(a: T) -> bool {
    a.is_nan() || a > T::ZERO
}

/// `relu((v + b) · s)` of one value.
#[inline(always)]
pub(super) fn activation<T: HostFloat>(b: T, s: T, v: T) -> T {
    let a = (v + b) * s;
    if passes(a) {
        a
    } else {
        T::ZERO
    }
}

/// `(g' · s, g' · u)` of one value, with `u = v + b` and `g' = g` where relu passes it, else 0:
/// its `∂/∂x` and its terms of `∂/∂b` (the first, again) and `∂/∂s`.
#[inline(always)]
fn gradient_terms<T: HostFloat>(b: T, s: T, v: T, g: T) -> (T, T) {
    let u = v + b;
    let g = if passes(u * s) { g } else { T::ZERO };
    (g * s, g * u)
}

/// `relu((v + b) · s)` of each of `values`, rewritten in place.
#[inline(always)]
pub(super) fn activate_in_place<T: HostFloat>(values: &mut [T], (b, s): (T, T)) {
    for v in values.iter_mut() {
        *v = activation(b, s, *v);
    }
}

/// The backward pass over one plane of channel `(b, s)`: `∂/∂x` of each value appended to `dx`,
/// and the plane's terms of `∂/∂b` and `∂/∂s`, summed in `LANES` running sums (so that the loop
/// vectorises) and those added up in f64.
#[inline(always)]
pub(super) fn plane_backward<T: HostFloat>(
    values: &[T],
    grads: &[T],
    (b, s): (T, T),
    dx: &mut Vec<T>,
) -> (f64, f64) {
    let (mut sum_b, mut sum_s) = ([T::ZERO; LANES], [T::ZERO; LANES]);
    let values = values.chunks_exact(LANES);
    let grads = grads.chunks_exact(LANES);
    let tail = values.remainder().iter().zip(grads.remainder());
    for (v, g) in values.zip(grads) {
        let mut d = [T::ZERO; LANES];
        for i in 0..LANES {
            let (dx_i, gu) = gradient_terms(b, s, v[i], g[i]);
            d[i] = dx_i;
            sum_b[i] = sum_b[i] + dx_i;
            sum_s[i] = sum_s[i] + gu;
        }
        dx.extend_from_slice(&d);
    }
    for (&v, &g) in tail {
        let (dx_i, gu) = gradient_terms(b, s, v, g);
        dx.push(dx_i);
        sum_b[0] = sum_b[0] + dx_i;
        sum_s[0] = sum_s[0] + gu;
    }
    let total = |sums: [T; LANES]| sums.iter().map(|&x| x.into()).sum::<f64>();
    (total(sum_b), total(sum_s))
}

/// `relu((x + b) · s)`: in place when `x` owns its buffer and holds nothing but its planes (a
/// forward pass without a graph, whose input nothing else reads), into a new buffer otherwise.
#[multiversion(targets = "simd")]
fn forward<T: HostFloat>(mut x: FlexTensor, bias: &FlexTensor, scale: &FlexTensor) -> FlexTensor {
    let dims = dims4(&x);
    let (bias, scale) = (host_values::<T>(bias), host_values::<T>(scale));
    let plane = (dims[2] * dims[3]).max(1);
    if let Some(channel_major) = dense_plane_order::<T>(&x) {
        if let Some(values) = x.try_storage_mut::<T>() {
            let planes = plane_order(dims, channel_major).zip(values.chunks_exact_mut(plane));
            for ((_, c), values) in planes {
                activate_in_place(values, (bias[c], scale[c]));
            }
            return x;
        }
    }
    let x = Planes::<T>::of(&x);
    let mut out = Vec::with_capacity(dims.iter().product());
    for (n, c) in plane_order(dims, x.channel_major()) {
        let (b, s) = (bias[c], scale[c]);
        extend_mapped(&mut out, x.plane(n, c), |v| activation(b, s, v));
    }
    planes_tensor(out, dims, x.channel_major())
}

/// `(∂/∂x, ∂/∂b, ∂/∂s)` of the module docs, from the forward's inputs and `∂/∂z`; `∂/∂x` in the
/// layout of `x`.
#[multiversion(targets = "simd")]
fn backward<T: HostFloat>(
    x: &FlexTensor,
    bias: &FlexTensor,
    scale: &FlexTensor,
    grad: &FlexTensor,
) -> [FlexTensor; 3] {
    let dims = dims4(x);
    let channels = dims[1];
    let (x_planes, bias, scale) = (
        Planes::<T>::of(x),
        host_values::<T>(bias),
        host_values::<T>(scale),
    );
    let grad = Planes::<T>::of(grad);
    let mut dx = Vec::with_capacity(dims.iter().product());
    let (mut db, mut ds) = (vec![0.0f64; channels], vec![0.0f64; channels]);
    for (n, c) in plane_order(dims, x_planes.channel_major()) {
        let (sum_b, sum_s) = plane_backward(
            x_planes.plane(n, c),
            grad.plane(n, c),
            (bias[c], scale[c]),
            &mut dx,
        );
        db[c] += sum_b;
        ds[c] += sum_s;
    }
    [
        planes_tensor(dx, dims, x_planes.channel_major()),
        per_channel(db, x.dtype()),
        per_channel(ds, x.dtype()),
    ]
}

#[derive(Debug)]
struct ActNormReluBackward;

impl Backward<Flex, 3> for ActNormReluBackward {
    /// The checkpoints of `x`, `b` and `s`.
    type State = [NodeId; 3];

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [x, bias, scale]: [FlexTensor; 3] =
            ops.state.map(|id| checkpointer.retrieve_node_output(id));
        let grad = grads.consume::<Flex>(&ops.node);
        let gradients = match x.dtype() {
            DType::F32 => backward::<f32>(&x, &bias, &scale, &grad),
            DType::F64 => backward::<f64>(&x, &bias, &scale, &grad),
            other => panic!("actnorm_relu runs on f32 or f64 tensors, not {other:?}"),
        };
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, gradient);
            }
        }
    }
}

impl<C: CheckpointStrategy> HostActNormRelu for Autodiff<Flex, C> {
    fn actnorm_relu(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prepared = ActNormReluBackward
            .prepare::<C>([x.node(), bias.node(), scale.node()])
            .compute_bound()
            .stateful();
        let forward = |x: FloatTensor<Self>, b: FloatTensor<Self>, s: FloatTensor<Self>| {
            Flex::actnorm_relu(x.into_primitive(), b.into_primitive(), s.into_primitive())
        };
        match prepared {
            OpsKind::Tracked(mut prep) => {
                let state = [
                    prep.checkpoint(&x),
                    prep.checkpoint(&bias),
                    prep.checkpoint(&scale),
                ];
                prep.finish(state, forward(x, bias, scale))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x, bias, scale)),
        }
    }
}

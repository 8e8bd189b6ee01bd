//! `relu((W · x + b) · s)`: a coupling network's hidden 1×1 convolution and the ActNorm and
//! relu after it, one product at a time on the CPU.
//!
//! For `W` `[O, K]`, a batch of `x_j` `[K, P]` (per image, or the whole batch folded into the
//! columns) and `b`, `s` per output row (channel) `o`:
//!
//! ```text
//! forward:   a_j = W · x_j                    z_j = relu((a_j + b) · s)   row by row
//! backward:  â_j = ∂/∂a_j ([`super::actnorm_relu`]'s rule, from a_j and ∂/∂z_j)
//!            ∂/∂W = Σ_j â_j · x_jᵀ            ∂/∂x_j = Wᵀ · â_j
//!            ∂/∂b, ∂/∂s as [`super::actnorm_relu`], summed plane by plane (`P` or `H·W` values)
//! ```
//!
//! The composition ([`super::host_gemm::matmul`], then [`super::actnorm_relu`]) writes the
//! whole batch's `a` before the activation reads it back, and backward writes `â` before the two
//! products read it. Here each product's `a_j` and `â_j` (`O · P` values: 512 KiB at 512
//! channels and 16 × 16 pixels) is used right after it is made, while it is still in the core's
//! cache. The gemm calls, the activation's arithmetic and the order of every sum are the
//! composition's, so values and gradients are the same bit for bit.
//!
//! A burn backend extension for `Flex` and `Autodiff<Flex>`, like [`super::host_gemm`]; other
//! devices compute the composition.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::activation::relu;
use burn::tensor::{DType, Tensor};
use multiversion::multiversion;

use super::actnorm_relu::{activate_in_place, activation, plane_backward};
use super::host_float::{flex_tensor, host_values, per_channel, HostFloat};
use super::host_gemm::{
    for_each_product, gemm_parallelism, in_row_order, matmul, product_into, Operand, SendPtr,
};
use crate::device::runs_on_host;

/// `relu((W · x_j + b) · s)` for `w` `[1, O, K]`, `x` `[B, K, P]` and `bias`, `scale` `[O]`,
/// `[B, O, P]`; the per-channel gradient sums run over planes of `plane` values (`H · W`).
pub fn pointwise_actnorm_relu(
    w: Tensor<3>,
    x: Tensor<3>,
    bias: Tensor<1>,
    scale: Tensor<1>,
    plane: usize,
) -> Tensor<3> {
    if !runs_on_host(&x.device()) {
        let o = bias.dims()[0];
        return relu((matmul(w, x) + bias.reshape([1, o, 1])) * scale.reshape([1, o, 1]));
    }
    Tensor::from_dispatch(<Dispatch as HostPointwiseRelu>::pointwise_actnorm_relu(
        w.into_dispatch(),
        x.into_dispatch(),
        bias.into_dispatch(),
        scale.into_dispatch(),
        plane,
    ))
}

/// The fused layer as a backend operation (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait HostPointwiseRelu: Backend {
    /// `relu((W · x_j + b) · s)`, `w` `[1, O, K]`, `x` `[B, K, P]`, `b` and `s` `[O]`.
    fn pointwise_actnorm_relu(
        w: FloatTensor<Self>,
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        plane: usize,
    ) -> FloatTensor<Self>;
}

impl HostPointwiseRelu for Flex {
    fn pointwise_actnorm_relu(
        w: FlexTensor,
        x: FlexTensor,
        bias: FlexTensor,
        scale: FlexTensor,
        _plane: usize,
    ) -> FlexTensor {
        forward_by_dtype(w, x, &bias, &scale, false).0
    }
}

/// [`forward`] for the tensors' float type.
fn forward_by_dtype(
    w: FlexTensor,
    x: FlexTensor,
    bias: &FlexTensor,
    scale: &FlexTensor,
    keep_products: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    match x.dtype() {
        DType::F32 => forward::<f32>(w, x, bias, scale, keep_products),
        DType::F64 => forward::<f64>(w, x, bias, scale, keep_products),
        other => panic!("pointwise_actnorm_relu runs on f32 or f64 tensors, not {other:?}"),
    }
}

/// Row `c` of the `[O, P]` matrix `values` (`p` values each) activated in place with
/// channel `c`'s `(b, s)`.
#[multiversion(targets = "simd")]
fn activate_rows_in_place<T: HostFloat>(values: &mut [T], p: usize, bias: &[T], scale: &[T]) {
    for (values, c) in values.chunks_exact_mut(p.max(1)).zip(0..bias.len()) {
        activate_in_place(values, (bias[c], scale[c]));
    }
}

/// Row `c` of the `[O, P]` matrix `products` activated with channel `c`'s `(b, s)` into `out`.
#[multiversion(targets = "simd")]
fn activate_rows_into<T: HostFloat>(
    products: &[T],
    out: &mut [MaybeUninit<T>],
    p: usize,
    bias: &[T],
    scale: &[T],
) {
    let rows = products
        .chunks_exact(p.max(1))
        .zip(out.chunks_exact_mut(p.max(1)));
    for ((products, out), c) in rows.zip(0..bias.len()) {
        let (b, s) = (bias[c], scale[c]);
        for (out, &v) in out.iter_mut().zip(products) {
            out.write(activation(b, s, v));
        }
    }
}

/// `z` and, with `keep_products` (for the backward pass), the products `a`: each image's
/// product and activation in turn, the images spread over the worker threads as
/// [`super::host_gemm`] spreads a batch of products.
fn forward<T: HostFloat>(
    w: FlexTensor,
    x: FlexTensor,
    bias: &FlexTensor,
    scale: &FlexTensor,
    keep_products: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    let (l, r) = (Operand::of(&w), Operand::of(&x));
    let (o, k, p, batch) = (l.rows, l.cols, r.cols, r.batch);
    assert_eq!(k, r.rows, "pointwise_actnorm_relu: inner dimensions differ");
    let out_len = batch * o * p;
    let (w, x) = (in_row_order(w, out_len), in_row_order(x, out_len));
    let (l, r) = (Operand::of(&w), Operand::of(&x));
    let (wv, xv) = (w.storage::<T>(), x.storage::<T>());
    let (bias, scale) = (host_values::<T>(bias), host_values::<T>(scale));
    let mut z: Vec<T> = Vec::with_capacity(out_len);
    let mut a: Vec<T> = Vec::with_capacity(if keep_products { out_len } else { 0 });
    let (z_at, a_at) = (SendPtr(z.as_mut_ptr()), SendPtr(a.as_mut_ptr()));
    let matrix = o * p;
    for_each_product(batch, o * k * p, |j, parallelism| {
        let target = match keep_products {
            true => a_at,
            false => z_at,
        };
        // SAFETY: matrix j of the target, `o · p` elements from `j · o · p`, written by this
        // product only (the products of the batch write disjoint matrices).
        let target = unsafe { target.add(j * matrix) };
        unsafe { product_into(target, (&l, wv), (&r, xv), j, false, parallelism) };
        // SAFETY: written just above; z's matrix j (when apart from it) is this image's alone.
        if keep_products {
            let products = unsafe { std::slice::from_raw_parts(target.get(), matrix) };
            let out = unsafe {
                std::slice::from_raw_parts_mut(
                    z_at.add(j * matrix).get().cast::<MaybeUninit<T>>(),
                    matrix,
                )
            };
            activate_rows_into(products, out, p, &bias, &scale);
        } else {
            let values = unsafe { std::slice::from_raw_parts_mut(target.get(), matrix) };
            activate_rows_in_place(values, p, &bias, &scale);
        }
    });
    // SAFETY: every matrix of each buffer was written above.
    unsafe {
        z.set_len(out_len);
        if keep_products {
            a.set_len(out_len);
        }
    }
    let shape = [batch, o, p];
    (
        flex_tensor(z, shape),
        keep_products.then(|| flex_tensor(a, shape)),
    )
}

/// The gradients of the module docs from the forward's inputs, its products `a` and `∂/∂z`:
/// `∂/∂W` if `want_w`, `∂/∂x` if `want_x`, and `∂/∂b`, `∂/∂s`.
#[multiversion(targets = "simd")]
fn backward<T: HostFloat>(
    w: &FlexTensor,
    x: &FlexTensor,
    (bias, scale): (&FlexTensor, &FlexTensor),
    products: &FlexTensor,
    grad: &FlexTensor,
    plane: usize,
    (want_w, want_x): (bool, bool),
) -> [Option<FlexTensor>; 4] {
    let (o, k) = (w.shape()[1], w.shape()[2]);
    let (batch, p) = (x.shape()[0], x.shape()[2]);
    let matrix = o * p;
    // The operands as the composition's backward pass takes them: Wᵀ and each x_jᵀ, copied into
    // row order when no larger than the product they enter.
    let w_t = in_row_order(Flex::float_swap_dims(w.clone(), 1, 2), batch * k * p);
    let x_t = in_row_order(Flex::float_swap_dims(x.clone(), 1, 2), o * k);
    let (lw, lx) = (Operand::of(&w_t), Operand::of(&x_t));
    let (w_values, x_values) = (w_t.storage::<T>(), x_t.storage::<T>());
    let (bias, scale) = (host_values::<T>(bias), host_values::<T>(scale));
    let (products, grad) = (host_values::<T>(products), host_values::<T>(grad));
    let da_layout = Operand::row_major(o, p);
    let mut da: Vec<T> = Vec::with_capacity(matrix);
    let mut dw: Vec<T> = Vec::with_capacity(if want_w { o * k } else { 0 });
    let mut dx: Vec<T> = Vec::with_capacity(if want_x { batch * k * p } else { 0 });
    let (dw_at, dx_at) = (SendPtr(dw.as_mut_ptr()), SendPtr(dx.as_mut_ptr()));
    let (mut db, mut ds) = (vec![0.0f64; o], vec![0.0f64; o]);
    let segment = plane.clamp(1, p.max(1));
    for j in 0..batch {
        da.clear();
        let rows = j * matrix..(j + 1) * matrix;
        let (a_j, g_j) = (&products[rows.clone()], &grad[rows]);
        for ((a_row, g_row), c) in a_j
            .chunks_exact(p.max(1))
            .zip(g_j.chunks_exact(p.max(1)))
            .zip(0..o)
        {
            for (a_plane, g_plane) in a_row.chunks(segment).zip(g_row.chunks(segment)) {
                let (sum_b, sum_s) = plane_backward(a_plane, g_plane, (bias[c], scale[c]), &mut da);
                db[c] += sum_b;
                ds[c] += sum_s;
            }
        }
        let da = (&da_layout, da.as_slice());
        if want_w {
            // SAFETY: the one `o · k` gradient matrix, written by the first image's product
            // and accumulated by the others'.
            unsafe {
                product_into(
                    dw_at,
                    da,
                    (&lx, x_values),
                    j,
                    j > 0,
                    gemm_parallelism(o * k * p),
                )
            };
        }
        if want_x {
            // SAFETY: matrix j of ∂/∂x, `k · p` elements from `j · k · p`, written only here.
            unsafe {
                product_into(
                    dx_at.add(j * k * p),
                    (&lw, w_values),
                    da,
                    0,
                    false,
                    gemm_parallelism(o * k * p),
                )
            };
        }
    }
    // SAFETY: each wanted buffer was written whole above (a batch of at least one image).
    unsafe {
        if want_w && batch > 0 {
            dw.set_len(o * k);
        }
        if want_x {
            dx.set_len(batch * k * p);
        }
    }
    [
        want_w.then(|| match batch {
            0 => flex_tensor(vec![T::ZERO; o * k], [1, o, k]),
            _ => flex_tensor(dw, [1, o, k]),
        }),
        want_x.then(|| flex_tensor(dx, [batch, k, p])),
        Some(per_channel(db, x.dtype())),
        Some(per_channel(ds, x.dtype())),
    ]
}

#[derive(Debug)]
struct PointwiseReluBackward;

impl Backward<Flex, 4> for PointwiseReluBackward {
    /// The checkpoints of `w`, `x`, `b` and `s`, the products `a` and the plane size.
    type State = ([NodeId; 4], FlexTensor, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (ids, products, plane) = ops.state;
        let [w, x, bias, scale]: [FlexTensor; 4] =
            ids.map(|id| checkpointer.retrieve_node_output(id));
        let grad = grads.consume::<Flex>(&ops.node);
        let wanted = (ops.parents[0].is_some(), ops.parents[1].is_some());
        let kernel = match x.dtype() {
            DType::F32 => backward::<f32>,
            DType::F64 => backward::<f64>,
            other => panic!("pointwise_actnorm_relu runs on f32 or f64 tensors, not {other:?}"),
        };
        let gradients = kernel(&w, &x, (&bias, &scale), &products, &grad, plane, wanted);
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let (Some(node), Some(gradient)) = (parent, gradient) {
                grads.register::<Flex>(node.id, gradient);
            }
        }
    }
}

impl<C: CheckpointStrategy> HostPointwiseRelu for Autodiff<Flex, C> {
    fn pointwise_actnorm_relu(
        w: FloatTensor<Self>,
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        plane: usize,
    ) -> FloatTensor<Self> {
        let prepared = PointwiseReluBackward
            .prepare::<C>([w.node(), x.node(), bias.node(), scale.node()])
            .compute_bound()
            .stateful();
        match prepared {
            OpsKind::Tracked(mut prep) => {
                let ids = [
                    prep.checkpoint(&w),
                    prep.checkpoint(&x),
                    prep.checkpoint(&bias),
                    prep.checkpoint(&scale),
                ];
                let (z, products) = forward_by_dtype(
                    w.into_primitive(),
                    x.into_primitive(),
                    &bias.into_primitive(),
                    &scale.into_primitive(),
                    true,
                );
                let products = products.expect("kept for the backward pass");
                prep.finish((ids, products, plane), z)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::pointwise_actnorm_relu(
                w.into_primitive(),
                x.into_primitive(),
                bias.into_primitive(),
                scale.into_primitive(),
                plane,
            )),
        }
    }
}

//! The convolutions' matrix products on the CPU, written straight into their outputs.
//!
//! `Y_b = L_b · R_b` for a batch of matrices, `L` `[B_L, M, K]` and `R` `[B_R, K, N]` with each
//! batch size either `B` or 1 (broadcast). Its gradients are products of the same kind,
//!
//! ```text
//! ∂/∂L_b = G_b · R_bᵀ        ∂/∂R_b = L_bᵀ · G_b        (G = ∂/∂Y)
//! ```
//!
//! summed over the batch for an operand that was broadcast. On the CPU (burn's `flex` backend)
//! both run here, as calls of the gemm crate that read transposed operands through their strides
//! and write into a fresh buffer: burn-flex 0.22.1's own product allocates every output through
//! `FlexTensor::empty`, which zero-fills a byte vector and copies it once more to align it (a
//! memset and a memcpy of every output, about a tenth of a training step), and sums a broadcast
//! operand's gradient in a pass over `B` per-sample products. Here a broadcast operand's gradient
//! is accumulated by the gemm calls themselves into one `[M, N]` buffer.
//!
//! The operation is a burn backend extension (`#[backend_extension]`): its forward and backward
//! passes are implemented for `Flex` and registered with burn's autodiff for `Autodiff<Flex>`.
//! Other devices (the GPU backends) never reach it: [`matmul`] hands them burn's own product.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{binary, Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{DType, Tensor};

use super::host_float::{flex_tensor, HostFloat};
use crate::device::runs_on_host;

/// `lhs · rhs` for `[B_L, M, K]` and `[B_R, K, N]` with `B_L`, `B_R` each 1 or `B`: burn's
/// `matmul` on every device, computed by the gemm crate straight into its output on the CPU.
pub fn matmul(lhs: Tensor<3>, rhs: Tensor<3>) -> Tensor<3> {
    if !runs_on_host(&lhs.device()) {
        return lhs.matmul(rhs);
    }
    Tensor::from_dispatch(<Dispatch as HostGemm>::gemm_product(
        lhs.into_dispatch(),
        rhs.into_dispatch(),
        false,
    ))
}

/// The batched product as a backend operation (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait HostGemm: Backend {
    /// `Y_b = L_b · R_b`, `[B, M, N]`; with `sum_batch`, `Σ_b L_b · R_b`, `[1, M, N]`.
    fn gemm_product(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        sum_batch: bool,
    ) -> FloatTensor<Self>;
}

impl HostGemm for Flex {
    fn gemm_product(lhs: FlexTensor, rhs: FlexTensor, sum_batch: bool) -> FlexTensor {
        let (lhs_shape, rhs_shape) = (lhs.shape(), rhs.shape());
        let out_batch = match sum_batch {
            true => 1,
            false => lhs_shape[0].max(rhs_shape[0]),
        };
        let out_len = out_batch * lhs_shape[1] * rhs_shape[2];
        let (lhs, rhs) = (in_row_order(lhs, out_len), in_row_order(rhs, out_len));
        match lhs.dtype() {
            DType::F32 => product::<f32>(&lhs, &rhs, sum_batch),
            DType::F64 => product::<f64>(&lhs, &rhs, sum_batch),
            _ => {
                let y = Flex::float_matmul(lhs, rhs);
                match sum_batch {
                    true => Flex::float_sum_dim(y, 0),
                    false => y,
                }
            }
        }
    }
}

/// `operand` copied into row order if it is stored column by column (a transposed view, as the
/// gradients take their operands) and holds at most `limit` elements, the product's output size,
/// so that the copy costs no more than writing the output once. gemm's kernel reads both operands
/// in row order fastest: on this project's 2-core Xeon, a single-threaded product of a 512 x 512
/// weight's transpose by 512 x 256 ran at 164 GFLOP/s against 190 with the weight in row order,
/// two such products side by side (as two batch shards run them) at 145 against 188-189 per
/// thread (`examples/gemm_side_by_side.rs`).
pub(super) fn in_row_order(operand: FlexTensor, limit: usize) -> FlexTensor {
    let layout = operand.layout();
    let column_major = layout.strides()[1] == 1 && layout.shape()[1] > 1;
    match column_major && !operand.is_contiguous() && layout.num_elements() <= limit {
        true => operand.to_contiguous(),
        false => operand,
    }
}

/// The batch size, rows and columns of a `[B, R, C]` operand with its strides in elements
/// (batch stride 0 for a broadcast batch of one) and the offset of its first element.
#[derive(Debug, Clone, Copy)]
pub(super) struct Operand {
    pub(super) batch: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
    batch_stride: isize,
    row_stride: isize,
    col_stride: isize,
    offset: usize,
}

impl Operand {
    /// The layout of `tensor`, `[B, R, C]`.
    pub(super) fn of(tensor: &FlexTensor) -> Self {
        let layout = tensor.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        assert_eq!(
            shape.num_dims(),
            3,
            "gemm_product takes [batch, rows, cols] operands"
        );
        Operand {
            batch: shape[0],
            rows: shape[1],
            cols: shape[2],
            batch_stride: if shape[0] == 1 { 0 } else { strides[0] },
            row_stride: strides[1],
            col_stride: strides[2],
            offset: layout.start_offset(),
        }
    }

    /// One dense row-major `rows × cols` matrix (a batch of one) from the start of its storage.
    pub(super) fn row_major(rows: usize, cols: usize) -> Self {
        Operand {
            batch: 1,
            rows,
            cols,
            batch_stride: 0,
            row_stride: cols as isize,
            col_stride: 1,
            offset: 0,
        }
    }
}

/// burn-flex's thresholds (`ops/matmul.rs`): a product of at least 192³ multiply-adds is split
/// over the worker threads by gemm itself; a batch of smaller ones with at least 128³ in all runs
/// one product per thread.
const PARALLEL_PRODUCT: usize = 192 * 192 * 192;
const PARALLEL_BATCH: usize = 128 * 128 * 128;

/// A pointer that may cross to rayon's worker threads: each of them writes its own output matrix.
#[derive(Clone, Copy)]
pub(super) struct SendPtr<T>(pub(super) *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `SendPtr`, not its field).
    pub(super) fn get(self) -> *mut T {
        self.0
    }

    /// The pointer `count` elements further on.
    ///
    /// # Safety
    /// As `pointer::add`: the result must stay within the same allocation.
    pub(super) unsafe fn add(self, count: usize) -> Self {
        SendPtr(unsafe { self.0.add(count) })
    }
}

/// `dst (+)= L_b · R_b`, one matrix of each operand's batch (the broadcast one's only matrix),
/// with gemm's `dst = alpha·dst + beta·L·R`, written row-major into `m·n` elements at `dst`.
///
/// # Safety
/// `dst` points to `m·n` elements that nothing else touches during the call, initialised when
/// `accumulate` (otherwise only written); `lhs` and `rhs` are the storages `l` and `r` describe.
pub(super) unsafe fn product_into<T: HostFloat>(
    dst: SendPtr<T>,
    (l, lhs): (&Operand, &[T]),
    (r, rhs): (&Operand, &[T]),
    b: usize,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    let (m, k, n) = (l.rows, l.cols, r.cols);
    // SAFETY: the offsets and strides are those of the operands' own layouts (within their
    // storage), and dst holds m·n elements laid out row-major (the caller's contract).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.get(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr()
                .add(l.offset)
                .offset(b as isize * l.batch_stride),
            l.col_stride,
            l.row_stride,
            rhs.as_ptr()
                .add(r.offset)
                .offset(b as isize * r.batch_stride),
            r.col_stride,
            r.row_stride,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// How one product of `multiply_adds` is run: split over the worker threads by gemm itself from
/// burn-flex's threshold on, else on the calling thread. Inside a batch shard, whose neighbours
/// keep the other threads busy, always on the calling thread: gemm would still cut the product
/// into one part per worker thread, each packing its own copy of the left operand's panels, and
/// run the parts one after the other. The split changes which thread computes an element, not
/// the order of its sums, so the results are the same either way.
pub(super) fn gemm_parallelism(multiply_adds: usize) -> gemm::Parallelism {
    match multiply_adds >= PARALLEL_PRODUCT && !crate::parallel::in_shard() {
        true => gemm::Parallelism::Rayon(0),
        false => gemm::Parallelism::None,
    }
}

/// Runs `one(b, parallelism)` for each of the `batch` independent products of `multiply_adds`
/// each (burn-flex's rule): one product per worker thread when the batch is large enough, in
/// turn (each split by gemm when large) otherwise.
pub(super) fn for_each_product(
    batch: usize,
    multiply_adds: usize,
    one: impl Fn(usize, gemm::Parallelism) + Sync,
) {
    if batch > 1
        && batch * multiply_adds >= PARALLEL_BATCH
        && (batch >= 4 || multiply_adds < PARALLEL_PRODUCT)
    {
        use rayon::prelude::*;
        (0..batch)
            .into_par_iter()
            .for_each(|b| one(b, gemm::Parallelism::None));
    } else {
        for b in 0..batch {
            one(b, gemm_parallelism(multiply_adds));
        }
    }
}

/// [`HostGemm::gemm_product`] on the host, for f32 or f64 operands.
fn product<T>(lhs: &FlexTensor, rhs: &FlexTensor, sum_batch: bool) -> FlexTensor
where
    T: HostFloat,
{
    let (l, r) = (Operand::of(lhs), Operand::of(rhs));
    assert_eq!(l.cols, r.rows, "gemm_product: inner dimensions differ");
    let batch = l.batch.max(r.batch);
    assert!(
        (l.batch == 1 || l.batch == batch) && (r.batch == 1 || r.batch == batch),
        "gemm_product: batch sizes {} and {} do not broadcast",
        l.batch,
        r.batch
    );
    let (m, k, n) = (l.rows, l.cols, r.cols);
    let out_batch = if sum_batch { 1 } else { batch };
    let shape = [out_batch, m, n];
    let len = out_batch * m * n;
    if k == 0 || len == 0 {
        return flex_tensor(vec![T::ZERO; len], shape);
    }
    let (lhs, rhs) = ((&l, lhs.storage::<T>()), (&r, rhs.storage::<T>()));
    let mut out: Vec<T> = Vec::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    if sum_batch {
        for b in 0..batch {
            // SAFETY: the one output matrix, written by the first product and then accumulated.
            unsafe { product_into(dst, lhs, rhs, b, b > 0, gemm_parallelism(m * n * k)) };
        }
    } else {
        for_each_product(batch, m * n * k, |b, parallelism| {
            // SAFETY: matrix b of the output, m·n elements from b·m·n, written by this call only.
            unsafe { product_into(dst.add(b * m * n), lhs, rhs, b, false, parallelism) };
        });
    }
    // SAFETY: every one of the `len` elements was written by a product above.
    unsafe { out.set_len(len) };
    flex_tensor(out, shape)
}

/// Whether an operand of batch `own` was broadcast over a product of batch `batch`.
fn broadcast(own: usize, batch: usize) -> bool {
    own == 1 && batch > 1
}

#[derive(Debug)]
struct GemmBackward;

impl<B: Backend + HostGemm> Backward<B, 2> for GemmBackward {
    /// The operands' checkpoints (each kept only if the other needs its gradient) and whether
    /// each was broadcast over the batch.
    type State = (Option<NodeId>, Option<NodeId>, bool, bool);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (lhs, rhs, lhs_broadcast, rhs_broadcast) = ops.state;
        let lhs: Option<FloatTensor<B>> = lhs.map(|id| checkpointer.retrieve_node_output(id));
        let rhs: Option<FloatTensor<B>> = rhs.map(|id| checkpointer.retrieve_node_output(id));
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| {
                let rhs_t = B::float_swap_dims(rhs.expect("kept for the lhs gradient"), 1, 2);
                B::gemm_product(grad, rhs_t, lhs_broadcast)
            },
            |grad| {
                let lhs_t = B::float_swap_dims(lhs.expect("kept for the rhs gradient"), 1, 2);
                B::gemm_product(lhs_t, grad, rhs_broadcast)
            },
        );
    }
}

impl<B: Backend + HostGemm, C: CheckpointStrategy> HostGemm for Autodiff<B, C> {
    fn gemm_product(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        sum_batch: bool,
    ) -> FloatTensor<Self> {
        let (lhs_batch, rhs_batch) = (lhs.primitive().shape()[0], rhs.primitive().shape()[0]);
        let batch = lhs_batch.max(rhs_batch);
        let (lhs_tracked, rhs_tracked) = (lhs.is_tracked(), rhs.is_tracked());
        let forward = |lhs: FloatTensor<Self>, rhs: FloatTensor<Self>| {
            B::gemm_product(lhs.into_primitive(), rhs.into_primitive(), sum_batch)
        };
        match GemmBackward
            .prepare::<C>([lhs.node(), rhs.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let lhs_state = rhs_tracked.then(|| prep.checkpoint(&lhs));
                let rhs_state = lhs_tracked.then(|| prep.checkpoint(&rhs));
                let state = (
                    lhs_state,
                    rhs_state,
                    broadcast(lhs_batch, batch),
                    broadcast(rhs_batch, batch),
                );
                prep.finish(state, forward(lhs, rhs))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(lhs, rhs)),
        }
    }
}

//! The `k²` shifted copies behind the stride-1 "same" convolutions of [`super::conv_matmul`]:
//! gathered into rows (im2col) and summed back (the shifted-outputs form).
//!
//! With `r = k / 2` and tap `s = dy·k + dx` at offset `(dy − r, dx − r)`, zero outside the image:
//!
//! ```text
//! gather:  G(x)[n, (c, s), i, j] = x[n, c, i + dy − r, j + dx − r]        [N, C·k², H, W]
//! sum:     S(z)[n, c, i, j]      = Σ_s z[n, (c, s), i + dy − r, j + dx − r]   [N, C, H, W]
//! ```
//!
//! where row `(c, s)` is `c·k² + s` (channel-major, the layout of a `[O, C, k, k]` weight: im2col)
//! or `s·C + c` (tap-major: the rows of a `[k, k, O, C]` weight, the shifted-outputs form). Each is
//! the other's adjoint with the offsets negated, so each one's backward pass is the other
//! (`o_s` the offset of tap `s`, `p` and `q` pixels):
//! `Gᵀ(g)[c, q] = Σ_s g[(c, s), q − o_s]`, `Sᵀ(g)[(c, s), q] = g[c, q − o_s]`.
//!
//! On the CPU each is one loop over the taps that copies or adds the shifted rows straight into
//! its output (a backend extension for `Flex` and `Autodiff<Flex>`, like [`super::host_gemm`]);
//! as burn operations they are a pad, `k²` slices and a stack, or a pad, `k²` slices and
//! `k² − 1` additions, each its own pass with its own buffer, and so they remain on other
//! devices. The sum adds the taps in order `s = 0, 1, …`, as the composition does: its values
//! are the composition's bit for bit (but for the sign of a zero).
//!
//! The shifted-outputs form's weight, stacked tap-major ([`stacked_weight`]), is a transpose of
//! the weight's values, computed the same way on the CPU; a transpose is its own adjoint.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::ops::PadMode;
use burn::tensor::{DType, Tensor};
use multiversion::multiversion;

use super::host_float::{dims4, flex_tensor, host_values, HostFloat, Planes};
use crate::device::runs_on_host;

/// `G(x)` with channel-major rows (im2col), `[N, C·k², H, W]` from `x` `[N, C, H, W]` (odd `k`).
pub fn gather(x: Tensor<4>, k: usize) -> Tensor<4> {
    if !runs_on_host(&x.device()) {
        let [n, c, h, w] = x.dims();
        let slices = shifted_slices(x, k, |_| 0..c);
        return Tensor::stack::<5>(slices, 2).reshape([n, c * k * k, h, w]);
    }
    Tensor::from_dispatch(<Dispatch as HostTaps>::gather_taps(
        x.into_dispatch(),
        k,
        true,
        false,
    ))
}

/// `S(z)` of tap-major rows, `[N, C, H, W]` from `z` `[N, k²·C, H, W]` (odd `k`).
pub fn sum(z: Tensor<4>, k: usize) -> Tensor<4> {
    if !runs_on_host(&z.device()) {
        let c = z.dims()[1] / (k * k);
        return shifted_slices(z, k, |s| s * c..(s + 1) * c)
            .into_iter()
            .reduce(|sum, part| sum + part)
            .expect("a kernel has at least one tap");
    }
    Tensor::from_dispatch(<Dispatch as HostTaps>::sum_taps(
        z.into_dispatch(),
        k,
        false,
        false,
    ))
}

/// The taps of a `[O, C, k, k]` weight stacked tap-major, `[k²·O, C]`: row `s·O + o` is
/// `W[o, :, s]`, the weight whose products are [`sum`]'s tap-major rows. It is the transpose of
/// the weight viewed as `[O·C, k²]`, computed on the CPU as one pass over the weight instead of
/// burn's permute and tiled copy (leaving that copy out altogether, as a bound, made config 3 of
/// BENCHMARKS.md 3-6 % faster).
pub fn stacked_weight(weight: Tensor<4>) -> Tensor<2> {
    let [o, c, k, _] = weight.dims();
    if !runs_on_host(&weight.device()) {
        return weight.permute([2, 3, 0, 1]).reshape([k * k * o, c]);
    }
    let taps_by_row = weight.reshape([o * c, k * k]).into_dispatch();
    Tensor::<2>::from_dispatch(<Dispatch as HostTaps>::transpose(taps_by_row))
        .reshape([k * k * o, c])
}

/// As burn operations: for each tap `s`, its shifted copy of the rows `rows(s)` of `x`, a slice
/// of the zero-padded `x`.
fn shifted_slices(
    x: Tensor<4>,
    k: usize,
    rows: impl Fn(usize) -> std::ops::Range<usize>,
) -> Vec<Tensor<4>> {
    let [n, _, h, w] = x.dims();
    let r = k / 2;
    let padded = x.pad([(r, r), (r, r)], PadMode::Constant(0.0));
    (0..k * k)
        .map(|s| {
            let (dy, dx) = (s / k, s % k);
            padded
                .clone()
                .slice([0..n, rows(s), dy..dy + h, dx..dx + w])
        })
        .collect()
}

/// The taps as backend operations: `flip` negates every offset (the adjoints' form).
#[backend_extension(Flex, Autodiff)]
pub trait HostTaps: Backend {
    /// [`gather`], channel-major or tap-major rows, offsets negated with `flip`.
    fn gather_taps(
        x: FloatTensor<Self>,
        k: usize,
        channel_major: bool,
        flip: bool,
    ) -> FloatTensor<Self>;

    /// The transpose `[T, R]` of a matrix `[R, T]` (its own adjoint): [`stacked_weight`].
    fn transpose(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// [`sum`], channel-major or tap-major rows, offsets negated with `flip`.
    fn sum_taps(
        z: FloatTensor<Self>,
        k: usize,
        channel_major: bool,
        flip: bool,
    ) -> FloatTensor<Self>;
}

/// The tap geometry of one call.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    k: usize,
    channel_major: bool,
    flip: bool,
}

impl Geometry {
    /// The geometry of `k × k` taps.
    fn new(k: usize, channel_major: bool, flip: bool) -> Self {
        Geometry {
            k,
            channel_major,
            flip,
        }
    }

    /// The row of channel `c` and tap `s` among `channels · k²` rows.
    fn row(self, c: usize, s: usize, channels: usize) -> usize {
        match self.channel_major {
            true => c * self.k * self.k + s,
            false => s * channels + c,
        }
    }

    /// Tap `s`'s offset `(dy − r, dx − r)`, negated with `flip`.
    fn offset(self, s: usize) -> (isize, isize) {
        let r = (self.k / 2) as isize;
        let (dy, dx) = ((s / self.k) as isize - r, (s % self.k) as isize - r);
        match self.flip {
            true => (-dy, -dx),
            false => (dy, dx),
        }
    }
}

/// For an `h × w` plane shifted by `(oy, ox)` (output `(i, j)` reads input `(i + oy, j + ox)`):
/// each output row `i` whose input row is inside, with the output columns `j0..j1` whose input
/// columns are inside and the input's first column `j0 + ox`.
fn shifted_rows(
    h: usize,
    w: usize,
    (oy, ox): (isize, isize),
) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> {
    let j0 = (-ox).clamp(0, w as isize) as usize;
    let j1 = (w as isize - ox).clamp(0, w as isize) as usize;
    (0..h).filter_map(move |i| {
        let source = i as isize + oy;
        (source >= 0 && source < h as isize && j0 < j1)
            .then(|| (i, source as usize, j0, j1, (j0 as isize + ox) as usize))
    })
}

fn gather_host<T: HostFloat>(x: &FlexTensor, taps: Geometry) -> FlexTensor {
    let [n, c, h, w] = dims4(x);
    let x = Planes::<T>::of(x);
    let k2 = taps.k * taps.k;
    let plane = h * w;
    let mut out = vec![T::ZERO; n * c * k2 * plane];
    for (image, output) in out.chunks_exact_mut(c * k2 * plane).enumerate() {
        for channel in 0..c {
            let source = x.plane(image, channel);
            for s in 0..k2 {
                let row = taps.row(channel, s, c);
                let target = &mut output[row * plane..(row + 1) * plane];
                for (i, si, j0, j1, sj) in shifted_rows(h, w, taps.offset(s)) {
                    target[i * w + j0..i * w + j1]
                        .copy_from_slice(&source[si * w + sj..si * w + sj + (j1 - j0)]);
                }
            }
        }
    }
    flex_tensor(out, [n, c * k2, h, w])
}

#[multiversion(targets = "simd")]
fn sum_host<T: HostFloat>(z: &FlexTensor, taps: Geometry) -> FlexTensor {
    let [n, rows, h, w] = dims4(z);
    let z = Planes::<T>::of(z);
    let k2 = taps.k * taps.k;
    let c = rows / k2;
    let plane = h * w;
    let mut out = vec![T::ZERO; n * c * plane];
    for (image, output) in out.chunks_exact_mut(c * plane).enumerate() {
        for channel in 0..c {
            let target = &mut output[channel * plane..(channel + 1) * plane];
            for s in 0..k2 {
                let source = z.plane(image, taps.row(channel, s, c));
                for (i, si, j0, j1, sj) in shifted_rows(h, w, taps.offset(s)) {
                    let from = &source[si * w + sj..si * w + sj + (j1 - j0)];
                    for (t, &v) in target[i * w + j0..i * w + j1].iter_mut().zip(from) {
                        *t = *t + v;
                    }
                }
            }
        }
    }
    flex_tensor(out, [n, c, h, w])
}

/// [`HostTaps::transpose`] on the host: one pass over `x` in blocks of rows, each block's column
/// `j` written as one run of the output's row `j`.
fn transpose_host<T: HostFloat>(x: &FlexTensor) -> FlexTensor {
    let shape = x.shape();
    let (rows, cols) = (shape[0], shape[1]);
    let values = host_values::<T>(x);
    let mut out = vec![T::ZERO; rows * cols];
    // Blocks of BLOCK input rows, so that each output row gets a whole run of BLOCK values at a
    // time (a cache line of f32) from an input block that sits in L1.
    const BLOCK: usize = 16;
    for (b, block) in values.chunks(BLOCK * cols.max(1)).enumerate() {
        let first = b * BLOCK;
        let count = block.len() / cols.max(1);
        for (j, target) in out.chunks_exact_mut(rows.max(1)).enumerate() {
            for (t, source) in target[first..first + count]
                .iter_mut()
                .zip(block[j..].iter().step_by(cols))
            {
                *t = *source;
            }
        }
    }
    flex_tensor(out, [cols, rows])
}

/// Runs the f32 or f64 version of a host kernel.
fn by_dtype(
    x: &FlexTensor,
    taps: Geometry,
    f32_kernel: fn(&FlexTensor, Geometry) -> FlexTensor,
    f64_kernel: fn(&FlexTensor, Geometry) -> FlexTensor,
) -> FlexTensor {
    match x.dtype() {
        DType::F32 => f32_kernel(x, taps),
        DType::F64 => f64_kernel(x, taps),
        other => panic!("the convolution taps run on f32 or f64 tensors, not {other:?}"),
    }
}

impl HostTaps for Flex {
    fn gather_taps(x: FlexTensor, k: usize, channel_major: bool, flip: bool) -> FlexTensor {
        let taps = Geometry::new(k, channel_major, flip);
        by_dtype(&x, taps, gather_host::<f32>, gather_host::<f64>)
    }

    fn sum_taps(z: FlexTensor, k: usize, channel_major: bool, flip: bool) -> FlexTensor {
        let taps = Geometry::new(k, channel_major, flip);
        by_dtype(&z, taps, sum_host::<f32>, sum_host::<f64>)
    }

    fn transpose(x: FlexTensor) -> FlexTensor {
        match x.dtype() {
            DType::F32 => transpose_host::<f32>(&x),
            DType::F64 => transpose_host::<f64>(&x),
            other => panic!("the weight's taps are stacked from f32 or f64 tensors, not {other:?}"),
        }
    }
}

/// The backward pass of a gather (`adjoint_of_sum` false) or a sum (true): the other map with
/// the offsets negated.
#[derive(Debug)]
struct TapsBackward {
    adjoint_of_sum: bool,
}

impl Backward<Flex, 1> for TapsBackward {
    type State = Geometry;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let taps = ops.state;
        let flipped = Geometry {
            flip: !taps.flip,
            ..taps
        };
        let adjoint_of_sum = self.adjoint_of_sum;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| match adjoint_of_sum {
            true => Flex::gather_taps(grad, flipped.k, flipped.channel_major, flipped.flip),
            false => Flex::sum_taps(grad, flipped.k, flipped.channel_major, flipped.flip),
        });
    }
}

/// The backward pass of a transpose: the transpose of the gradient.
#[derive(Debug)]
struct TransposeBackward;

impl Backward<Flex, 1> for TransposeBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<Flex, _>(ops.parents, ops.node, grads, Flex::transpose);
    }
}

/// One tracked taps operation on `Autodiff<Flex>`.
fn tracked<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    taps: Geometry,
    is_sum: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    let forward = |x| match is_sum {
        true => Flex::sum_taps(x, taps.k, taps.channel_major, taps.flip),
        false => Flex::gather_taps(x, taps.k, taps.channel_major, taps.flip),
    };
    match (TapsBackward {
        adjoint_of_sum: is_sum,
    })
    .prepare::<C>([x.node()])
    .compute_bound()
    .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(taps, forward(x.into_primitive())),
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive())),
    }
}

impl<C: CheckpointStrategy> HostTaps for Autodiff<Flex, C> {
    fn gather_taps(
        x: FloatTensor<Self>,
        k: usize,
        channel_major: bool,
        flip: bool,
    ) -> FloatTensor<Self> {
        tracked::<C>(x, Geometry::new(k, channel_major, flip), false)
    }

    fn sum_taps(
        z: FloatTensor<Self>,
        k: usize,
        channel_major: bool,
        flip: bool,
    ) -> FloatTensor<Self> {
        tracked::<C>(z, Geometry::new(k, channel_major, flip), true)
    }

    fn transpose(x: FloatTensor<Self>) -> FloatTensor<Self> {
        TransposeBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateless(Flex::transpose(x.into_primitive()))
    }
}

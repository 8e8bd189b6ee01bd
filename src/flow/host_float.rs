//! What the CPU's own kernels ([`super::host_gemm`], [`super::actnorm_relu`], [`super::taps`])
//! share: the float types they run on and the way in and out of burn-flex's tensors.
//!
//! The binary targets baseline x86-64, so the kernels' loops would compile to SSE only. Their
//! functions carry `#[multiversion(targets = "simd")]`: compiled once per SIMD level (AVX-512,
//! AVX2, ...), closures and `#[inline(always)]` helpers included, one chosen at run time as gemm
//! chooses its own. The results are the baseline build's bit for bit: the same IEEE operations in
//! the same order (Rust never fuses a multiply and an add on its own).

use std::borrow::Cow;
use std::ops::{Add, Mul};

use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{Element, TensorData};

/// f32 or f64: the element types of the host kernels, with the arithmetic they use.
pub trait HostFloat:
    Element + bytemuck::Pod + PartialOrd + Add<Output = Self> + Mul<Output = Self> + Into<f64>
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Whether the value is NaN.
    fn is_nan(self) -> bool;
}

impl HostFloat for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl HostFloat for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// `out` extended by `f` of each of `values`, written straight into its spare capacity: a loop
/// inlined into its caller, so that it vectorises with the caller's SIMD level, where
/// `Vec::extend`'s fold may stay out of line and compiled for baseline x86-64.
#[inline(always)]
pub fn extend_mapped<T: Copy>(out: &mut Vec<T>, values: &[T], f: impl Fn(T) -> T) {
    out.reserve(values.len());
    let spare = &mut out.spare_capacity_mut()[..values.len()];
    for (slot, &v) in spare.iter_mut().zip(values) {
        slot.write(f(v));
    }
    // SAFETY: the first `values.len()` spare elements were written just above.
    unsafe { out.set_len(out.len() + values.len()) };
}

/// The tensor's values in row-major order: borrowed when it is contiguous, copied otherwise.
pub fn host_values<T: HostFloat>(tensor: &FlexTensor) -> Cow<'_, [T]> {
    match tensor.as_slice::<T>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(tensor.to_contiguous().storage::<T>().to_vec()),
    }
}

/// A contiguous tensor of `shape` that takes ownership of `values` (no copy).
pub fn flex_tensor<T: HostFloat, const D: usize>(values: Vec<T>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Per-channel sums accumulated in f64 as a `[C]` tensor of `dtype` (the gradients of per-channel
/// parameters).
pub fn per_channel(sums: Vec<f64>, dtype: burn::tensor::DType) -> FlexTensor {
    let channels = sums.len();
    FlexTensor::from_data(TensorData::new(sums, [channels]).convert_dtype(dtype))
}

/// The `[N, C, H, W]` of a 4-d tensor.
pub fn dims4(x: &FlexTensor) -> [usize; 4] {
    let shape = x.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A `[N, C, H, W]` tensor read one channel plane (`H · W` values) at a time, in place wherever
/// each plane is contiguous in its storage: in a contiguous tensor, and in one whose batch and
/// channel axes are swapped (`[C, N, H, W]` in memory, as a batch-folded 1×1 product leaves its
/// output). Other layouts are copied into row-major order first.
pub struct Planes<'a, T: HostFloat> {
    values: Cow<'a, [T]>,
    /// The offset of plane `(0, 0)` and the distances between planes along `N` and along `C`.
    start: usize,
    image_stride: usize,
    channel_stride: usize,
    plane: usize,
    /// Whether the channels' planes lie further apart than the images' (`[C, N, H, W]`).
    channel_major: bool,
}

impl<'a, T: HostFloat> Planes<'a, T> {
    /// The planes of `tensor`.
    pub fn of(tensor: &'a FlexTensor) -> Self {
        let [n, c, h, w] = dims4(tensor);
        let layout = tensor.layout();
        let strides = layout.strides();
        let in_place = (w <= 1 || strides[3] == 1)
            && (h <= 1 || strides[2] == w as isize)
            && strides[0] >= 0
            && strides[1] >= 0;
        match in_place {
            true => Planes {
                values: Cow::Borrowed(tensor.storage::<T>()),
                start: layout.start_offset(),
                image_stride: strides[0] as usize,
                channel_stride: strides[1] as usize,
                plane: h * w,
                channel_major: n > 1 && c > 1 && strides[1] > strides[0],
            },
            false => Planes {
                values: host_values(tensor),
                start: 0,
                image_stride: c * h * w,
                channel_stride: h * w,
                plane: h * w,
                channel_major: false,
            },
        }
    }

    /// The plane of image `n`, channel `c`.
    pub fn plane(&self, n: usize, c: usize) -> &[T] {
        if self.plane == 0 {
            return &[];
        }
        let at = self.start + n * self.image_stride + c * self.channel_stride;
        &self.values[at..at + self.plane]
    }

    /// Whether the planes lie channel by channel in memory (`[C, N, H, W]`).
    pub fn channel_major(&self) -> bool {
        self.channel_major
    }
}

/// The `(image, channel)` pairs of the planes of `[N, C, H, W]` `dims` in memory order: image by
/// image, or with `channel_major` channel by channel.
pub fn plane_order(dims: [usize; 4], channel_major: bool) -> impl Iterator<Item = (usize, usize)> {
    let [n, c, _, _] = dims;
    (0..n * c).map(move |i| match channel_major {
        true => (i % n, i / n),
        false => (i / c, i % c),
    })
}

/// `Some(channel_major)` when the storage of `tensor` `[N, C, H, W]` is exactly its planes in
/// the memory order of [`plane_order`] (from its first element, nothing more), so that it can be
/// rewritten in place plane by plane; `None` otherwise.
pub fn dense_plane_order<T: HostFloat>(tensor: &FlexTensor) -> Option<bool> {
    let [n, c, h, w] = dims4(tensor);
    let layout = tensor.layout();
    let dense = layout.start_offset() == 0 && tensor.storage::<T>().len() == n * c * h * w;
    let swapped = [(h * w) as isize, (n * h * w) as isize, w as isize, 1];
    match (dense, tensor.is_contiguous()) {
        (false, _) => None,
        (true, true) => Some(false),
        (true, false) => (layout.strides() == swapped).then_some(true),
    }
}

/// The `[N, C, H, W]` tensor of `dims` whose planes are `values` in the memory order of
/// [`plane_order`]: contiguous, or with `channel_major` a `[C, N, H, W]` buffer with its first two
/// axes swapped (a view, no copy).
pub fn planes_tensor<T: HostFloat>(
    values: Vec<T>,
    dims: [usize; 4],
    channel_major: bool,
) -> FlexTensor {
    let [n, c, h, w] = dims;
    match channel_major {
        true => Flex::float_swap_dims(flex_tensor(values, [c, n, h, w]), 0, 1),
        false => flex_tensor(values, dims),
    }
}

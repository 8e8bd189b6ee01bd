//! What the CPU's own kernels ([`super::host_gemm`], [`super::actnorm_relu`]) share: the float
//! types they run on and the way in and out of burn-flex's tensors.

use std::borrow::Cow;
use std::ops::{Add, Mul};

use burn::backend::flex::FlexTensor;
use burn::backend::TensorMetadata;
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
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl HostFloat for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
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

/// The `[N, C, H, W]` of a 4-d tensor.
pub fn dims4(x: &FlexTensor) -> [usize; 4] {
    let shape = x.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

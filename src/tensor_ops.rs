//! Small tensor helpers shared by the layers: per-sample sums, channel halves and interleaves, and
//! moving small matrices between the host (f64) and the device.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};

/// Sum of every element of each sample: `[N, C, H, W] -> [N]`.
pub fn sum_per_sample(x: Tensor<4>) -> Tensor<1> {
    let n = x.dims()[0];
    x.reshape([n as i32, -1]).sum_dim(1).reshape([n])
}

/// How many samples of `x` (`[N, C, H, W]`) hold a NaN or an infinity. Decoding latents far in
/// the tails (high temperature, an undertrained or diverged model) can overflow; callers report
/// it rather than fail, since the other samples are still good.
pub fn non_finite_samples(x: &Tensor<4>) -> usize {
    let n = x.dims()[0];
    let finite = x.clone().is_finite().reshape([n as i32, -1]).all_dim(1);
    finite.bool_not().int().sum().into_scalar::<i64>() as usize
}

/// Splits `[N, C, H, W]` into its first and second channel halves (the paper's split).
pub fn channel_halves(x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let c = x.dims()[1];
    let mut halves = x.split(c / 2, 1).into_iter();
    let first = halves
        .next()
        .expect("a tensor with C >= 2 splits in two halves");
    let second = halves
        .next()
        .expect("a tensor with C >= 2 splits in two halves");
    (first, second)
}

/// Splits `[N, 2C, H, W]` into even and odd channels, `(x[:, 0::2], x[:, 1::2])`: how openai/glow
/// reads a shift and a scale (or a mean and a log-std) out of one convolution's output.
pub fn channel_interleaved(x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let [n, c, h, w] = x.dims();
    let pairs = x.reshape([n, c / 2, 2, h, w]);
    let even = pairs.clone().narrow(2, 0, 1).reshape([n, c / 2, h, w]);
    let odd = pairs.narrow(2, 1, 1).reshape([n, c / 2, h, w]);
    (even, odd)
}

/// Reads a float tensor back to the host as f64, whatever its dtype.
pub fn to_f64_vec<const D: usize>(x: Tensor<D>) -> Vec<f64> {
    x.try_into_vec_as::<f64>()
        .expect("a float tensor reads back as f64")
}

/// Builds a float tensor of the device's default dtype from host f64 values.
pub fn from_f64<const D: usize>(values: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Gives a parameter a new value, keeping its identity (so optimiser state still matches) and
/// whether it is trained.
pub fn replace_value<const D: usize>(
    param: Param<Tensor<D>>,
    value: Tensor<D>,
) -> Param<Tensor<D>> {
    param.map(|old| {
        let trained = old.is_require_grad();
        value.detach().set_require_grad(trained)
    })
}

/// A tensor of independent normal values `N(0, std²)` drawn from a seeded host generator, so that
/// initialisation and sampling are reproducible whatever the device.
pub fn random_normal<const D: usize>(
    shape: [usize; D],
    std: f64,
    rng: &mut impl rand::Rng,
    device: &Device,
) -> Tensor<D> {
    let count = shape.iter().product();
    let values = (0..count)
        .map(|_| std * rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect();
    from_f64(values, shape, device)
}

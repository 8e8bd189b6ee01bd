//! Forward + backward time of burn's `conv2d` against glowflow's matrix-product convolutions
//! (`flow::conv_matmul::same_conv`) on the shapes of a Glow coupling network (batch 32, 1x32x32
//! images at L = 3, width 128), then the two ways of writing a 512-channel 1x1 convolution as
//! matrix products (one per sample, or the batch folded into the columns) and the GEMM throughput
//! of each: the measurements behind the choices, reported in BENCHMARKS.md.
//!
//!     RAYON_NUM_THREADS=2 cargo run --release --example conv_backward

use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use glowflow::flow::conv_matmul::same_conv;

/// Median milliseconds of 9 runs after 2 warm-ups.
fn median_ms(mut f: impl FnMut()) -> f64 {
    for _ in 0..2 {
        f();
    }
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[4]
}

fn main() {
    let device = Device::flex().autodiff();
    let n = 32;
    println!("| conv | burn conv2d fwd+bwd (ms) | matrix products fwd+bwd (ms) |");
    println!("|---|---|---|");
    for (c_in, c_out, k, hw) in [
        (2, 128, 3, 16),
        (128, 128, 1, 16),
        (128, 4, 3, 16),
        (4, 128, 3, 8),
        (128, 128, 1, 8),
        (128, 8, 3, 8),
    ] {
        let x = Tensor::<4>::random([n, c_in, hw, hw], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let w = Tensor::<4>::random(
            [c_out, c_in, k, k],
            Distribution::Normal(0.0, 0.05),
            &device,
        )
        .require_grad();
        let options = ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], 1);
        let run = |conv: &dyn Fn(Tensor<4>, Tensor<4>) -> Tensor<4>| {
            median_ms(|| {
                let grads = conv(x.clone(), w.clone()).sum().backward();
                let dw = w.grad(&grads).expect("dW");
                let _ = dw.sum().into_scalar::<f64>();
            })
        };
        let burn = run(&|x, w| conv2d(x, w, None, options.clone()));
        let ours = run(&|x, w| same_conv(x, w));
        println!("| {c_in}→{c_out}, {k}x{k}, {hw}x{hw} | {burn:.2} | {ours:.2} |");
    }
    folded_or_per_sample(&device, n);
}

/// `[O, C] · [C, H·W]` for every sample (parallel over the batch).
fn per_sample(x: Tensor<4>, w: Tensor<2>) -> Tensor<4> {
    let [n, c, h, wd] = x.dims();
    let o = w.dims()[0];
    w.unsqueeze::<3>()
        .matmul(x.reshape([n, c, h * wd]))
        .reshape([n, o, h, wd])
}

/// `[O, C] · [C, N·H·W]`: the batch folded into the columns (two layout copies).
fn folded(x: Tensor<4>, w: Tensor<2>) -> Tensor<4> {
    let [n, c, h, wd] = x.dims();
    let o = w.dims()[0];
    w.matmul(x.swap_dims(0, 1).reshape([c, n * h * wd]))
        .reshape([o, n, h, wd])
        .swap_dims(0, 1)
}

/// 512→512 1x1 convolutions at 16x16, 8x8 and 4x4 both ways, and the bare GEMM rates.
fn folded_or_per_sample(device: &Device, n: usize) {
    println!();
    println!("| 512→512 1x1 at | per sample fwd+bwd (fwd) ms | batch folded fwd+bwd (fwd) ms |");
    println!("|---|---|---|");
    let c = 512;
    for hw in [16, 8, 4] {
        let x = Tensor::<4>::random([n, c, hw, hw], Distribution::Normal(0.0, 1.0), device)
            .require_grad();
        let r = Tensor::<4>::random([n, c, hw, hw], Distribution::Normal(0.0, 1.0), device);
        let w = Tensor::<2>::random([c, c], Distribution::Normal(0.0, 0.05), device).require_grad();
        let measure = |form: fn(Tensor<4>, Tensor<2>) -> Tensor<4>| {
            let both = median_ms(|| {
                let grads = (form(x.clone(), w.clone()) * r.clone()).sum().backward();
                let _ = w.grad(&grads).expect("dW").sum().into_scalar::<f64>();
            });
            let forward = median_ms(|| {
                let y = form(x.clone().inner(), w.clone().inner());
                let _ = (y * r.clone().inner()).sum().into_scalar::<f64>();
            });
            (both, forward)
        };
        let a = measure(per_sample);
        let b = measure(folded);
        println!(
            "| {hw}x{hw} | {:.1} ({:.1}) | {:.1} ({:.1}) |",
            a.0, a.1, b.0, b.1
        );
    }
    let plain = device.clone().inner();
    let w = Tensor::<2>::random([c, c], Distribution::Normal(0.0, 1.0), &plain);
    let columns = Tensor::<2>::random([c, n * 256], Distribution::Normal(0.0, 1.0), &plain);
    let batch = Tensor::<3>::random([n, c, 256], Distribution::Normal(0.0, 1.0), &plain);
    let flops = 2.0 * (c * c * n * 256) as f64;
    let one = median_ms(|| {
        let _ = w
            .clone()
            .matmul(columns.clone())
            .slice([0..1, 0..1])
            .into_scalar::<f64>();
    });
    let many = median_ms(|| {
        let y = w.clone().unsqueeze::<3>().matmul(batch.clone());
        let _ = y.slice([0..1, 0..1, 0..1]).into_scalar::<f64>();
    });
    println!();
    println!(
        "GEMM 512x512 by 512x{}: one product {:.0} GFLOPS, {n} per-sample products {:.0} GFLOPS",
        n * 256,
        flops / one / 1e6,
        flops / many / 1e6
    );
}

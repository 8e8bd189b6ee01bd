//! Forward + backward time of burn's `conv2d` against glowflow's matrix-product convolutions
//! (`flow::conv_matmul::same_conv`) on the shapes of a Glow coupling network (batch 32, 1x32x32
//! images at L = 3, width 128): the measurement behind the choice, reported in BENCHMARKS.md.
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
}

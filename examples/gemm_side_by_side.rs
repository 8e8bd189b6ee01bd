//! GFLOP/s of the gemm crate (f32, the calls `flow::host_gemm` makes) on the products of a
//! config-3 training step, one thread alone and two threads side by side each running its own
//! single-threaded products (as two batch shards run them), with the operands in cache (each
//! product repeated on the same buffers): the scratch measurement behind BENCHMARKS.md's "Where
//! a shard's products lose their rate".
//!
//!     cargo run --release --example gemm_side_by_side

use std::time::Instant;

/// One product shape: `dst [m, n] (+)= L [m, k] · R [k, n]`, each operand row-major or read
/// through a transposed view, the output accumulated over repetitions or overwritten.
struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    lhs_transposed: bool,
    rhs_transposed: bool,
    accumulate: bool,
}

/// GFLOP/s of `shape` repeated 60 times after 5 warm-ups, on buffers of this thread's own.
fn rate(shape: &Shape) -> f64 {
    let Shape { m, n, k, .. } = *shape;
    let lhs: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let rhs: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut dst = vec![0f32; m * n];
    // (row stride, column stride) of each operand.
    let (lhs_rs, lhs_cs) = match shape.lhs_transposed {
        true => (1, m as isize),
        false => (k as isize, 1),
    };
    let (rhs_rs, rhs_cs) = match shape.rhs_transposed {
        true => (1, k as isize),
        false => (n as isize, 1),
    };
    let mut product = || {
        // SAFETY: every operand is a dense buffer of the shape its strides describe.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                shape.accumulate,
                lhs.as_ptr(),
                lhs_cs,
                lhs_rs,
                rhs.as_ptr(),
                rhs_cs,
                rhs_rs,
                if shape.accumulate { 1.0 } else { 0.0 },
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    };
    for _ in 0..5 {
        product();
    }
    let repeats = 60;
    let started = Instant::now();
    for _ in 0..repeats {
        product();
    }
    2.0 * (m * n * k * repeats) as f64 / started.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let shape = |name, [m, n, k]: [usize; 3], lhs_transposed, rhs_transposed, accumulate| Shape {
        name,
        m,
        n,
        k,
        lhs_transposed,
        rhs_transposed,
        accumulate,
    };
    let shapes = [
        shape("hidden 1x1 forward", [512, 256, 512], false, false, false),
        shape(
            "its dx, W^T in row order",
            [512, 256, 512],
            false,
            false,
            false,
        ),
        shape("its dx, W^T as a view", [512, 256, 512], true, false, false),
        shape(
            "its dW, x^T as a view, summed",
            [512, 512, 256],
            false,
            true,
            true,
        ),
        shape("few-output forward", [108, 256, 512], false, false, false),
        shape("first conv forward", [512, 256, 54], false, false, false),
        shape("batch-folded level 2", [512, 512, 512], false, false, false),
        shape(
            "few-output dW (108 rows)",
            [108, 512, 256],
            false,
            true,
            true,
        ),
        shape("  the same transposed", [512, 108, 256], false, true, true),
        shape("few-output dW (36 rows)", [36, 512, 256], false, true, true),
        shape("  the same transposed", [512, 36, 256], false, true, true),
    ];
    println!("| product | m × n × k | one thread | two side by side |");
    println!("|---|---|---|---|");
    for s in &shapes {
        let alone = rate(s);
        let side_by_side: Vec<f64> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..2).map(|_| scope.spawn(|| rate(s))).collect();
            runs.into_iter().map(|r| r.join().expect("a run")).collect()
        });
        println!(
            "| {} | {} × {} × {} | {alone:.0} | {:.0}, {:.0} |",
            s.name, s.m, s.n, s.k, side_by_side[0], side_by_side[1]
        );
    }
}

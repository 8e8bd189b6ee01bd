//! Data parallelism over the batch on the CPU.
//!
//! burn's `flex` backend runs matrix products on every worker thread (rayon) but elementwise
//! operations, copies, pads and reductions on the calling thread only. In a Glow training step
//! those are about half the work, so two cores ran at 1.2 on average (`perf stat` on
//! `glowflow bench`). Every image's computation is independent of the others' (ActNorm uses fixed
//! parameters once initialised), so a batch split into one contiguous shard per worker thread,
//! with the shards run concurrently, gives the results of the whole batch and keeps every core
//! busy. They are rounded differently, though (sums over the batch such as the mean loss and the
//! gradients, and matrix products over fewer columns), and the rounding depends on the shard count
//! (by default the number of worker threads, `RAYON_NUM_THREADS`), not on the threads that run
//! the shards: training fixes its count per run ([`split`]) so that it resumes bit for bit.

use std::cell::Cell;
use std::ops::Range;

use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::error::Result;

thread_local! {
    /// Whether this thread is running a shard (a shard is not split again).
    static IN_SHARD: Cell<bool> = const { Cell::new(false) };
}

/// The shards of a batch of `n`: one contiguous range per worker thread of the current rayon pool
/// (at most `n`, at least one), sizes differing by at most one. Inside a shard there is one.
pub fn shards(n: usize) -> Vec<Range<usize>> {
    let count = if IN_SHARD.get() {
        1
    } else {
        rayon::current_num_threads()
    };
    split(n, count)
}

/// A batch of `n` in `count` contiguous ranges (at most `n`, at least one) whose sizes differ by
/// at most one; `count = 0` means [`shards`]`(n)`. The ranges, not the threads that run them,
/// fix the arithmetic: the same `count` gives the same results on any number of threads.
pub fn split(n: usize, count: usize) -> Vec<Range<usize>> {
    if count == 0 {
        return shards(n);
    }
    let count = count.min(n).max(1);
    (0..count)
        .map(|i| i * n / count..(i + 1) * n / count)
        .collect()
}

/// `f` applied to every shard of a batch of `n` ([`shards`]) concurrently, results in shard order
/// (the first error if any shard fails).
pub fn map_shards<T: Send>(
    n: usize,
    f: impl Fn(Range<usize>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    map_ranges(shards(n), f)
}

/// `f` applied to every range concurrently (one rayon task each), results in order.
pub fn map_ranges<T: Send>(
    ranges: Vec<Range<usize>>,
    f: impl Fn(Range<usize>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    if ranges.len() == 1 {
        let only = ranges.into_iter().next().expect("one range");
        return Ok(vec![f(only)?]);
    }
    ranges
        .into_par_iter()
        .map(|range| {
            let outer = IN_SHARD.replace(true);
            let result = f(range);
            IN_SHARD.set(outer);
            result
        })
        .collect()
}

/// The rows `range` of a batch (dimension 0).
pub fn rows<const D: usize>(x: &Tensor<D>, range: &Range<usize>) -> Tensor<D> {
    x.clone().narrow(0, range.start, range.len())
}

/// The shards' outputs joined back into one batch (dimension 0); a single shard is returned as
/// it is.
pub fn join_rows<const D: usize>(mut parts: Vec<Tensor<D>>) -> Tensor<D> {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Tensor::cat(parts, 0)
    }
}

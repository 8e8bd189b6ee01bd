//! Data parallelism over the batch on the CPU.
//!
//! burn's `flex` backend runs matrix products on every worker thread (rayon) but elementwise
//! operations, copies, pads and reductions on the calling thread only. In a Glow training step
//! those are about half the work, so two cores ran at 1.2 on average (`perf stat` on
//! `glowflow bench`). Every image's computation is independent of the others' (ActNorm uses fixed
//! parameters once initialised), so a batch split into one contiguous shard per worker thread,
//! with the shards run concurrently, gives the results of the whole batch and keeps every core
//! busy. They are rounded differently, though (sums over the batch such as the mean loss and the
//! gradients, and matrix products over fewer columns), and the rounding depends on the shard count,
//! not on the threads that run the shards. So the count is always an explicit input: training
//! fixes it per run (recorded in train.json) so that it resumes bit for bit, and encoding and
//! decoding use a fixed default ([`DEFAULT_SHARDS`]) unless told otherwise.

use std::cell::Cell;
use std::ops::Range;

use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::error::Result;

thread_local! {
    /// Whether this thread is running a shard (a shard is not split again).
    static IN_SHARD: Cell<bool> = const { Cell::new(false) };
}

/// The shard count of encoding and decoding unless a caller chooses one
/// ([`crate::Glow::with_shards`]): fixed, so that evaluation and sampling give the same figures on
/// any machine. 8 keeps up to 8 cores busy; on fewer, the extra shards only queue.
pub const DEFAULT_SHARDS: usize = 8;

/// The number of worker threads of the current rayon pool (`RAYON_NUM_THREADS`, else one per
/// core): what a setting of "one shard per worker thread" resolves to. It is read where a run
/// starts and recorded, never inside the numerical path.
pub fn worker_threads() -> usize {
    rayon::current_num_threads()
}

/// Whether this thread is running a shard of a batch ([`map_ranges`]), beside the other shards
/// on the other worker threads.
pub fn in_shard() -> bool {
    IN_SHARD.get()
}

/// A batch of `n` in `count` contiguous ranges (at most `n`, at least one) whose sizes differ by
/// at most one. The ranges, not the threads that run them, fix the arithmetic: the same `count`
/// gives the same results on any number of threads. Inside a shard there is one range (a shard
/// is not split again).
pub fn split(n: usize, count: usize) -> Vec<Range<usize>> {
    let count = if in_shard() { 1 } else { count.min(n).max(1) };
    (0..count)
        .map(|i| i * n / count..(i + 1) * n / count)
        .collect()
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

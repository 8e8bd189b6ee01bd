//! Training Glow on image datasets: batches, optimiser, checkpoints, evaluation and the loop.

pub mod batches;
pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod gradients;
pub mod metrics;
pub mod optimizer;
pub mod trainer;

//! Training Glow on image datasets: the training config and its presets, optimiser,
//! checkpoints, evaluation, metrics and the loop.

pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod gradients;
pub mod launch;
pub mod metrics;
pub mod optimizer;
pub mod presets;
pub mod schedule;
pub mod trainer;

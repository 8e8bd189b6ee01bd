//! The learning-rate schedule and the time budget that can fix a run's length.
//!
//! ```text
//! step t (0-based), peak η, warm-up w, decay end D:
//!   t < w:        η · (t + 1) / w                           linear warm-up
//!   constant:     η
//!   cosine:       η · ½ (1 + cos(π · min(t - w, D - w) / (D - w)))    from η at t = w to 0 at t = D
//! ```
//!
//! times the roll-back scale of [`super::checkpoint::TrainingState`]. A time budget times a few
//! whole training steps and an evaluation batch before a run's first step ([`RunCosts`]) and
//! fixes the number of steps (and the decay's end with it) to what fits the budget, evaluations
//! and samples included ([`fitting_steps`]); the fixed count is written to the run's `train.json` before the
//! first step, so a resumed run computes exactly what the uninterrupted one did.

use serde::{Deserialize, Serialize};

/// What the learning rate does after the warm-up (`--lr-decay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum LrDecay {
    /// Stays at the peak.
    #[default]
    Constant,
    /// Half a cosine from the peak down to 0 at the decay's end.
    Cosine,
}

/// The schedule's multiplier of the peak learning rate at 0-based step `step`, for warm-up
/// `warmup` and decay end `decay_end` (steps; `decay_end <= warmup` decays nothing).
pub fn lr_factor(decay: LrDecay, warmup: u64, decay_end: u64, step: u64) -> f64 {
    if step < warmup {
        return (step + 1) as f64 / warmup as f64;
    }
    match decay {
        LrDecay::Constant => 1.0,
        LrDecay::Cosine if decay_end <= warmup => 1.0,
        LrDecay::Cosine => {
            let span = (decay_end - warmup) as f64;
            let done = ((step - warmup) as f64).min(span);
            0.5 * (1.0 + (std::f64::consts::PI * done / span).cos())
        }
    }
}

/// Training steps a time budget runs before the first step and does not count: they warm up
/// caches and the allocator.
pub const CALIBRATION_SKIP: usize = 2;
/// Training steps a time budget times (each on the run's first batch, gradients, update and
/// weight average, applied to a copy of the run's state that is dropped).
pub const CALIBRATION_STEPS: usize = 6;

/// The share of a time budget kept in reserve: a step's time varies by a few per cent over a run
/// (data loading, a busy machine), and the budget is a limit, not a target.
pub const BUDGET_RESERVE: f64 = 0.03;

/// What a time-budgeted run has to pay for, as measured before its first step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunCosts {
    /// Seconds left in the budget when the measurement ends.
    pub seconds_left: f64,
    /// Seconds of one training step.
    pub step_seconds: f64,
    /// Seconds of evaluating one test image.
    pub eval_image_seconds: f64,
    /// Images of a periodic evaluation.
    pub periodic_eval_images: usize,
    /// Steps between periodic evaluations; 0 evaluates only at the end.
    pub eval_every: u64,
    /// Images of the final evaluation (the whole test set).
    pub final_eval_images: usize,
    /// Images decoded for one set of sample grids.
    pub sample_images: usize,
    /// Steps between sample grids; 0 writes them only at the end.
    pub sample_every: u64,
    /// Seconds of writing one checkpoint (the run's first, when this process wrote it; else 0).
    pub checkpoint_seconds: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
}

impl RunCosts {
    /// Seconds a run of `steps` steps takes: the steps, the periodic evaluations, sample grids
    /// and checkpoints before its last step (the trainer's rule: at every multiple of the period
    /// below `steps`), and the final evaluation, samples and checkpoint.
    pub fn seconds_to(&self, steps: u64) -> f64 {
        let before_end = |every: u64| match every {
            0 => 0,
            every => (steps.max(1) - 1) / every,
        };
        let evaluated = before_end(self.eval_every) as f64 * self.periodic_eval_images as f64
            + self.final_eval_images as f64
            + (before_end(self.sample_every) + 1) as f64 * self.sample_images as f64;
        let checkpoints = (before_end(self.checkpoint_every) + 1) as f64;
        steps as f64 * self.step_seconds
            + evaluated * self.eval_image_seconds
            + checkpoints * self.checkpoint_seconds
    }
}

/// The most steps (at least 1) that fit `costs.seconds_left`.
pub fn fitting_steps(costs: &RunCosts) -> u64 {
    // The cost grows with the steps, so the largest fitting count is found by bisection
    // between a count that fits (or 1) and one that does not.
    let fits = |steps: u64| costs.seconds_to(steps) <= costs.seconds_left;
    let (mut low, mut high) = (1u64, 2u64);
    while fits(high) {
        low = high;
        high = match high.checked_mul(2) {
            Some(next) if next <= 1 << 40 => next,
            _ => return low,
        };
    }
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        match fits(mid) {
            true => low = mid,
            false => high = mid,
        }
    }
    low
}

//! The learning-rate schedule and the time budget: the rates a run logs are the schedule's
//! formula (computed here independently), a cosine run resumes exactly, and a time-budgeted run
//! is the cosine run of the step count its budget fixed, bit for bit.

mod common;

use std::f64::consts::PI;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use glowflow::model::params::flat_params;
use glowflow::train::config::TrainConfig;
use glowflow::train::metrics::MetricsFile;
use glowflow::train::schedule::{fitting_steps, LrDecay, RunCosts};
use glowflow::train::trainer::{train, TrainEvent};
use glowflow::{load_model, GlowConfig};

/// The tiny recipe with a cosine decay over 8 steps, 3 of them warm-up.
fn cosine_configs(data: &Path) -> (GlowConfig, TrainConfig) {
    let mut train = tiny_train_config(data);
    train.steps = 8;
    train.warmup_steps = 3;
    train.lr_decay = LrDecay::Cosine;
    (grey8_config(8), train)
}

/// Every value of the EMA weights a run saved as its model.
fn ema_values(run: &Path) -> Vec<f64> {
    let model = load_model(run, &f32_device()).expect("run holds a model");
    flat_params(&model).into_iter().flat_map(values).collect()
}

fn lrs_logged(run: &Path) -> Vec<(u64, f64)> {
    MetricsFile::read(&run.join("metrics.csv"))
        .expect("metrics")
        .into_iter()
        .map(|row| (row.step, row.lr.expect("a logged rate")))
        .collect()
}

#[test]
fn a_cosine_run_logs_the_schedules_rates_and_resumes_exactly() {
    let root = scratch_dir("schedule-cosine");
    write_idx_dataset(&root, 64, 16, 8);
    let (model, train_config) = cosine_configs(&root);
    let never = AtomicBool::new(false);
    let straight = root.join("straight");
    train(&straight, &model, &train_config, false, &never, &mut |_| {}).expect("train");

    // Row `s` logs the rate of the step that ended there, 0-based step s - 1: warm-up
    // lr·(t+1)/3 for t < 3, then lr·(1 + cos(π(t-3)/5))/2 down to 0 at step 8.
    let peak = train_config.lr;
    let expected = |t: u64| match t {
        t if t < 3 => peak * (t + 1) as f64 / 3.0,
        t => peak * 0.5 * (1.0 + (PI * (t - 3) as f64 / 5.0).cos()),
    };
    // A row per step, and the final evaluation's row at step 8; metrics.csv keeps 4 digits.
    let logged = lrs_logged(&straight);
    let steps: Vec<u64> = logged.iter().map(|(step, _)| *step).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7, 8, 8], "{logged:?}");
    for (step, lr) in &logged {
        let want = expected(step - 1);
        assert!(
            (lr - want).abs() <= 5e-4 * want,
            "step {step}: logged lr {lr:e}, the schedule gives {want:e}"
        );
    }
    let written = TrainConfig::load(&straight.join("train.json")).expect("train.json");
    assert_eq!(
        written.decay_steps, 8,
        "the decay's end is fixed in train.json"
    );

    // Stopped after step 5, in the decay, then resumed: the same weights, bit for bit.
    let resumed = root.join("resumed");
    let stop = AtomicBool::new(false);
    train(
        &resumed,
        &model,
        &train_config,
        false,
        &stop,
        &mut |event| {
            if let TrainEvent::Metrics(row) = event {
                if row.step == 5 {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        },
    )
    .expect("train until stopped");
    // The resumed run is given the run's own train.json, as `glowflow train --resume` does.
    let on_disk = TrainConfig::load(&resumed.join("train.json")).expect("train.json");
    let summary = train(&resumed, &model, &on_disk, true, &never, &mut |_| {}).expect("resume");
    assert_eq!((summary.step, summary.interrupted), (8, false));
    assert_eq!(ema_values(&straight), ema_values(&resumed), "EMA weights");
    assert_eq!(lrs_logged(&straight), lrs_logged(&resumed), "logged rates");

    // Steps beyond the decay's end would train at a rate of 0: refused, naming the fix.
    let longer = TrainConfig {
        steps: 12,
        ..on_disk
    };
    let err = train(&resumed, &model, &longer, true, &never, &mut |_| {})
        .expect_err("steps past the decay");
    let message = err.to_string();
    assert!(
        message.contains("decay_steps = 8") && message.contains("at most 8 steps"),
        "{message}"
    );
}

#[test]
fn a_time_budget_fixes_the_steps_and_trains_the_cosine_run_of_that_length() {
    let root = scratch_dir("schedule-budget");
    write_idx_dataset(&root, 64, 16, 8);
    let (model, mut budgeted) = cosine_configs(&root);
    budgeted.time_budget_minutes = 2.0 / 60.0;
    budgeted.checkpoint_every = 1_000_000;
    budgeted.eval_every = 0;
    budgeted.log_every = 10;
    let never = AtomicBool::new(false);
    let run = root.join("budgeted");
    let mut notes = Vec::new();
    let summary = train(&run, &model, &budgeted, false, &never, &mut |event| {
        if let TrainEvent::Note(note) = event {
            notes.push(note)
        }
    })
    .expect("budgeted run");
    let written = TrainConfig::load(&run.join("train.json")).expect("train.json");
    assert!(
        written.steps >= 1 && written.steps != budgeted.steps,
        "{written:?}"
    );
    assert_eq!(written.decay_steps, written.steps, "{written:?}");
    assert_eq!((summary.step, summary.interrupted), (written.steps, false));
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("the run takes {} steps", written.steps))),
        "{notes:?}"
    );

    // The measurement changed nothing: the run is the plain cosine run of that many steps.
    let plain = TrainConfig {
        steps: written.steps,
        time_budget_minutes: 0.0,
        ..budgeted
    };
    let straight = root.join("plain");
    train(&straight, &model, &plain, false, &never, &mut |_| {}).expect("plain run");
    assert_eq!(ema_values(&run), ema_values(&straight), "EMA weights");
    assert_eq!(lrs_logged(&run), lrs_logged(&straight), "logged rates");
}

/// `fitting_steps` against a linear search over the cost, for periods that make the cost jump.
#[test]
fn the_budgets_step_count_is_the_largest_that_fits() {
    for (left, every) in [(10.0, 0), (10.0, 7), (55.5, 3), (0.5, 5), (100.0, 100)] {
        let costs = RunCosts {
            seconds_left: left,
            step_seconds: 0.05,
            eval_image_seconds: 0.001,
            periodic_eval_images: 200,
            eval_every: every,
            final_eval_images: 1000,
            sample_images: 128,
            sample_every: every,
            checkpoint_seconds: 0.3,
            checkpoint_every: every.max(1) * 2,
        };
        // The cost by hand: steps, then evaluations, samples and checkpoints at every multiple
        // of their period below the last step, plus the final ones.
        let by_hand = |n: u64| {
            let at = |p: u64| (1..n).filter(|s| p > 0 && s % p == 0).count() as f64;
            n as f64 * 0.05
                + (at(every) * 200.0 + 1000.0 + (at(every) + 1.0) * 128.0) * 0.001
                + (at(every.max(1) * 2) + 1.0) * 0.3
        };
        let largest = (1..1_000_000u64)
            .take_while(|&n| by_hand(n) <= left)
            .last()
            .unwrap_or(1);
        assert_eq!(
            fitting_steps(&costs),
            largest,
            "budget {left} s, period {every}"
        );
        assert!((costs.seconds_to(largest) - by_hand(largest)).abs() < 1e-9);
    }
}

//! The training loop: data-dependent init, optimiser steps with warm-up and global-norm
//! clipping, Polyak averaging, a guard against non-finite steps, periodic evaluation, samples and
//! checkpoints, and exact resume.
//!
//! The run directory's files are described in [`crate::io::run_dir`]; its `config.json` +
//! `model.safetensors` (the EMA weights) make it a model directory that `glowflow sample` and
//! `glowflow eval` read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::seq::SliceRandom;

use super::checkpoint::{
    list_checkpoints, load_checkpoint, save_checkpoint, save_checkpoint_and_model, Checkpoint,
    TrainingState,
};
use super::config::{read_run_configs, TrainConfig};
use super::eval::{evaluate, TestBatches, TestFigures};
use super::gradients::{loss_and_gradients, BatchLoss, FlatGrads, GradientPass};
use super::launch::{check_launch, placements};
use super::metrics::{write_curves, MetricsFile, MetricsRow};
use super::optimizer::{global_norm, OptimizerSettings, OptimizerState};
use super::schedule::{
    fitting_steps, lr_factor, LrDecay, RunCosts, BUDGET_RESERVE, CALIBRATION_SKIP,
    CALIBRATION_STEPS,
};
use crate::cluster::Cluster;
use crate::data::batches::{
    gather_augmented, stream_rng, Augment, Batch, BatchSchedule, BatchStream, INIT_STREAM,
};
use crate::data::dataset::ImageDataset;
use crate::data::source::load_datasets;
use crate::device::shards_on;
use crate::error::{GlowError, Result};
use crate::io::run_dir::{samples_dir, train_config_path, write_run_configs};
use crate::io::run_lock::RunLock;
use crate::io::sample_grid::{sample_grid_images, write_sample_grids};
use crate::likelihood::preprocess;
use crate::model::config::GlowConfig;
use crate::model::glow::Glow;
use crate::model::params::{flat_params, take_flat_params, with_flat_params};
use crate::parallel::{split, worker_threads};

/// What the loop reports as it goes (the command line turns these into a progress bar or log
/// lines).
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// Training starts (or resumes) at `step` of `total`.
    Started {
        /// First step to run.
        step: u64,
        /// Steps in the whole run.
        total: u64,
    },
    /// A metrics row was written.
    Metrics(MetricsRow),
    /// Something worth telling the user (checkpoint, skipped step, roll-back, samples).
    Note(String),
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Steps completed.
    pub step: u64,
    /// Whether training stopped early on a signal (the run can be resumed).
    pub interrupted: bool,
    /// Final test figures over the whole test set (absent if interrupted).
    pub test: Option<TestFigures>,
    /// Mean training bits/dim over the last logged interval.
    pub train_bpd: Option<f64>,
    /// Training throughput over the whole run, in images per second.
    pub images_per_second: f64,
    /// Seconds spent training (excluding evaluation and sampling).
    pub train_seconds: f64,
    /// Steps skipped for non-finite loss or gradients.
    pub skipped_steps: u64,
    /// Roll-backs to an earlier checkpoint.
    pub rollbacks: u32,
    /// Of `train_seconds`, the seconds this rank spent exchanging the gradient sum with the other
    /// ranks (waiting for slower ranks included); 0 on one process.
    pub exchange_seconds: f64,
}

/// Writes the config files of a new run; a directory that already holds a run is an error.
fn create_run(run: &Path, model: &GlowConfig, train: &TrainConfig) -> Result<()> {
    if !list_checkpoints(run)?.is_empty() {
        return Err(GlowError::Config(format!(
            "{} already holds a run; continue it with --resume {0} or choose another --out",
            run.display()
        )));
    }
    write_run_configs(run, model, train)
}

/// The latest checkpoint of the run in `run`, for resuming with `model_config` and `train`: the
/// architecture must be the run's, and `train` may differ from the run's `train.json` only in
/// settings that keep the run exact
/// ([`super::config::CHANGEABLE_ON_RESUME`]); such changes are written to
/// `train.json` (atomically) once the checkpoint has loaded, so a later resume keeps them.
fn resume_checkpoint(
    cluster: &Cluster,
    run: &Path,
    model_config: &GlowConfig,
    train: &TrainConfig,
    device: &Device,
    train_device: &Device,
    report: &mut dyn FnMut(TrainEvent),
) -> Result<Checkpoint> {
    let (run_model, run_train) = read_run_configs(run)?;
    if run_model != *model_config {
        return Err(GlowError::Config(format!(
            "the architecture of the run in {} is fixed by its config.json; resume it with that \
             architecture, or start a new run (--out) for another",
            run.display()
        )));
    }
    run_train.check_resume_change(train)?;
    let latest = list_checkpoints(run)?.pop().ok_or_else(|| {
        GlowError::Config(format!(
            "{} has no checkpoint to resume from (the run never finished its initialisation); \
             start it again with --out {0}",
            run.display()
        ))
    })?;
    report(TrainEvent::Note(format!(
        "resuming from {}",
        latest.display()
    )));
    let checkpoint = load_checkpoint(&latest, model_config, device, train_device)?;
    if run_train != *train && cluster.writes() {
        train.save(&train_config_path(run))?;
    }
    Ok(checkpoint)
}

/// Locks `run` for this process ([`RunLock`]), reporting a lock taken over from a dead process
/// and the half-written files it left.
fn lock_run(run: &Path, report: &mut dyn FnMut(TrainEvent)) -> Result<RunLock> {
    let lock = RunLock::acquire(run)?;
    if let Some(pid) = lock.taken_from {
        report(TrainEvent::Note(format!(
            "took over the lock of {}, left by process {pid}, which no longer runs",
            run.display()
        )));
    }
    for path in &lock.removed {
        report(TrainEvent::Note(format!(
            "removed {}, left half-written by a process that no longer runs",
            path.display()
        )));
    }
    Ok(lock)
}

/// The learning rate of 0-based step `step` ([`lr_factor`]'s schedule), times the roll-back
/// scale of `state`.
fn learning_rate(train: &TrainConfig, state: &TrainingState, step: u64) -> f64 {
    let factor = lr_factor(train.lr_decay, train.warmup_steps, train.decay_steps, step);
    train.lr * state.lr_scale * factor
}

/// `train` with what a new run fixes when it starts: the batch shards (unless given, one per
/// worker thread of every rank on the CPU, one per rank on a GPU) and, for a cosine decay
/// without a time budget, the decay's end (`steps`). A time budget fixes `steps` and
/// `decay_steps` later, before the first step.
fn fixed_at_start(train: &TrainConfig, on: &Placement) -> TrainConfig {
    let per_rank = shards_on(on.device, worker_threads());
    let batch_shards = match train.batch_shards {
        0 => split(train.batch_size, per_rank * on.cluster.size()).len(),
        count => split(train.batch_size, count).len(),
    };
    let budgeted = train.time_budget_minutes > 0.0;
    let decay_steps = match train.decay_steps {
        0 if train.lr_decay == LrDecay::Cosine && !budgeted => train.steps,
        fixed => fixed,
    };
    TrainConfig {
        batch_shards,
        decay_steps,
        ..train.clone()
    }
}

/// The costs of a time-budgeted run on this machine, measured before its first step: `step`
/// runs one training step (on the run's first batch, leaving the run's state as it was),
/// `evaluate(n)` evaluates `n` test images; `started` is when the run started, which the budget
/// counts from, `checkpoint_seconds` what writing its first checkpoint took and `sample_images`
/// how many samples a set of sample grids decodes.
fn measure_run_costs(
    train: &TrainConfig,
    test_images: usize,
    sample_images: usize,
    started: Instant,
    checkpoint_seconds: f64,
    step: &mut dyn FnMut() -> Result<()>,
    evaluate: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<RunCosts> {
    let mut timed = 0.0;
    for pass in 0..CALIBRATION_SKIP + CALIBRATION_STEPS {
        let began = Instant::now();
        step()?;
        if pass >= CALIBRATION_SKIP {
            timed += began.elapsed().as_secs_f64();
        }
    }
    let eval_images = train.eval_batch_size.min(test_images).max(1);
    let began = Instant::now();
    evaluate(eval_images)?;
    Ok(RunCosts {
        seconds_left: train.time_budget_minutes * 60.0 * (1.0 - BUDGET_RESERVE)
            - started.elapsed().as_secs_f64(),
        step_seconds: timed / CALIBRATION_STEPS as f64,
        eval_image_seconds: began.elapsed().as_secs_f64() / eval_images as f64,
        periodic_eval_images: match train.eval_images {
            0 => test_images,
            n => n.min(test_images),
        },
        eval_every: train.eval_every,
        final_eval_images: test_images,
        sample_images,
        sample_every: train.sample_every,
        checkpoint_seconds,
        checkpoint_every: train.checkpoint_every,
    })
}

/// A fresh run's state after the data-dependent initialisation on `init_images` training
/// images chosen by the seed, varied by `augment` as training batches are.
fn initial_checkpoint(
    model: &GlowConfig,
    train: &TrainConfig,
    data: &ImageDataset,
    augment: Augment,
    train_device: &Device,
) -> Result<Checkpoint> {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut stream_rng(train.seed, INIT_STREAM, 0));
    order.truncate(train.init_images);
    let batch = gather_augmented(
        data,
        &order,
        augment,
        &mut stream_rng(train.seed, INIT_STREAM, 2),
        &mut stream_rng(train.seed, INIT_STREAM, 1),
        0,
    );
    let shape = model.image.chw();
    let (images, noise, classes) = batch.to_tensors(shape, model.n_classes, train_device)?;
    let x = preprocess(images, noise, model.n_bits);
    let glow = model.init(train_device)?.data_init(x, classes.as_ref())?;
    Ok(Checkpoint {
        optimizer: OptimizerState::new(&flat_params(&glow)),
        ema: glow.valid(),
        model: glow,
        state: TrainingState {
            step: 0,
            lr_scale: 1.0,
            skipped_steps: 0,
            rollbacks: 0,
            elapsed_seconds: 0.0,
        },
    })
}

/// `ema ← d·ema + (1 - d)·w` for every trained parameter (the new weights `updated`), with
/// `d = min(decay, (1 + t) / (10 + t))` after `t` updates, so that early on (and in short runs)
/// the average is not dominated by the initial weights.
fn update_ema(ema: Glow, updated: &[Option<Tensor<1>>], decay: f64, t: u64) -> Glow {
    let decay = decay.min((1 + t) as f64 / (10 + t) as f64);
    let averaged = flat_params(&ema)
        .into_iter()
        .zip(updated)
        .map(|(e, w)| w.as_ref().map(|w| e * decay + w.clone() * (1.0 - decay)))
        .collect();
    with_flat_params(ema, averaged)
}

/// The loss figures of `model` on `batch` (images of `shape`, `n_classes` classes), its
/// gradients and their global norm, as [`loss_and_gradients`] computes them over `train`'s batch
/// shards.
fn batch_gradients(
    model: &Glow,
    batch: &Batch,
    shape: [usize; 3],
    n_classes: usize,
    train: &TrainConfig,
    device: &Device,
    cluster: &Cluster,
) -> Result<(BatchLoss, f64, FlatGrads)> {
    let (images, noise, classes) = batch.to_tensors(shape, n_classes, device)?;
    let pass = GradientPass {
        recompute: train.recompute_activations,
        shards: train.batch_shards,
        weight_y: train.weight_y,
    };
    let (loss, grads) = loss_and_gradients(model, images, noise, classes.as_ref(), pass, cluster)?;
    let norm = global_norm(&grads).into_scalar::<f64>();
    Ok((loss, norm, grads))
}

/// `checkpoint` after the optimiser update of rate `lr` from `grads` (of global norm `norm`,
/// clipped to `train.grad_clip_norm`) and the Polyak average of the new weights.
fn update(
    mut checkpoint: Checkpoint,
    train: &TrainConfig,
    lr: f64,
    norm: f64,
    grads: Vec<Option<Tensor<1>>>,
) -> Checkpoint {
    let clip = if train.grad_clip_norm > 0.0 && norm > train.grad_clip_norm {
        train.grad_clip_norm / norm
    } else {
        1.0
    };
    let (model, updated) = apply_gradients(
        checkpoint.model,
        &mut checkpoint.optimizer,
        &train.optimizer,
        lr,
        clip,
        grads,
    );
    checkpoint.model = model;
    checkpoint.ema = if train.ema_decay > 0.0 {
        update_ema(
            checkpoint.ema,
            &updated,
            train.ema_decay,
            checkpoint.optimizer.step,
        )
    } else {
        with_flat_params(checkpoint.ema, updated)
    };
    checkpoint
}

/// One optimiser update of `model` from its gradients (scaled by `clip`): the updated model and
/// the new value of every trained parameter (for the EMA).
pub fn apply_gradients(
    model: Glow,
    optimizer: &mut OptimizerState,
    settings: &OptimizerSettings,
    lr: f64,
    clip: f64,
    grads: Vec<Option<Tensor<1>>>,
) -> (Glow, Vec<Option<Tensor<1>>>) {
    let (model, params) = take_flat_params(model);
    // A parameter without a gradient keeps its value; sharing it costs nothing (it is not
    // rewritten). Every other value goes to the update unshared.
    let kept: Vec<Option<Tensor<1>>> = params
        .iter()
        .zip(&grads)
        .map(|(p, g)| g.is_none().then(|| p.clone()))
        .collect();
    let updated = optimizer.update(settings, lr, clip, params, grads);
    let values = updated.iter().zip(kept).map(|(u, k)| u.clone().or(k));
    (with_flat_params(model, values.collect()), updated)
}

/// Trains the model `model` describes on `train.data`, on the CPU in one process ([`train_on`]
/// for a GPU or several processes), in the run directory `run`, from scratch
/// or (with `resume`) from the run's latest checkpoint. `stop` is checked every step: when set
/// (Ctrl-C, SIGTERM) a checkpoint is written and the run returns, resumable.
pub fn train(
    run: &Path,
    model_config: &GlowConfig,
    train: &TrainConfig,
    resume: bool,
    stop: &AtomicBool,
    report: &mut dyn FnMut(TrainEvent),
) -> Result<TrainSummary> {
    train_on(
        &Placement {
            cluster: &Cluster::single(),
            device: &Device::flex(),
        },
        run,
        model_config,
        train,
        resume,
        stop,
        report,
    )
}

/// Where a run computes: the processes of its cluster and this process's device.
pub struct Placement<'a> {
    /// The ranks ([`Cluster::single`] for one process).
    pub cluster: &'a Cluster,
    /// The device the model trains and evaluates on ([`crate::device`]).
    pub device: &'a Device,
}

/// [`train`] on `on.device` of each rank of `on.cluster` ([`crate::cluster`]): every rank holds
/// the whole model and
/// computes its block of each batch's shards; the gradients are added in shard order across the
/// ranks, so every rank keeps the weights one process would have, bit for bit. Rank 0 alone
/// writes the run's files; evaluation is shared; `stop` on any rank stops all at the same step.
pub fn train_on(
    on: &Placement,
    run: &Path,
    model_config: &GlowConfig,
    train: &TrainConfig,
    resume: bool,
    stop: &AtomicBool,
    report: &mut dyn FnMut(TrainEvent),
) -> Result<TrainSummary> {
    model_config.validate()?;
    train.validate()?;
    train.check_model(model_config)?;
    let started = Instant::now();
    let cluster = on.cluster;
    let mut train = fixed_at_start(train, on);
    check_launch(cluster, run, model_config, &train)?;
    if cluster.size() > 1 {
        for placement in placements(cluster, on.device)? {
            report(TrainEvent::Note(placement));
        }
    }
    // The data first: a run that cannot read its images writes nothing, not even its lock.
    let (train_set, test_set) =
        load_datasets(model_config, &train.data, train.pad_to, &mut |warning| {
            report(TrainEvent::Note(warning))
        })?;
    let writes = cluster.writes();
    let _lock = match writes {
        true => Some(lock_run(run, report)?),
        false => None,
    };
    let device = on.device.clone().inner();
    let train_device = device.clone().autodiff();
    let resumed = if resume {
        Some(resume_checkpoint(
            cluster,
            run,
            model_config,
            &train,
            &device,
            &train_device,
            report,
        )?)
    } else {
        None
    };
    // Training batches cut the model's size out of larger images at random where the source
    // says so, and shift and mirror images at random where the run says so.
    let augment = Augment {
        crop: train
            .data
            .random_crop_from()
            .map(|_| [model_config.image.height, model_config.image.width]),
        translate: train.random_translate,
        flip: train.random_flip,
    };
    let shape = model_config.image.chw();
    // The first `limit` test images (0: all), as every evaluation of the run reads them.
    let test_batches = |limit| TestBatches {
        data: &test_set,
        limit,
        batch_size: train.eval_batch_size,
        seed: train.seed,
    };
    let mut checkpoint_seconds = 0.0;
    let mut checkpoint = if let Some(checkpoint) = resumed {
        checkpoint
    } else {
        // Every rank computes the same initialisation from the same images.
        if writes {
            create_run(run, model_config, &train)?;
        }
        let fresh = initial_checkpoint(model_config, &train, &train_set, augment, &train_device)?;
        if writes {
            let began = Instant::now();
            save_checkpoint(run, &fresh, train.keep_checkpoints)?;
            checkpoint_seconds = began.elapsed().as_secs_f64();
        }
        fresh
    };
    let metrics = match writes {
        true => Some(MetricsFile::open(run, checkpoint.state.step)?),
        false => None,
    };
    let save = |checkpoint: &Checkpoint| match writes {
        true => save_checkpoint_and_model(run, checkpoint, train.keep_checkpoints),
        false => Ok(()),
    };
    let train_set = Arc::new(train_set);
    let schedule = |train: &TrainConfig| {
        BatchSchedule::new(train_set.clone(), train.batch_size, train.seed).with_augment(augment)
    };
    if train.time_budget_minutes > 0.0 && train.decay_steps == 0 {
        let first = schedule(&train).batch(0);
        let costs = measure_run_costs(
            &train,
            test_set.len(),
            sample_grid_images(&checkpoint.ema),
            started,
            checkpoint_seconds,
            &mut || {
                let (_, norm, grads) = batch_gradients(
                    &checkpoint.model,
                    &first,
                    shape,
                    model_config.n_classes,
                    &train,
                    &train_device,
                    cluster,
                )?;
                // The whole step, update and average included, on a copy that is dropped.
                let lr = learning_rate(&train, &checkpoint.state, 0);
                let updated = update(checkpoint.clone(), &train, lr, norm, grads);
                if let Some(last) = flat_params(&updated.ema).pop() {
                    let _ = last.sum().into_scalar::<f64>();
                }
                Ok(())
            },
            &mut |n| evaluate(cluster, &checkpoint.ema, test_batches(n), &device).map(|_| ()),
        )?;
        // Every rank takes rank 0's count, so that all stop at the same step.
        let mine = fitting_steps(&costs) as f64;
        let steps = cluster.all_gather_f64("time-budget steps", &[mine])?[0][0] as u64;
        report(TrainEvent::Note(format!(
            "time budget of {} min: a training step takes {:.3} s and evaluating a test image \
             {:.2} ms here, so the run takes {steps} steps (written to {})",
            train.time_budget_minutes,
            costs.step_seconds,
            costs.eval_image_seconds * 1e3,
            train_config_path(run).display()
        )));
        train.steps = steps;
        train.decay_steps = steps;
        if writes {
            train.save(&train_config_path(run))?;
        }
    }
    let train = &train;
    let schedule = || schedule(train);
    let mut stream = BatchStream::start(schedule(), checkpoint.state.step, 4);
    report(TrainEvent::Started {
        step: checkpoint.state.step,
        total: train.steps,
    });

    let n_classes = model_config.n_classes;
    let mut consecutive_bad = 0u32;
    let mut interval = Interval::default();
    let mut last_train_bpd = None;
    let mut interrupted = false;
    let (mut images_trained, mut train_seconds, mut exchange_seconds) = (0u64, 0.0f64, 0.0f64);
    while checkpoint.state.step < train.steps {
        if cluster.any("stop request", stop.load(Ordering::SeqCst))? {
            interrupted = true;
            break;
        }
        let started = Instant::now();
        let exchanged_before = cluster.exchange_seconds();
        let batch = stream.next_batch();
        debug_assert_eq!(batch.step, checkpoint.state.step);
        let lr = learning_rate(train, &checkpoint.state, checkpoint.state.step);
        let (loss, norm, grads) = batch_gradients(
            &checkpoint.model,
            &batch,
            shape,
            n_classes,
            train,
            &train_device,
            cluster,
        )?;
        checkpoint.state.step += 1;
        let objective = loss.objective(train.weight_y);
        if !(objective.is_finite() && norm.is_finite()) {
            checkpoint.state.skipped_steps += 1;
            consecutive_bad += 1;
            report(TrainEvent::Note(format!(
                "step {}: non-finite loss ({objective}) or gradient norm ({norm}); step skipped",
                checkpoint.state.step
            )));
            if consecutive_bad > train.max_bad_steps {
                checkpoint = roll_back(
                    run,
                    model_config,
                    train,
                    &checkpoint.state,
                    &device,
                    &train_device,
                    report,
                )?;
                stream = BatchStream::start(schedule(), checkpoint.state.step, 4);
                consecutive_bad = 0;
                interval = Interval::default();
            }
            continue;
        }
        consecutive_bad = 0;
        checkpoint = update(checkpoint, train, lr, norm, grads);
        let seconds = started.elapsed().as_secs_f64();
        exchange_seconds += cluster.exchange_seconds() - exchanged_before;
        checkpoint.state.elapsed_seconds += seconds;
        train_seconds += seconds;
        let images = batch.pixels.len() / shape.iter().product::<usize>();
        images_trained += images as u64;
        interval.add(loss, norm, images, seconds);

        let step = checkpoint.state.step;
        let evaluates = train.eval_every > 0 && step % train.eval_every == 0 && step < train.steps;
        if step % train.log_every == 0 || evaluates {
            let mut row = interval.row(step, lr);
            last_train_bpd = row.train_bpd.or(last_train_bpd);
            if evaluates {
                row.set_test(evaluate(
                    cluster,
                    &checkpoint.ema,
                    test_batches(train.eval_images),
                    &device,
                )?);
            }
            if let Some(metrics) = &metrics {
                metrics.append(&row)?;
                if evaluates {
                    write_curves(run)?;
                }
            }
            report(TrainEvent::Metrics(row));
            interval = Interval::default();
        }
        if writes && train.sample_every > 0 && step % train.sample_every == 0 && step < train.steps
        {
            write_samples(run, &checkpoint.ema, train.seed, step, &device, report)?;
        }
        if step % train.checkpoint_every == 0 && step < train.steps {
            save(&checkpoint)?;
            report(TrainEvent::Note(format!("checkpoint at step {step}")));
        }
    }
    drop(stream);
    save(&checkpoint)?;
    let step = checkpoint.state.step;
    let test = if interrupted {
        report(TrainEvent::Note(format!(
            "stopped at step {step}; checkpoint written, continue with --resume {}",
            run.display()
        )));
        None
    } else {
        let figures = evaluate(cluster, &checkpoint.ema, test_batches(0), &device)?;
        // The rate of the last step taken, as every row logs.
        let lr = learning_rate(train, &checkpoint.state, step.saturating_sub(1));
        let mut row = interval.row(step, lr);
        last_train_bpd = row.train_bpd.or(last_train_bpd);
        row.set_test(figures);
        if let Some(metrics) = &metrics {
            // A run killed after its final row, and resumed, does not log the final row twice.
            if !metrics.has_evaluation_at(step)? {
                metrics.append(&row)?;
            }
        }
        report(TrainEvent::Metrics(row));
        if writes {
            report(TrainEvent::Note(format!(
                "learning curves: {}",
                write_curves(run)?.display()
            )));
            for path in write_samples(run, &checkpoint.ema, train.seed, step, &device, report)? {
                report(TrainEvent::Note(format!("samples: {}", path.display())));
            }
        }
        Some(figures)
    };
    Ok(TrainSummary {
        step,
        interrupted,
        test,
        train_bpd: last_train_bpd,
        images_per_second: images_trained as f64 / train_seconds.max(1e-9),
        train_seconds,
        skipped_steps: checkpoint.state.skipped_steps,
        rollbacks: checkpoint.state.rollbacks,
        exchange_seconds,
    })
}

/// Writes the run's sample grids of the EMA weights at `step`, overflow warnings as notes.
fn write_samples(
    run: &Path,
    ema: &Glow,
    seed: u64,
    step: u64,
    device: &Device,
    report: &mut dyn FnMut(TrainEvent),
) -> Result<Vec<PathBuf>> {
    write_sample_grids(&samples_dir(run), ema, seed, step, device, &mut |warning| {
        report(TrainEvent::Note(warning))
    })
}

/// Reloads the latest checkpoint with half the learning rate, or fails once `max_rollbacks`
/// roll-backs have not helped.
fn roll_back(
    run: &Path,
    model: &GlowConfig,
    train: &TrainConfig,
    current: &TrainingState,
    device: &Device,
    train_device: &Device,
    report: &mut dyn FnMut(TrainEvent),
) -> Result<Checkpoint> {
    if current.rollbacks >= train.max_rollbacks {
        return Err(GlowError::Config(format!(
            "training diverged: more than {} non-finite steps in a row at step {}, and {} \
             roll-backs with a halved learning rate did not help; lower lr (now {:e}) or raise \
             warmup_steps",
            train.max_bad_steps,
            current.step,
            current.rollbacks,
            train.lr * current.lr_scale
        )));
    }
    let latest = list_checkpoints(run)?.pop().ok_or_else(|| {
        GlowError::Config(format!(
            "{} has no checkpoint to roll back to",
            run.display()
        ))
    })?;
    let mut checkpoint = load_checkpoint(&latest, model, device, train_device)?;
    checkpoint.state.rollbacks = current.rollbacks + 1;
    checkpoint.state.lr_scale = current.lr_scale * 0.5;
    checkpoint.state.skipped_steps = current.skipped_steps;
    report(TrainEvent::Note(format!(
        "{} non-finite steps in a row: rolled back to step {} with learning-rate scale {}",
        train.max_bad_steps + 1,
        checkpoint.state.step,
        checkpoint.state.lr_scale
    )));
    Ok(checkpoint)
}

/// Running sums between two metrics rows.
#[derive(Default)]
struct Interval {
    bpd: f64,
    /// The classifier head's cross-entropy and error, for a model with a head.
    head: Option<[f64; 2]>,
    norm: f64,
    steps: u64,
    images: usize,
    seconds: f64,
}

impl Interval {
    fn add(&mut self, loss: BatchLoss, norm: f64, images: usize, seconds: f64) {
        self.bpd += loss.bpd;
        if let Some(head) = loss.head {
            let [bits, error] = self.head.unwrap_or_default();
            self.head = Some([bits + head.bits, error + head.error]);
        }
        self.norm += norm;
        self.steps += 1;
        self.images += images;
        self.seconds += seconds;
    }

    fn row(&self, step: u64, lr: f64) -> MetricsRow {
        let per_step = |v: f64| (self.steps > 0).then(|| v / self.steps as f64);
        MetricsRow {
            step,
            train_bpd: per_step(self.bpd),
            train_class_bits: self.head.and_then(|[bits, _]| per_step(bits)),
            train_class_error: self.head.and_then(|[_, error]| per_step(error)),
            lr: Some(lr),
            grad_norm: per_step(self.norm),
            images_per_s: (self.seconds > 0.0).then(|| self.images as f64 / self.seconds),
            ..MetricsRow::default()
        }
    }
}

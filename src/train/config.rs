//! `TrainConfig`: what to train on and how (a run's `train.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::optimizer::OptimizerSettings;
use super::schedule::LrDecay;
use crate::data::source::DataSource;
use crate::error::{GlowError, Result};
use crate::io::run_dir;
use crate::model::config::GlowConfig;

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The dataset.
    pub data: DataSource,
    /// Zero-pad images to this square size first (e.g. 28 -> 32 for L = 3); 0 keeps them.
    pub pad_to: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Optimiser steps in the whole run.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: u64,
    /// What the learning rate does after the warm-up ([`crate::train::schedule`]).
    #[serde(default)]
    pub lr_decay: LrDecay,
    /// The step at which a cosine decay reaches 0. 0 until fixed: a new run fixes it to `steps`
    /// (a time-budgeted one to the steps that fit its budget) and writes it to `train.json`, so
    /// that a resumed run, even one given another `steps`, keeps the schedule it started with.
    #[serde(default)]
    pub decay_steps: u64,
    /// Minutes the whole run may take, its evaluations and samples included: a new run times a
    /// few training steps and an evaluation batch before its first step and fixes `steps` (and
    /// `decay_steps`) to what fits. 0: `steps` as given.
    #[serde(default)]
    pub time_budget_minutes: f64,
    /// Update rule and its hyper-parameters.
    pub optimizer: OptimizerSettings,
    /// Clip gradients to this global norm; 0 disables clipping.
    pub grad_clip_norm: f64,
    /// Decay of the Polyak (exponential moving) average of the weights used for evaluation and
    /// sampling; 0 uses the raw weights.
    pub ema_decay: f64,
    /// Images used for the data-dependent initialisation.
    pub init_images: usize,
    /// Write a checkpoint every this many steps (and at the end, and on Ctrl-C / SIGTERM).
    pub checkpoint_every: u64,
    /// Checkpoints kept; older ones are deleted.
    pub keep_checkpoints: usize,
    /// Evaluate test bits/dim every this many steps (and at the end); 0 only at the end.
    pub eval_every: u64,
    /// Test images used by periodic evaluations (0 = all); the final evaluation uses all.
    pub eval_images: usize,
    /// Batch size of evaluation.
    pub eval_batch_size: usize,
    /// Write sample grids every this many steps (and at the end); 0 only at the end.
    pub sample_every: u64,
    /// Write a metrics row (and a progress line) every this many steps.
    pub log_every: u64,
    /// Seed of data order, dequantisation noise and sampling.
    pub seed: u64,
    /// Consecutive non-finite steps tolerated (skipped) before rolling back to the last
    /// checkpoint with half the learning rate.
    pub max_bad_steps: u32,
    /// Roll-backs tolerated before training stops with an error.
    pub max_rollbacks: u32,
    /// Constant-memory training: recompute every step's activations from its output with the
    /// exact inverse during the backward pass instead of storing them (see
    /// [`crate::train::gradients`]). Same gradients up to rounding; slower per step.
    #[serde(default)]
    pub recompute_activations: bool,
    /// Concurrent shards of each batch in the gradient pass ([`crate::parallel`]); 0 = one per
    /// worker thread of the machine the run starts on. A new run writes the resolved count to its
    /// `train.json`, so that a resumed run computes the same gradients, bit for bit, on any
    /// number of threads.
    #[serde(default)]
    pub batch_shards: usize,
    /// Weight of the classifier head's cross-entropy (bits per image) in the loss,
    /// `bpd + weight_y · bits_y` (openai/glow's `--weight_y`; y0ast's `y_weight` weighs nats, so
    /// it is `weight_y / ln 2`). Needs a model with `class_head` when above 0; a head trained
    /// at 0 keeps its weights.
    #[serde(default)]
    pub weight_y: f64,
    /// Mirror each training image left to right with probability 1/2 at each step
    /// (rosinality's and y0ast's `RandomHorizontalFlip`; openai/glow trains without), drawn
    /// from the run's seed and the step like the rest of a batch.
    #[serde(default)]
    pub random_flip: bool,
    /// Shift each training image at each step by a random number of pixels down and right,
    /// each uniform in `-random_translate..=random_translate`, filling in black (y0ast's
    /// `RandomAffine(0, translate=(0.1, 0.1))` is 3 at 32x32); 0 does not shift.
    #[serde(default)]
    pub random_translate: usize,
}

/// `weight_y` of a model with a classifier head when none is given: openai/glow's conditional
/// CIFAR-10 and ImageNet runs (`--ycond --weight_y=0.01`).
pub const DEFAULT_WEIGHT_Y: f64 = 0.01;

impl TrainConfig {
    /// Checks values that would make training meaningless; the error says what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(GlowError::Config(m));
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch_size and eval_batch_size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "lr = {} must be a positive number (e.g. 1e-3)",
                self.lr
            ));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad(format!(
                "ema_decay = {} must be in [0, 1) (e.g. 0.999)",
                self.ema_decay
            ));
        }
        let o = &self.optimizer;
        if !((0.0..1.0).contains(&o.beta1) && (0.0..1.0).contains(&o.beta2) && o.epsilon > 0.0) {
            return bad("optimizer betas must be in [0, 1) and epsilon > 0".into());
        }
        if !(self.time_budget_minutes.is_finite()
            && (0.0..=1e7).contains(&self.time_budget_minutes))
        {
            return bad(format!(
                "time_budget_minutes = {} must be between 0 (no budget) and 1e7 minutes",
                self.time_budget_minutes
            ));
        }
        if self.lr_decay == LrDecay::Cosine && self.decay_steps > 0 && self.steps > self.decay_steps
        {
            return bad(format!(
                "steps = {} is beyond the cosine decay's end (decay_steps = {}), where the \
                 learning rate is 0: steps past it would not train; give at most {1} steps, or \
                 start a new run with the longer schedule",
                self.steps, self.decay_steps
            ));
        }
        if self.grad_clip_norm < 0.0 || !self.grad_clip_norm.is_finite() {
            return bad(format!(
                "grad_clip_norm = {} must be >= 0 (0 disables clipping)",
                self.grad_clip_norm
            ));
        }
        if !(self.weight_y.is_finite() && self.weight_y >= 0.0) {
            return bad(format!(
                "weight_y = {} must be a number >= 0 (openai/glow's conditional runs: {DEFAULT_WEIGHT_Y})",
                self.weight_y
            ));
        }
        match self.data.random_crop_from() {
            Some(0) => {
                return bad(
                    "data.random_crop_from = 0 is no image size; give the size of the images \
                     the random crops are cut from (e.g. 96), or leave it out"
                        .into(),
                )
            }
            Some(size) if self.pad_to > 0 => {
                return bad(format!(
                    "pad_to = {} and data.random_crop_from = {size} exclude each other: the \
                     model's images are windows of the larger ones, not padded; set pad_to to 0",
                    self.pad_to
                ))
            }
            _ => {}
        }
        if self.init_images == 0
            || self.checkpoint_every == 0
            || self.log_every == 0
            || self.keep_checkpoints == 0
        {
            return bad(
                "init_images, checkpoint_every, log_every and keep_checkpoints must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The training settings a resumed run may change, as named in `train.json` (the command-line
/// flag is the same name with dashes). None of them changes what a step computes: the length of
/// the run (a decaying learning rate follows `decay_steps`, which is fixed), how often it
/// checkpoints, logs, evaluates and samples, how many checkpoints it keeps, the evaluation batch
/// size, the guards against non-finite steps, and where the (same) dataset lies. A run resumed with them changed
/// is the run an uninterrupted one with the new settings would have been.
pub const CHANGEABLE_ON_RESUME: [&str; 11] = [
    "steps",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_every",
    "eval_images",
    "eval_batch_size",
    "sample_every",
    "log_every",
    "max_bad_steps",
    "max_rollbacks",
    "data",
];

impl TrainConfig {
    /// Checks the settings that depend on the model trained: a positive `weight_y` needs a
    /// classifier head to weigh, random shifts must leave something of the image, and random
    /// crops need images at least the model's size.
    pub fn check_model(&self, model: &GlowConfig) -> Result<()> {
        if self.weight_y > 0.0 && !model.class_head {
            return Err(GlowError::Config(format!(
                "weight_y = {} weighs a classifier head's loss, but the model has none; give it \
                 one (--class-head, with --n-classes) or leave weight_y at 0",
                self.weight_y
            )));
        }
        let image = model.image;
        let side = image.height.min(image.width);
        if self.random_translate >= side {
            return Err(GlowError::Config(format!(
                "random_translate = {} would shift the model's {}x{} images out of sight; give \
                 less than {side} (y0ast's 10% is 3 at 32x32)",
                self.random_translate, image.height, image.width
            )));
        }
        match self.data.random_crop_from() {
            Some(size) if size < image.height.max(image.width) => Err(GlowError::Config(format!(
                "data.random_crop_from = {size} is smaller than the model's {}x{} images, which \
                 are random windows of the {size}x{size} images; give at least {}",
                image.height,
                image.width,
                image.height.max(image.width)
            ))),
            _ => Ok(()),
        }
    }

    /// Reads a training config file (a run's `train.json`); an unreadable file, unknown keys and
    /// bad values are errors naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let config: TrainConfig = run_dir::read_json(path, "glowflow training config")?;
        config
            .validate()
            .map_err(|e| GlowError::file(path, e.to_string()))?;
        Ok(config)
    }

    /// Writes the config to `path` as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        run_dir::write_json(path, self)
    }

    /// Checks that a run started with `self` can resume with `resumed`: only the settings in
    /// [`CHANGEABLE_ON_RESUME`] may differ; the error names every other one that does.
    pub fn check_resume_change(&self, resumed: &TrainConfig) -> Result<()> {
        let as_map = |c: &TrainConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let (started, resumed_map) = (as_map(self), as_map(resumed));
        let mut fixed: Vec<String> = started
            .iter()
            .filter(|(name, value)| {
                !CHANGEABLE_ON_RESUME.contains(&name.as_str())
                    && resumed_map.get(*name) != Some(value)
            })
            .map(|(name, value)| {
                let now = resumed_map
                    .get(name)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                let flag = match name.as_str() {
                    "time_budget_minutes" => "time-budget".to_string(),
                    other => other.replace('_', "-"),
                };
                format!("{name} (--{flag}: {value} -> {now})")
            })
            .collect();
        // The data may move, but not change how its images are cut.
        let crop = |c: &TrainConfig| c.data.random_crop_from();
        if crop(self) != crop(resumed) {
            let size = |c: &TrainConfig| crop(c).map_or("none".to_string(), |s| s.to_string());
            fixed.push(format!(
                "data.random_crop_from ({} -> {})",
                size(self),
                size(resumed)
            ));
        }
        if fixed.is_empty() {
            return Ok(());
        }
        Err(GlowError::Config(format!(
            "{} cannot change when a run resumes: they change what the remaining steps compute, \
             so the run would no longer be the one its train.json describes; start a new run \
             (--out) to change them. A resumed run may change only {}",
            fixed.join(", "),
            CHANGEABLE_ON_RESUME.join(", ")
        )))
    }
}

/// The architecture and training config of the run in `run`; a directory without `train.json`
/// is an error saying it holds no run.
pub fn read_run_configs(run: &Path) -> Result<(GlowConfig, TrainConfig)> {
    let train_path = run_dir::train_config_path(run);
    if !run_dir::has_train_config(run)? {
        return Err(GlowError::file(
            &train_path,
            format!(
                "missing: {} holds no training run; start one with `glowflow train --out {0}`",
                run.display()
            ),
        ));
    }
    let train = TrainConfig::load(&train_path)?;
    let model = GlowConfig::load(&run.join(crate::io::model_dir::CONFIG_FILE))?;
    Ok((model, train))
}

/// The training config a model directory's test images and attribute directions come from: its
/// `train.json` (a run directory), or preset `preset_name`'s for a bare model directory, with the
/// dataset moved to `data` when given (`--data`). A `train.json` that is there but unreadable is
/// an error.
pub fn model_train_config(
    dir: &Path,
    preset_name: &str,
    data: Option<&Path>,
) -> Result<TrainConfig> {
    let mut train = if run_dir::has_train_config(dir)? {
        TrainConfig::load(&run_dir::train_config_path(dir))?
    } else {
        super::presets::preset(preset_name)?.1
    };
    if let Some(path) = data {
        train.data = train.data.at(path);
    }
    Ok(train)
}

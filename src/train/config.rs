//! `TrainConfig`: what to train on and how, and the named presets `glowflow train --preset`
//! starts from.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::optimizer::{OptimizerKind, OptimizerSettings};
use crate::data::dataset::{ImageDataset, Split};
use crate::data::folder::{self, BadImage, FolderOptions};
use crate::data::idx::FASHION_MNIST_DIR;
use crate::data::{cifar, idx};
use crate::error::{GlowError, Result};
use crate::flow::coupling::CouplingKind;
use crate::model::config::{GlowConfig, ImageShape};

/// Fashion-MNIST's class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// CIFAR-10's class names, by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DataSource {
    /// MNIST-format IDX files (MNIST, Fashion-MNIST), plain or gzipped, in `dir`.
    Idx {
        /// Directory with `train-images-idx3-ubyte[.gz]` and the other three files.
        dir: PathBuf,
    },
    /// CIFAR-10 binary batches in `dir` (or `dir/cifar-10-batches-bin`).
    Cifar10 {
        /// Directory with `data_batch_1.bin` ... `test_batch.bin`.
        dir: PathBuf,
    },
    /// Folders of PNG/JPEG images (one subfolder per class, or images directly), resized and
    /// centre-cropped to the model's (square) image size and converted to its channel count.
    Folder {
        /// Training images.
        train: PathBuf,
        /// Test images.
        test: PathBuf,
        /// Skip unreadable or unusable images with a warning instead of failing.
        #[serde(default)]
        skip_bad_images: bool,
    },
}

impl DataSource {
    /// Loads one split for a model of images `image`; a missing dataset is an error that says
    /// how to get it. Images skipped in folders are reported through `warn`.
    pub fn load(
        &self,
        split: Split,
        image: &ImageShape,
        warn: &mut dyn FnMut(String),
    ) -> Result<ImageDataset> {
        Ok(self.load_with_files(split, image, warn)?.0)
    }

    /// [`DataSource::load`], with the file of each image for folder datasets (`None` for the
    /// others).
    pub fn load_with_files(
        &self,
        split: Split,
        image: &ImageShape,
        warn: &mut dyn FnMut(String),
    ) -> Result<(ImageDataset, Option<Vec<PathBuf>>)> {
        match self {
            DataSource::Idx { dir } => Ok((idx::load_mnist_split(dir, split)?, None)),
            DataSource::Cifar10 { dir } => Ok((cifar::load_cifar10_split(dir, split)?, None)),
            DataSource::Folder {
                train,
                test,
                skip_bad_images,
            } => {
                let options = FolderOptions {
                    size: (image.height == image.width).then_some(image.height),
                    channels: Some(image.channels),
                    on_bad_image: if *skip_bad_images {
                        BadImage::Skip
                    } else {
                        BadImage::Error
                    },
                };
                let dir = match split {
                    Split::Train => train,
                    Split::Test => test,
                };
                let loaded = folder::load_image_folder(dir, &options)?;
                for (path, reason) in &loaded.skipped {
                    warn(format!("skipped {}: {reason}", path.display()));
                }
                Ok((loaded.dataset, Some(loaded.files)))
            }
        }
    }

    /// The names of the dataset's classes: Fashion-MNIST's ten for an IDX directory whose path
    /// mentions "fashion", the digits for other IDX data, CIFAR-10's ten, and the class
    /// subfolders' names for folders (empty for an unlabelled folder).
    pub fn class_names(&self) -> Result<Vec<String>> {
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        match self {
            DataSource::Idx { dir } => {
                let fashion = dir.to_string_lossy().to_lowercase().contains("fashion");
                Ok(if fashion {
                    owned(&FASHION_MNIST_CLASSES)
                } else {
                    (0..10).map(|d| d.to_string()).collect()
                })
            }
            DataSource::Cifar10 { .. } => Ok(owned(&CIFAR10_CLASSES)),
            DataSource::Folder { train, .. } => folder::class_folders(train),
        }
    }

    /// The same source with its location replaced by `path` (`--data PATH`); for folders, `path`
    /// must hold `train/` and `test/`.
    pub fn at(&self, path: &Path) -> DataSource {
        match self {
            DataSource::Idx { .. } => DataSource::Idx { dir: path.into() },
            DataSource::Cifar10 { .. } => DataSource::Cifar10 { dir: path.into() },
            DataSource::Folder {
                skip_bad_images, ..
            } => DataSource::Folder {
                train: path.join("train"),
                test: path.join("test"),
                skip_bad_images: *skip_bad_images,
            },
        }
    }
}

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
}

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
        if self.grad_clip_norm < 0.0 || !self.grad_clip_norm.is_finite() {
            return bad(format!(
                "grad_clip_norm = {} must be >= 0 (0 disables clipping)",
                self.grad_clip_norm
            ));
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

/// The presets of `glowflow train --preset`.
pub const PRESETS: [&str; 4] = ["fashion-mnist", "mnist", "cifar10", "celeba64"];

/// The model and training configs of a named preset. `fashion-mnist` is sized for about seven
/// minutes on 2 CPU cores (1500 steps of 64 images, 1.6 epochs); its Adam learning rate of 5e-4 with 100 warm-up
/// steps trained more smoothly there than 1e-3 (a loss spike when the warm-up ended) or Adamax.
pub fn preset(name: &str) -> Result<(GlowConfig, TrainConfig)> {
    let base_train = TrainConfig {
        data: DataSource::Idx {
            dir: FASHION_MNIST_DIR.into(),
        },
        pad_to: 0,
        batch_size: 64,
        steps: 1500,
        lr: 5e-4,
        warmup_steps: 100,
        optimizer: OptimizerSettings {
            kind: OptimizerKind::Adam,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        },
        grad_clip_norm: 50.0,
        ema_decay: 0.999,
        init_images: 256,
        checkpoint_every: 500,
        keep_checkpoints: 3,
        eval_every: 500,
        eval_images: 2000,
        eval_batch_size: 500,
        sample_every: 500,
        log_every: 25,
        seed: 0,
        max_bad_steps: 5,
        max_rollbacks: 3,
        recompute_activations: false,
        batch_shards: 0,
    };
    let grey28 = GlowConfig {
        image: ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        levels: 2,
        steps: 8,
        width: 128,
        coupling: CouplingKind::Affine,
        ..GlowConfig::default()
    };
    match name {
        "fashion-mnist" => Ok((grey28, base_train)),
        "mnist" => Ok((
            grey28,
            TrainConfig {
                data: DataSource::Idx {
                    dir: "data/mnist".into(),
                },
                ..base_train
            },
        )),
        "cifar10" => Ok((
            GlowConfig::default(),
            paper_recipe(
                DataSource::Cifar10 {
                    dir: "data/cifar-10-batches-bin".into(),
                },
                64,
                &base_train,
            ),
        )),
        "celeba64" => Ok((
            GlowConfig {
                image: ImageShape {
                    channels: 3,
                    height: 64,
                    width: 64,
                },
                levels: 4,
                n_bits: 5,
                ..GlowConfig::default()
            },
            paper_recipe(
                DataSource::Folder {
                    train: "data/celeba64/train".into(),
                    test: "data/celeba64/test".into(),
                    skip_bad_images: false,
                },
                32,
                &base_train,
            ),
        )),
        other => Err(GlowError::Config(format!(
            "no preset named `{other}`; choose one of {}",
            PRESETS.join(", ")
        ))),
    }
}

/// openai/glow's recipe for the paper's models: Adamax at 1e-3 with 2000 warm-up steps, long runs
/// evaluated on the whole test set.
fn paper_recipe(data: DataSource, batch_size: usize, base: &TrainConfig) -> TrainConfig {
    TrainConfig {
        data,
        batch_size,
        steps: 200_000,
        lr: 1e-3,
        warmup_steps: 2000,
        optimizer: OptimizerSettings {
            kind: OptimizerKind::Adamax,
            ..base.optimizer
        },
        checkpoint_every: 2000,
        eval_every: 5000,
        eval_images: 0,
        sample_every: 5000,
        log_every: 100,
        ..base.clone()
    }
}

//! Options shared by several commands: the architecture, the training recipe, and a model with
//! its test images.

use std::path::PathBuf;
use std::time::Duration;

use burn::tensor::Device;
use clap::Args;
use glowflow::cluster::Cluster;
use glowflow::data::dataset::{ImageDataset, Split};
use glowflow::data::source::load_split;
use glowflow::flow::actnorm::ActNormScale;
use glowflow::train::config::{model_train_config, TrainConfig};
use glowflow::train::optimizer::OptimizerKind;
use glowflow::train::schedule::LrDecay;
use glowflow::{
    load_model, CouplingKind, GlowConfig, GlowError, HiddenNorm, ImageShape, Padding,
    PermutationKind,
};

/// Copies each given command-line option (`Some`) onto the config field of the same name.
macro_rules! override_fields {
    ($args:expr, $config:expr; $($field:ident),* $(,)?) => {
        $( if let Some(v) = $args.$field { $config.$field = v; } )*
    };
}

/// A model and the test images of its dataset.
#[derive(Args)]
pub(crate) struct TestImages {
    /// Run or model directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Dataset location (default: the one in RUN/train.json, else the preset's).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Preset whose dataset format to use when the model directory has no train.json.
    #[arg(long, default_value = "fashion-mnist")]
    pub(crate) preset: String,
}

impl TestImages {
    /// The run's training config, or the preset's for a model directory without `train.json`,
    /// with `--data` applied. A `train.json` that is there but unreadable is an error.
    pub(crate) fn train_config(&self) -> Result<TrainConfig, GlowError> {
        model_train_config(&self.model, &self.preset, self.data.as_deref())
    }

    /// The model, its test set, and the run's evaluation batch size.
    pub(crate) fn load(
        &self,
        device: &Device,
    ) -> Result<(glowflow::Glow, ImageDataset, usize), GlowError> {
        let glow = load_model(&self.model, device)?;
        let train = self.train_config()?;
        let test = test_split(&glow, &train)?;
        Ok((glow, test, train.eval_batch_size))
    }

    /// The test set of the run's dataset, for an already loaded model.
    pub(crate) fn test_set(&self, glow: &glowflow::Glow) -> Result<ImageDataset, GlowError> {
        test_split(glow, &self.train_config()?)
    }
}

/// The test split of `train`'s dataset, checked against the model.
fn test_split(glow: &glowflow::Glow, train: &TrainConfig) -> Result<ImageDataset, GlowError> {
    let (test, _) = load_split(
        glow.config(),
        &train.data,
        train.pad_to,
        Split::Test,
        &mut |w| eprintln!("{w}"),
    )?;
    Ok(test)
}

/// How long a rank of a multi-process launch waits for another.
#[derive(Args)]
pub(crate) struct RankTimeout {
    /// Launched on several processes (mpirun, srun): how long a rank waits for another before
    /// it declares it dead or hung and stops every rank, in seconds (1 to 604800, a week). It
    /// must exceed the longest pause of rank 0 alone (in training, writing samples and
    /// checkpoints).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    rank_timeout: u64,
}

impl RankTimeout {
    /// The cluster this process was launched into ([`Cluster::launch`]).
    pub(crate) fn launch(&self) -> Result<Cluster, GlowError> {
        Cluster::launch(Duration::from_secs(self.rank_timeout))
    }
}

/// Training options; each overrides the preset (or the training config file).
#[derive(Args)]
pub(crate) struct TrainArgs {
    /// Optimiser steps in the whole run.
    #[arg(long)]
    pub(crate) steps: Option<u64>,
    /// Seed of data order, noise and sampling.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Images per step.
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Linear warm-up steps.
    #[arg(long)]
    pub(crate) warmup_steps: Option<u64>,
    /// What the learning rate does after the warm-up: stay (constant) or fall to 0 along half a
    /// cosine by the last step (cosine).
    #[arg(long, value_enum)]
    pub(crate) lr_decay: Option<LrDecay>,
    /// Train for what fits in this many minutes, evaluations and samples included, instead of
    /// --steps: the run times a few steps first and fixes the step count (and the decay's end)
    /// in its train.json.
    #[arg(long, value_name = "MINUTES", conflicts_with = "steps")]
    pub(crate) time_budget: Option<f64>,
    /// Global gradient-norm clip (0 = off).
    #[arg(long)]
    pub(crate) grad_clip_norm: Option<f64>,
    /// Polyak average decay (0 = off).
    #[arg(long)]
    pub(crate) ema_decay: Option<f64>,
    /// Images for the data-dependent initialisation.
    #[arg(long)]
    pub(crate) init_images: Option<usize>,
    /// Zero-pad images to this square size (e.g. 32 for 28x28 images at L = 3).
    #[arg(long)]
    pub(crate) pad_to: Option<usize>,
    /// Checkpoint every N steps.
    #[arg(long)]
    pub(crate) checkpoint_every: Option<u64>,
    /// Evaluate test bits/dim every N steps (0 = only at the end).
    #[arg(long)]
    pub(crate) eval_every: Option<u64>,
    /// Test images for periodic evaluations (0 = all; the final one always uses all).
    #[arg(long)]
    pub(crate) eval_images: Option<usize>,
    /// Sample grids every N steps (0 = only at the end).
    #[arg(long)]
    pub(crate) sample_every: Option<u64>,
    /// Metrics row every N steps.
    #[arg(long)]
    pub(crate) log_every: Option<u64>,
    /// Optimiser.
    #[arg(long, value_enum)]
    pub(crate) optimizer: Option<OptimizerKind>,
    /// Constant-memory training (true/false): recompute activations with the exact inverse
    /// instead of storing them.
    #[arg(long)]
    pub(crate) recompute_activations: Option<bool>,
    /// Concurrent shards of each batch in the gradient pass (default: one per worker thread,
    /// fixed in train.json so that a resumed run is bit-exact on any machine).
    #[arg(long)]
    pub(crate) batch_shards: Option<usize>,
    /// Weight of the classifier head's cross-entropy (bits per image) in the loss, bits/dim +
    /// weight * bits_y (openai/glow's --weight_y; default 0.01 for a model with --class-head
    /// true, 0 without one).
    #[arg(long, value_parser = parse_finite)]
    pub(crate) weight_y: Option<f64>,
    /// Mirror each training image left to right with probability 1/2 at each step
    /// (true/false; rosinality's and y0ast's augmentation, not openai/glow's).
    #[arg(long)]
    pub(crate) random_flip: Option<bool>,
    /// Shift each training image at each step by up to N pixels down or up and right or left,
    /// filling in black (y0ast's augmentation: 3 at 32x32; 0: none).
    #[arg(long, value_name = "N")]
    pub(crate) random_translate: Option<usize>,
}

impl TrainArgs {
    pub(crate) fn apply(&self, config: &mut TrainConfig) {
        override_fields!(self, config;
            steps,
            batch_size,
            lr,
            warmup_steps,
            grad_clip_norm,
            ema_decay,
            init_images,
            pad_to
        );
        override_fields!(self, config;
            checkpoint_every,
            eval_every,
            eval_images,
            sample_every,
            log_every,
            recompute_activations,
            batch_shards,
            weight_y,
            random_flip,
            random_translate
        );
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(kind) = self.optimizer {
            config.optimizer.kind = kind;
        }
        if let Some(decay) = self.lr_decay {
            config.lr_decay = decay;
        }
        if let Some(minutes) = self.time_budget {
            config.time_budget_minutes = minutes;
        }
    }
}

/// Architecture options; each overrides the config file (or the defaults).
#[derive(Args)]
pub(crate) struct ArchArgs {
    /// Start from this JSON config file instead of the defaults.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Image shape as CxHxW, e.g. 1x28x28 or 3x32x32.
    #[arg(long, value_parser = parse_image)]
    pub(crate) image: Option<ImageShape>,
    /// Levels L.
    #[arg(long)]
    pub(crate) levels: Option<usize>,
    /// Steps of flow per level, K (openai/glow's --depth).
    #[arg(long)]
    pub(crate) depth: Option<usize>,
    /// Hidden channels of the coupling networks.
    #[arg(long)]
    pub(crate) width: Option<usize>,
    /// Coupling transform.
    #[arg(long, value_enum)]
    pub(crate) coupling: Option<CouplingKind>,
    /// The affine coupling's scale floor f in [0, 1): scale = f + (1 - f) * sigmoid(r + 2), so
    /// that decoding a sample multiplies by at most 1/f per coupling (0: openai/glow's).
    #[arg(long, value_parser = parse_finite)]
    pub(crate) scale_floor: Option<f64>,
    /// Channel mixing.
    #[arg(long, value_enum)]
    pub(crate) permutation: Option<PermutationKind>,
    /// LU-decomposed 1x1 convolution (true/false).
    #[arg(long)]
    pub(crate) lu: Option<bool>,
    /// Bits per colour channel (1..=8).
    #[arg(long)]
    pub(crate) n_bits: Option<u32>,
    /// Learned top prior (true/false).
    #[arg(long)]
    pub(crate) learn_top: Option<bool>,
    /// Number of classes to condition on (0 = unconditional).
    #[arg(long)]
    pub(crate) n_classes: Option<usize>,
    /// A classifier head on the top latent (true/false; needs --n-classes), trained with the
    /// loss weight --weight-y (openai/glow's --ycond --weight_y).
    #[arg(long)]
    pub(crate) class_head: Option<bool>,
    /// Padding of the 3x3 convolutions.
    #[arg(long, value_enum)]
    pub(crate) padding: Option<Padding>,
    /// Hidden convolution normalisation.
    #[arg(long, value_enum)]
    pub(crate) hidden_norm: Option<HiddenNorm>,
    /// Padding of the zero-initialised convolutions (coupling outputs, priors), if not --padding.
    #[arg(long, value_enum)]
    pub(crate) zero_conv_padding: Option<Padding>,
    /// How the flow steps' ActNorms store their scale.
    #[arg(long, value_enum)]
    pub(crate) actnorm_scale: Option<ActNormScale>,
    /// Seed of the weight initialisation.
    #[arg(long)]
    pub(crate) init_seed: Option<u64>,
}

/// A parser of counts that must be at least 1 (`--n 0` would ask for an empty grid).
pub(crate) fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// A parser of finite numbers (Rust's `f64` parser also takes `nan` and `inf`).
pub(crate) fn parse_finite(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{text}` is not a finite number")),
    }
}

pub(crate) fn parse_image(text: &str) -> Result<ImageShape, String> {
    let parts: Vec<usize> = text
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{text}` is not CxHxW, e.g. 1x28x28"))?;
    match parts[..] {
        [channels, height, width] => Ok(ImageShape {
            channels,
            height,
            width,
        }),
        _ => Err(format!("`{text}` is not CxHxW, e.g. 1x28x28")),
    }
}

impl ArchArgs {
    /// The flags given on the command line.
    pub(crate) fn given(&self) -> Vec<&'static str> {
        [
            ("--config", self.config.is_some()),
            ("--image", self.image.is_some()),
            ("--levels", self.levels.is_some()),
            ("--depth", self.depth.is_some()),
            ("--width", self.width.is_some()),
            ("--coupling", self.coupling.is_some()),
            ("--scale-floor", self.scale_floor.is_some()),
            ("--permutation", self.permutation.is_some()),
            ("--lu", self.lu.is_some()),
            ("--n-bits", self.n_bits.is_some()),
            ("--learn-top", self.learn_top.is_some()),
            ("--n-classes", self.n_classes.is_some()),
            ("--class-head", self.class_head.is_some()),
            ("--padding", self.padding.is_some()),
            ("--hidden-norm", self.hidden_norm.is_some()),
            ("--zero-conv-padding", self.zero_conv_padding.is_some()),
            ("--actnorm-scale", self.actnorm_scale.is_some()),
            ("--init-seed", self.init_seed.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }

    pub(crate) fn to_config(&self) -> Result<GlowConfig, GlowError> {
        self.apply(GlowConfig::default())
    }

    /// `base` (or the `--config` file) with every given option applied, validated.
    pub(crate) fn apply(&self, base: GlowConfig) -> Result<GlowConfig, GlowError> {
        let mut config = match &self.config {
            Some(path) => GlowConfig::load(path)?,
            None => base,
        };
        override_fields!(self, config;
            image,
            levels,
            width,
            coupling,
            scale_floor,
            permutation,
            lu,
            n_bits,
            learn_top,
            n_classes,
            class_head,
            padding,
            hidden_norm,
            actnorm_scale
        );
        if let Some(padding) = self.zero_conv_padding {
            config.zero_conv_padding = Some(padding);
        }
        if let Some(depth) = self.depth {
            config.steps = depth;
        }
        if let Some(seed) = self.init_seed {
            config.seed = seed;
        }
        config.validate()?;
        Ok(config)
    }
}

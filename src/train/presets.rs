//! The named starting points of `glowflow train --preset`: a model config and a training recipe
//! each.

use super::config::TrainConfig;
use super::optimizer::{OptimizerKind, OptimizerSettings};
use super::schedule::LrDecay;
use crate::data::downsampled_imagenet::IMAGENET_CLASSES;
use crate::data::idx::FASHION_MNIST_DIR;
use crate::data::source::DataSource;
use crate::error::{GlowError, Result};
use crate::flow::coupling::CouplingKind;
use crate::model::config::{GlowConfig, ImageShape};

/// The presets of `glowflow train --preset`.
pub const PRESETS: [&str; 11] = [
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar10-ycond",
    "imagenet32",
    "imagenet32-ycond",
    "imagenet64",
    "lsun64",
    "lsun128",
    "celebahq256",
    "celeba64",
];

/// The model and training configs of a named preset. `fashion-mnist` is the winning recipe of
/// the study in BENCHMARKS.md, at a length that fits ten minutes on 2 CPU cores with a margin for
/// their drift: 3500 steps of 32 images (1.9 epochs), Adam at a peak of 2e-3 after 100 warm-up
/// steps with a cosine decay to 0 at the last step, and affine couplings whose scale is floored
/// at 0.1, so that samples decoded at T = 1 do not overflow through a vanishing scale.
///
/// `cifar10`, `imagenet32`, `imagenet64` and `lsun64` are the models and recipe of the paper's
/// likelihood table as openai/glow's README trains them (L = 3, K = 32; L = 3, K = 48; L = 4,
/// K = 48; L = 3, K = 48; width 512, affine coupling, learned top prior, 8 bits), on the
/// downsampled ImageNet of PixelRNN (image-net.org/small: the folders `train_32x32/` and
/// `valid_32x32/` of PNG files, the data of openai/glow's `imagenet-oord`) and on an LSUN
/// category at 96x96 with random 64x64 crops (RealNVP's, openai/glow's `lsun_realnvp`).
/// `cifar10-ycond` is the class-conditional CIFAR-10 model of openai/glow's README ("Conditional
/// CIFAR-10, qualitative result": additive, 5 bits, the prior conditioned on the class and a
/// classifier head weighted 0.01, `--ycond --weight_y=0.01`), `imagenet32-ycond` its
/// class-conditional ImageNet 32x32 model, `celebahq256` and `lsun128` its CelebA-HQ and LSUN
/// models of the paper's samples.
pub fn preset(name: &str) -> Result<(GlowConfig, TrainConfig)> {
    let base_train = TrainConfig {
        data: DataSource::Idx {
            dir: FASHION_MNIST_DIR.into(),
        },
        pad_to: 0,
        batch_size: 32,
        steps: 3500,
        lr: 2e-3,
        warmup_steps: 100,
        lr_decay: LrDecay::Cosine,
        decay_steps: 0,
        time_budget_minutes: 0.0,
        optimizer: OptimizerSettings::adam(),
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
        weight_y: 0.0,
        random_flip: false,
        random_translate: 0,
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
        scale_floor: 0.1,
        ..GlowConfig::default()
    };
    // openai/glow's CIFAR-10 runs: its recipe on 8 GPUs.
    let cifar10_recipe = || {
        let data = DataSource::Cifar10 {
            dir: "data/cifar-10-batches-bin".into(),
        };
        openai_recipe(data, 32, 8, &base_train)
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
        "cifar10" => Ok((GlowConfig::default(), cifar10_recipe())),
        "cifar10-ycond" => Ok((
            GlowConfig {
                coupling: CouplingKind::Additive,
                n_bits: 5,
                n_classes: 10,
                class_head: true,
                ..GlowConfig::default()
            },
            TrainConfig {
                weight_y: 0.01,
                ..cifar10_recipe()
            },
        )),
        "imagenet32" => Ok(imagenet(32, 3, &base_train)),
        "imagenet32-ycond" => Ok(imagenet_ycond(&base_train)),
        "imagenet64" => Ok(imagenet(64, 4, &base_train)),
        "lsun64" => Ok(lsun(&base_train)),
        "lsun128" => Ok(lsun_samples(&base_train)),
        "celebahq256" => Ok(celeba_hq(&base_train)),
        "celeba64" => Ok((
            GlowConfig {
                n_bits: 5,
                ..colour_model(64, 4)
            },
            openai_recipe(
                image_folders("data/celeba64/train", "data/celeba64/test", None),
                64,
                2,
                &base_train,
            ),
        )),
        other => Err(GlowError::Config(format!(
            "no preset named `{other}`; choose one of {}",
            PRESETS.join(", ")
        ))),
    }
}

/// Training images in the folder `train`, test images in `test`, every bad image an error, and
/// random crops from `random_crop_from` when given.
fn image_folders(train: &str, test: &str, random_crop_from: Option<usize>) -> DataSource {
    DataSource::Folder {
        train: train.into(),
        test: test.into(),
        skip_bad_images: false,
        random_crop_from,
    }
}

/// The paper's CIFAR-10 model (K = 32, width 512, affine, learned top prior, 8 bits) for
/// `size x size` colour images with `levels` levels.
fn colour_model(size: usize, levels: usize) -> GlowConfig {
    GlowConfig {
        image: ImageShape {
            channels: 3,
            height: size,
            width: size,
        },
        levels,
        ..GlowConfig::default()
    }
}

/// The paper's unconditional ImageNet model at `size x size` with `levels` levels and K = 48, on
/// PixelRNN's downsampled ImageNet in `data/imagenet{size}` (`train_{size}x{size}/`,
/// `valid_{size}x{size}/`), trained as openai/glow's `--problem imagenet-oord` on 8 GPUs
/// ([`openai_recipe`]).
fn imagenet(size: usize, levels: usize, base: &TrainConfig) -> (GlowConfig, TrainConfig) {
    let folder = |split: &str| format!("data/imagenet{size}/{split}_{size}x{size}");
    let model = GlowConfig {
        steps: 48,
        ..colour_model(size, levels)
    };
    let data = image_folders(&folder("train"), &folder("valid"), None);
    (model, openai_recipe(data, size, 8, base))
}

/// openai/glow's class-conditional ImageNet 32x32 model of its samples (its README's
/// "Conditional ImageNet 32x32": L = 3, K = 48, width 512, additive, 5 bits, the top prior
/// conditioned on the 1000 classes and a classifier head weighted 0.01, 8 GPUs), on image-net.org's
/// downsampled ImageNet with labels in `data/imagenet32-npz` (the NumPy archives of
/// `Imagenet32_train_npz.zip` and `Imagenet32_val_npz.zip`). openai/glow trained it on its own
/// labelled ImageNet (centre-cropped, area-downsampled, in its tfrecords); image-net.org's release
/// is the labelled one that can be had, each image resized whole with a box filter.
fn imagenet_ycond(base: &TrainConfig) -> (GlowConfig, TrainConfig) {
    let model = GlowConfig {
        steps: 48,
        coupling: CouplingKind::Additive,
        n_bits: 5,
        n_classes: IMAGENET_CLASSES,
        class_head: true,
        ..colour_model(32, 3)
    };
    let data = DataSource::DownsampledImagenet {
        dir: "data/imagenet32-npz".into(),
    };
    let train = TrainConfig {
        weight_y: 0.01,
        ..openai_recipe(data, 32, 8, base)
    };
    (model, train)
}

/// The paper's LSUN model (L = 3, K = 48 at 64x64) on one category's images in
/// `data/lsun/train` and `data/lsun/val` (LSUN's splits, exported as image files),
/// centre-cropped and resized to 96x96, each training step taking a random 64x64 window of every
/// image, as RealNVP's and openai/glow's `--problem lsun_realnvp` do (they keep the aspect ratio
/// at a shorter side of 96 with scikit-image's `pyramid_reduce`, where a dataset of one image
/// shape keeps the central square, resized with Pillow's Lanczos filter), trained as openai/glow
/// does on 8 GPUs ([`openai_recipe`]).
fn lsun(base: &TrainConfig) -> (GlowConfig, TrainConfig) {
    let model = GlowConfig {
        steps: 48,
        ..colour_model(64, 3)
    };
    let data = image_folders("data/lsun/train", "data/lsun/val", Some(96));
    (model, openai_recipe(data, 64, 8, base))
}

/// openai/glow's LSUN model of the paper's 128x128 samples (its README's "LSUN 96x96 and
/// 128x128, qualitative result": L = 5, K = 64, width 512, additive, 5 bits, 40 GPUs), on one
/// category's images in `data/lsun128/train` and `data/lsun128/val`, centre-cropped and resized
/// to 128x128 as openai/glow made its `lsun` data (Pillow's Lanczos filter, bit for bit). Only the
/// 128 command runs as openai/glow released it: its loader takes power-of-two sizes, and its
/// table of test batches has no entry for 96x96's 7 images per GPU.
fn lsun_samples(base: &TrainConfig) -> (GlowConfig, TrainConfig) {
    let model = GlowConfig {
        steps: 64,
        coupling: CouplingKind::Additive,
        n_bits: 5,
        ..colour_model(128, 5)
    };
    let data = image_folders("data/lsun128/train", "data/lsun128/val", None);
    (model, openai_recipe(data, 128, 40, base))
}

/// The paper's CelebA-HQ model of its samples (Figure 1), as openai/glow's README trains it on 40
/// GPUs: 3x256x256, L = 6, K = 32, width 512, additive coupling, learned top prior, 5 bits, on
/// CelebA-HQ at 256x256 in `data/celebahq256/train` and `data/celebahq256/test` (openai/glow's
/// split: 27 000 and 3 000 images), centre-cropped and resized to 256x256 if they are not.
fn celeba_hq(base: &TrainConfig) -> (GlowConfig, TrainConfig) {
    let model = GlowConfig {
        coupling: CouplingKind::Additive,
        n_bits: 5,
        ..colour_model(256, 6)
    };
    let data = image_folders("data/celebahq256/train", "data/celebahq256/test", None);
    (model, openai_recipe(data, 256, 40, base))
}

/// openai/glow's training recipe (its train.py and optim.py) for `size x size` images as its
/// README's command runs it on `gpus` processes, expressed as one global batch, so that any
/// number of glowflow processes runs it alike:
/// - a batch of `64·(32/size)²` images per process (its anchor size 32: 64 at 32x32, 16 at
///   64x64, 1 at 256x256), `gpus` times that in all;
/// - Adamax (openai/glow's, [`OptimizerKind::Adamax`]) at 1e-3, β₁ = 0.9, and β₂ and the Polyak
///   average's decay both `1 - 1/⌈50 000 / (64·gpus)⌉` (its `polyak_epochs` of one 50 000-image
///   "epoch", counted at the anchor size);
/// - the learning rate warmed up linearly over 10 such epochs, `⌈500 000 / (64·gpus)⌉` steps,
///   then constant; no gradient clipping;
/// - the data-dependent init on one process's `256·(32/size)²` images (openai/glow initialises
///   on rank 0's batch and broadcasts);
/// - long runs evaluated on the whole test set, in batches of its per-process test batch (50 at
///   32x32, 10 at 64x64, 1 at 256x256) times `gpus`.
fn openai_recipe(data: DataSource, size: usize, gpus: usize, base: &TrainConfig) -> TrainConfig {
    let per_process = |images: usize| (images * 32 * 32 / (size * size)).max(1);
    let anchor_images_per_step = 64 * gpus;
    let epoch_steps = 50_000usize.div_ceil(anchor_images_per_step);
    let decay = 1.0 - 1.0 / epoch_steps as f64;
    TrainConfig {
        data,
        batch_size: gpus * per_process(64),
        init_images: per_process(256),
        eval_batch_size: gpus * test_batch(per_process(64)),
        steps: 200_000,
        lr: 1e-3,
        warmup_steps: 500_000usize.div_ceil(anchor_images_per_step) as u64,
        lr_decay: LrDecay::Constant,
        optimizer: OptimizerSettings {
            kind: OptimizerKind::Adamax,
            beta2: decay,
            ..base.optimizer
        },
        grad_clip_norm: 0.0,
        ema_decay: decay,
        checkpoint_every: 2000,
        eval_every: 5000,
        eval_images: 0,
        sample_every: 5000,
        log_every: 100,
        ..base.clone()
    }
}

/// openai/glow's test batch per process for a training batch of `per_process` images per
/// process (its `local_batch_test`: the largest of 50's divisors in its table not above it).
fn test_batch(per_process: usize) -> usize {
    match per_process {
        64.. => 50,
        32..=63 => 25,
        16..=31 => 10,
        8..=15 => 5,
        2..=7 => 2,
        _ => 1,
    }
}

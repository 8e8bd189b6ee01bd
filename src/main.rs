//! The `glowflow` command line: parses arguments, calls the library, prints.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;
use burn::tensor::{Int, Tensor, TensorData};
use clap::{Args, Parser, Subcommand};
use glowflow::benchmark::{run_benchmark, BenchOptions};
use glowflow::data::celeba::read_celeba_attributes;
use glowflow::data::dataset::ImageDataset;
use glowflow::data::dataset::Split;
use glowflow::data::folder::{load_image_files, BadImage, FolderOptions};
use glowflow::experiments::ablation;
use glowflow::io::latent_file::{load_latents, model_fingerprint, save_latents};
use glowflow::io::png_grid::write_png_grid;
use glowflow::latent::attribute::{cached_direction, celeba_flags, class_flags};
use glowflow::latent::{
    concat as concat_latents, dataset_direction, images_at_bin_centres, interpolate, move_along,
    reconstruct_keeping_top, temperature_sweep,
};
use glowflow::likelihood::to_pixels;
use glowflow::train::config::{self as presets, DataSource, TrainConfig};
use glowflow::train::eval::evaluate_bpd;
use glowflow::train::optimizer::OptimizerKind;
use glowflow::train::trainer::{load_split, read_run_configs, train as train_run, TrainEvent};
use glowflow::Latents;
use glowflow::{
    load_model, save_model, CouplingKind, GlowConfig, GlowError, HiddenNorm, ImageShape, Padding,
    PermutationKind,
};
use rand::SeedableRng;
use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "glowflow",
    version,
    about = "Glow: generative flow with invertible 1x1 convolutions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Enlarge written image grids this many times (nearest neighbour), e.g. 3 for 28x28 images.
    #[arg(long, global = true, default_value_t = 1)]
    zoom: usize,
}

// Parsed once; the size of the `train` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Build a freshly initialised model and save it (config.json + model.safetensors).
    New {
        /// Directory to write the model into.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        arch: ArchArgs,
    },
    /// Train on a dataset (Fashion-MNIST by default), evaluating and sampling as it goes.
    Train {
        /// Starting point: fashion-mnist (default), mnist, cifar10 or celeba64.
        #[arg(long, default_value = "fashion-mnist")]
        preset: String,
        /// Where the dataset is (a directory of IDX files, CIFAR-10 batches, or train/ and test/
        /// folders of PNG images); the preset's format is kept.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run directory to create (default runs/PRESET).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in this directory from its latest checkpoint.
        #[arg(long, conflicts_with = "out")]
        resume: Option<PathBuf>,
        /// A training config file (JSON, as written to RUN/train.json) instead of the preset's.
        #[arg(long)]
        train_config: Option<PathBuf>,
        /// For image folders: skip unreadable or unusable images with a warning.
        #[arg(long)]
        skip_bad_images: bool,
        #[command(flatten)]
        training: TrainArgs,
        #[command(flatten)]
        arch: ArchArgs,
    },
    /// Test-set bits per dimension of a trained model (every test image, seeded noise).
    Eval {
        #[command(flatten)]
        source: TestImages,
        /// Seed of the dequantisation noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Samples from the same noise at several temperatures, one column per temperature.
    TemperatureSweep {
        /// Run or model directory.
        #[arg(long)]
        model: PathBuf,
        /// Rows (samples per temperature).
        #[arg(long, default_value_t = 8)]
        n: usize,
        /// Comma-separated temperatures.
        #[arg(
            long,
            default_value = "0,0.25,0.6,0.7,0.8,0.9,1.0",
            value_delimiter = ','
        )]
        temperatures: Vec<f64>,
        /// Seed of the noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// PNG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Encodes images to their exact latents `ε` (one tensor per level), written as a safetensors
    /// file; `glowflow decode` turns it back into the images.
    Encode {
        #[command(flatten)]
        source: TestImages,
        #[command(flatten)]
        inputs: Inputs,
        /// Latent file to write (.safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Decodes a latent file written by `glowflow encode` (or edited) to a PNG grid.
    Decode {
        /// Run or model directory.
        #[arg(long)]
        model: PathBuf,
        /// Latent file.
        #[arg(long)]
        latents: PathBuf,
        /// Images per row of the grid.
        #[arg(long, default_value_t = 8)]
        columns: usize,
        /// PNG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Moves images along an attribute direction (mean latent of images with the attribute minus
    /// that of images without) and decodes them: one row per image, one column per alpha.
    /// Each class of a labelled dataset is an attribute; CelebA's come from --attributes. The
    /// direction is cached in MODEL/directions/.
    Manipulate {
        #[command(flatten)]
        source: TestImages,
        #[command(flatten)]
        inputs: Inputs,
        /// The attribute: a class name or number, or a column of the --attributes file.
        #[arg(long)]
        attribute: String,
        /// Comma-separated multiples of the direction to add.
        #[arg(
            long,
            default_value = "-1,-0.5,0,0.5,1",
            value_delimiter = ',',
            allow_hyphen_values = true
        )]
        alphas: Vec<f64>,
        /// CelebA attribute file (list_attr_celeba.txt) naming the attributes of the training
        /// images (a folder dataset).
        #[arg(long)]
        attributes: Option<PathBuf>,
        /// Training images the direction is computed from (0 = all).
        #[arg(long, default_value_t = 10_000)]
        direction_images: usize,
        /// PNG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Decodes the straight line between the latents of two test images.
    Interpolate {
        #[command(flatten)]
        source: TestImages,
        /// Index of the first test image.
        a: usize,
        /// Index of the second test image.
        b: usize,
        /// Images on the line, endpoints included.
        #[arg(long, default_value_t = 8)]
        steps: usize,
        /// PNG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Test images beside decodes that keep only the top k levels of their latents (k = L .. 1),
    /// the lower levels redrawn at the given temperature.
    Reconstruct {
        #[command(flatten)]
        source: TestImages,
        /// Indices of the test images (one row each).
        #[arg(long, num_args = 1.., default_values_t = [0usize, 1, 2, 3])]
        index: Vec<usize>,
        /// Temperature of the redrawn levels.
        #[arg(long, default_value_t = 0.7)]
        temperature: f64,
        /// Seed of the redrawn latents.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// PNG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// The permutation ablation of the paper (Figure 3): reverse, shuffle and 1x1 conv, each with
    /// additive and affine coupling, over several seeds at the same budget. Writes OUT/ablation.csv,
    /// OUT/ablation.png and OUT/ablation.md; run it again to continue an interrupted ablation.
    Ablate {
        /// Directory of the ablation (one run per variant and seed inside).
        #[arg(long, default_value = "runs/ablation")]
        out: PathBuf,
        /// Comma-separated seeds.
        #[arg(long, default_value = "0,1,2", value_delimiter = ',')]
        seeds: Vec<u64>,
        /// Comma-separated variants (default: all six, e.g. additive-reverse, affine-inv-conv).
        #[arg(long, value_delimiter = ',')]
        variants: Vec<String>,
        /// Starting point before the CPU-scale sizes are applied (see `glowflow train`).
        #[arg(long, default_value = "fashion-mnist")]
        preset: String,
        /// Where the dataset is (see `glowflow train`).
        #[arg(long)]
        data: Option<PathBuf>,
        #[command(flatten)]
        training: TrainArgs,
        #[command(flatten)]
        arch: ArchArgs,
    },
    /// Speed and memory benchmark on synthetic images: median time of a training step, an exact
    /// log-likelihood evaluation and sampling, with peak resident memory (JSON on stdout).
    Bench {
        #[command(flatten)]
        arch: ArchArgs,
        /// Images per batch.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Untimed repetitions first.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Timed repetitions (median reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Constant-memory training step (recompute activations).
        #[arg(long)]
        recompute_activations: bool,
        /// Comma-separated phases: train, eval, sample.
        #[arg(long, default_value = "train,eval,sample", value_delimiter = ',')]
        phases: Vec<String>,
        /// Seed of the images and weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a grid of samples from one saved model, or from several side by side (each model's
    /// samples start a new row; e.g. a shallow and a deep model).
    Sample {
        /// Run or model directory (`glowflow train --out` or `glowflow new --out`); repeat to
        /// compare models.
        #[arg(long, num_args = 1.., required = true)]
        model: Vec<PathBuf>,
        /// Number of samples (per model).
        #[arg(long, default_value_t = 64)]
        n: usize,
        /// Temperature: every prior's standard deviation is scaled by it (0 gives the means).
        #[arg(long, default_value_t = 0.7)]
        temperature: f64,
        /// Seed of the sampling noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Images per row of the grid.
        #[arg(long, default_value_t = 8)]
        columns: usize,
        /// Class of every sample, for class-conditional models.
        #[arg(long)]
        class: Option<usize>,
        /// PNG file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Copies each given command-line option (`Some`) onto the config field of the same name.
macro_rules! override_fields {
    ($args:expr, $config:expr; $($field:ident),* $(,)?) => {
        $( if let Some(v) = $args.$field { $config.$field = v; } )*
    };
}

/// A model and the test images of its dataset.
#[derive(Args)]
struct TestImages {
    /// Run or model directory.
    #[arg(long)]
    model: PathBuf,
    /// Dataset location (default: the one in RUN/train.json, else the preset's).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Preset whose dataset format to use when the model directory has no train.json.
    #[arg(long, default_value = "fashion-mnist")]
    preset: String,
}

impl TestImages {
    /// The run's training config (or the preset's), with `--data` applied.
    fn train_config(&self) -> Result<TrainConfig, GlowError> {
        let mut train = match read_run_configs(&self.model) {
            Ok((_, train)) => train,
            Err(_) => presets::preset(&self.preset)?.1,
        };
        if let Some(path) = &self.data {
            train.data = train.data.at(path);
        }
        Ok(train)
    }

    /// The model, its test set, and the run's evaluation batch size.
    fn load(&self, device: &Device) -> Result<(glowflow::Glow, ImageDataset, usize), GlowError> {
        let glow = load_model(&self.model, device)?;
        let train = self.train_config()?;
        let (test, _) = load_split(glow.config(), &train, Split::Test, &mut |w| {
            eprintln!("{w}")
        })?;
        Ok((glow, test, train.eval_batch_size))
    }
}

/// The images a command works on: image files, or test-set images by index.
#[derive(Args)]
struct Inputs {
    /// Image files (PNG/JPEG) of the model's size.
    #[arg(long, num_args = 1..)]
    image: Vec<PathBuf>,
    /// Indices of test-set images (the default when no --image is given: image 0).
    #[arg(long, num_args = 1.., conflicts_with = "image")]
    index: Vec<usize>,
    /// Class label of every --image, for class-conditional models.
    #[arg(long)]
    class: Option<usize>,
}

/// [`Inputs`] as model inputs.
struct LoadedInputs {
    /// The images at their bin centres.
    x: Tensor<4>,
    /// A name for each (file or `test[i]`).
    names: Vec<String>,
    /// Their labels, for class-conditional models.
    labels: Option<Vec<usize>>,
}

impl Inputs {
    /// The images as model inputs at their bin centres, a name for each, and their labels (for
    /// class-conditional models).
    fn load(
        &self,
        glow: &glowflow::Glow,
        source: &TestImages,
        device: &Device,
    ) -> Result<LoadedInputs, GlowError> {
        let conditional = glow.config().n_classes > 0;
        if self.image.is_empty() {
            let indices = if self.index.is_empty() {
                vec![0]
            } else {
                self.index.clone()
            };
            let (_, test, _) = source.load(device)?;
            let x = images_at_bin_centres(glow, &test, &indices)?;
            let labels = match (&test.labels, conditional) {
                (Some(labels), true) => Some(indices.iter().map(|&i| labels[i]).collect()),
                _ => None,
            };
            let names = indices.iter().map(|i| format!("test[{i}]")).collect();
            return Ok(LoadedInputs { x, names, labels });
        }
        let image = glow.config().image;
        let loaded = load_image_files(
            &self.image,
            &FolderOptions {
                size: None,
                channels: Some(image.channels),
                on_bad_image: BadImage::Error,
            },
        )?;
        let [_, h, w] = loaded.dataset.shape;
        if [h, w] != [image.height, image.width] {
            return Err(GlowError::Config(format!(
                "{} is {h}x{w} pixels but the model takes {}x{} images; resize the image first",
                self.image[0].display(),
                image.height,
                image.width
            )));
        }
        let n = self.image.len();
        let labels = match (conditional, self.class) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(GlowError::Label(
                    "the model is unconditional; pass no --class".into(),
                ))
            }
            (true, Some(k)) => Some(vec![k; n]),
            (true, None) => {
                return Err(GlowError::Label(
                    "the model is class-conditional; pass --class K for the images".into(),
                ))
            }
        };
        let all: Vec<usize> = (0..n).collect();
        let x = images_at_bin_centres(glow, &loaded.dataset, &all)?;
        let names = self.image.iter().map(|p| p.display().to_string()).collect();
        Ok(LoadedInputs { x, names, labels })
    }
}

/// Writes model-space images as a PNG grid with `columns` per row.
fn write_grid(
    glow: &glowflow::Glow,
    x: Tensor<4>,
    columns: usize,
    zoom: usize,
    out: &std::path::Path,
) -> Result<(), GlowError> {
    write_png_grid(out, to_pixels(x, glow.config().n_bits), columns, zoom)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Training options; each overrides the preset (or the training config file).
#[derive(Args)]
struct TrainArgs {
    /// Optimiser steps in the whole run.
    #[arg(long)]
    steps: Option<u64>,
    /// Seed of data order, noise and sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Images per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Linear warm-up steps.
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Global gradient-norm clip (0 = off).
    #[arg(long)]
    grad_clip_norm: Option<f64>,
    /// Polyak average decay (0 = off).
    #[arg(long)]
    ema_decay: Option<f64>,
    /// Images for the data-dependent initialisation.
    #[arg(long)]
    init_images: Option<usize>,
    /// Zero-pad images to this square size (e.g. 32 for 28x28 images at L = 3).
    #[arg(long)]
    pad_to: Option<usize>,
    /// Checkpoint every N steps.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Evaluate test bits/dim every N steps (0 = only at the end).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Test images for periodic evaluations (0 = all; the final one always uses all).
    #[arg(long)]
    eval_images: Option<usize>,
    /// Sample grids every N steps (0 = only at the end).
    #[arg(long)]
    sample_every: Option<u64>,
    /// Metrics row every N steps.
    #[arg(long)]
    log_every: Option<u64>,
    /// Optimiser: adam or adamax.
    #[arg(long, value_parser = parse_enum::<OptimizerKind>)]
    optimizer: Option<OptimizerKind>,
    /// Constant-memory training (true/false): recompute activations with the exact inverse
    /// instead of storing them.
    #[arg(long)]
    recompute_activations: Option<bool>,
}

impl TrainArgs {
    fn apply(&self, config: &mut TrainConfig) {
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
            recompute_activations
        );
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(kind) = self.optimizer {
            config.optimizer.kind = kind;
        }
    }
}

/// Architecture options; each overrides the config file (or the defaults).
#[derive(Args)]
struct ArchArgs {
    /// Start from this JSON config file instead of the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Image shape as CxHxW, e.g. 1x28x28 or 3x32x32.
    #[arg(long, value_parser = parse_image)]
    image: Option<ImageShape>,
    /// Levels L.
    #[arg(long)]
    levels: Option<usize>,
    /// Steps of flow per level, K (openai/glow's --depth).
    #[arg(long)]
    depth: Option<usize>,
    /// Hidden channels of the coupling networks.
    #[arg(long)]
    width: Option<usize>,
    /// Coupling transform.
    #[arg(long, value_parser = parse_enum::<CouplingKind>)]
    coupling: Option<CouplingKind>,
    /// Channel mixing: inv-conv, reverse or shuffle.
    #[arg(long, value_parser = parse_enum::<PermutationKind>)]
    permutation: Option<PermutationKind>,
    /// LU-decomposed 1x1 convolution (true/false).
    #[arg(long)]
    lu: Option<bool>,
    /// Bits per colour channel (1..=8).
    #[arg(long)]
    n_bits: Option<u32>,
    /// Learned top prior (true/false).
    #[arg(long)]
    learn_top: Option<bool>,
    /// Number of classes to condition on (0 = unconditional).
    #[arg(long)]
    n_classes: Option<usize>,
    /// Padding of the 3x3 convolutions: edge or zero.
    #[arg(long, value_parser = parse_enum::<Padding>)]
    padding: Option<Padding>,
    /// Hidden convolution normalisation: actnorm or bias.
    #[arg(long, value_parser = parse_enum::<HiddenNorm>)]
    hidden_norm: Option<HiddenNorm>,
    /// Seed of the weight initialisation.
    #[arg(long)]
    init_seed: Option<u64>,
}

fn parse_image(text: &str) -> Result<ImageShape, String> {
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

fn parse_enum<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|e| format!("`{text}`: {e}"))
}

impl ArchArgs {
    fn to_config(&self) -> Result<GlowConfig, GlowError> {
        self.apply(GlowConfig::default())
    }

    /// `base` (or the `--config` file) with every given option applied, validated.
    fn apply(&self, base: GlowConfig) -> Result<GlowConfig, GlowError> {
        let mut config = match &self.config {
            Some(path) => GlowConfig::load(path)?,
            None => base,
        };
        override_fields!(self, config;
            image,
            levels,
            width,
            coupling,
            permutation,
            lu,
            n_bits,
            learn_top,
            n_classes,
            padding,
            hidden_norm
        );
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

fn run(cli: Cli) -> Result<(), GlowError> {
    let device = Device::flex();
    let zoom = cli.zoom;
    match cli.command {
        Command::Train {
            preset,
            data,
            out,
            resume,
            train_config,
            skip_bad_images,
            training,
            arch,
        } => {
            let (run_dir, model_config, mut train) = match &resume {
                Some(run_dir) => {
                    let (model, train) = read_run_configs(run_dir)?;
                    (run_dir.clone(), model, train)
                }
                None => {
                    let (model, train) = presets::preset(&preset)?;
                    let train = match &train_config {
                        Some(path) => read_train_config(path)?,
                        None => train,
                    };
                    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(&preset));
                    (out, arch.apply(model)?, train)
                }
            };
            training.apply(&mut train);
            if let Some(path) = data {
                train.data = train.data.at(&path);
            }
            if let DataSource::Folder {
                skip_bad_images: skip,
                ..
            } = &mut train.data
            {
                *skip |= skip_bad_images;
            }
            let stop = stop_on_signal()?;
            let mut progress = Progress::new();
            let summary = train_run(
                &run_dir,
                &model_config,
                &train,
                resume.is_some(),
                &stop,
                &mut |event| progress.show(event),
            )?;
            progress.finish();
            println!(
                "run {}: {} steps, {:.1} images/s over {:.0} s of training, train {} bits/dim, test {} bits/dim{}",
                run_dir.display(),
                summary.step,
                summary.images_per_second,
                summary.train_seconds,
                summary.train_bpd.map(|b| format!("{b:.4}")).unwrap_or_else(|| "-".into()),
                summary.test_bpd.map(|b| format!("{b:.4}")).unwrap_or_else(|| "-".into()),
                if summary.skipped_steps > 0 {
                    format!(" ({} steps skipped, {} roll-backs)", summary.skipped_steps, summary.rollbacks)
                } else {
                    String::new()
                }
            );
        }
        Command::Ablate {
            out,
            seeds,
            variants,
            preset,
            data,
            training,
            arch,
        } => {
            if arch.coupling.is_some() || arch.permutation.is_some() || arch.lu.is_some() {
                return Err(GlowError::Config(
                    "the ablation sets coupling, permutation and lu itself; choose arms with \
                     --variants instead"
                        .into(),
                ));
            }
            let (model, mut train) = ablation::cpu_scale(presets::preset(&preset)?);
            let model = arch.apply(model)?;
            training.apply(&mut train);
            if let Some(path) = data {
                train.data = train.data.at(&path);
            }
            let variants = if variants.is_empty() {
                ablation::Variant::all()
            } else {
                variants
                    .iter()
                    .map(|v| ablation::Variant::parse(v))
                    .collect::<Result<_, _>>()?
            };
            let stop = stop_on_signal()?;
            let mut current = PathBuf::new();
            let points = ablation::run_ablation(
                &out,
                &variants,
                &seeds,
                &model,
                &train,
                &stop,
                &mut |run, event| {
                    if run != current {
                        eprintln!("== {}", run.display());
                        current = run.to_path_buf();
                    }
                    match event {
                        TrainEvent::Metrics(row) => {
                            if let Some(bpd) = row.test_bpd {
                                eprintln!("step {}: test {bpd:.4} bits/dim", row.step);
                            }
                        }
                        TrainEvent::Note(note) => eprintln!("{note}"),
                        TrainEvent::Started { .. } => {}
                    }
                },
            )?;
            for row in ablation::summarise(&points) {
                println!(
                    "{:<22} test {:.4} ± {:.4} bits/dim at step {} ({} seeds)",
                    row.variant.name(),
                    row.mean,
                    row.std,
                    row.step,
                    row.seeds
                );
            }
            println!("results: {}", out.join("ablation.md").display());
        }
        Command::Bench {
            arch,
            batch_size,
            warmup,
            repeats,
            recompute_activations,
            phases,
            seed,
            out,
        } => {
            let options = BenchOptions {
                batch_size,
                warmup,
                repeats,
                recompute_activations,
                phases,
                seed,
            };
            let result = run_benchmark(&arch.to_config()?, &options, &device)?;
            let json = serde_json::to_string_pretty(&result).expect("serialises");
            if let Some(path) = out {
                glowflow::io::atomic::write_atomic(&path, json.as_bytes())?;
            }
            println!("{json}");
        }
        Command::TemperatureSweep {
            model,
            n,
            temperatures,
            seed,
            out,
        } => {
            let glow = load_model(&model, &device)?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let x = temperature_sweep(&glow, n, &temperatures, &mut rng)?;
            // One column per temperature: row i holds sample i at every temperature.
            let order: Vec<i64> = (0..n)
                .flat_map(|i| (0..temperatures.len()).map(move |t| (t * n + i) as i64))
                .collect();
            let index =
                Tensor::<1, Int>::from_data(TensorData::new(order.clone(), [order.len()]), &device);
            write_grid(&glow, x.select(0, index), temperatures.len(), zoom, &out)?;
        }
        Command::Interpolate {
            source,
            a,
            b,
            steps,
            out,
        } => {
            let (glow, test, _) = source.load(&device)?;
            let ends = images_at_bin_centres(&glow, &test, &[a, b])?;
            let path = interpolate(
                &glow,
                ends.clone().narrow(0, 0, 1),
                ends.narrow(0, 1, 1),
                steps,
            )?;
            write_grid(&glow, path, steps, zoom, &out)?;
        }
        Command::Reconstruct {
            source,
            index,
            temperature,
            seed,
            out,
        } => {
            let (glow, test, _) = source.load(&device)?;
            let x = images_at_bin_centres(&glow, &test, &index)?;
            let levels = glow.config().levels;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut columns = vec![x.clone()];
            for keep in (1..=levels).rev() {
                columns.push(reconstruct_keeping_top(
                    &glow,
                    x.clone(),
                    keep,
                    temperature,
                    &mut rng,
                )?);
            }
            // Row r: the original, then the reconstructions keeping L, L-1, ..., 1 levels.
            let grid = Tensor::stack::<5>(columns, 1);
            let [n, k, c, h, w] = grid.dims();
            write_grid(&glow, grid.reshape([n * k, c, h, w]), k, zoom, &out)?;
        }
        Command::Eval { source, seed } => {
            let (glow, test, batch_size) = source.load(&device)?;
            let bpd = evaluate_bpd(&glow, &test, 0, batch_size, seed, &device)?;
            println!(
                "test bits/dim: {bpd:.5} ({} images, noise seed {seed})",
                test.len()
            );
        }
        Command::New { out, arch } => {
            let config = arch.to_config()?;
            let model = config.init(&device)?;
            save_model(&model, &out)?;
            println!("wrote a new model to {}", out.display());
        }
        Command::Sample {
            model: models,
            n,
            temperature,
            seed,
            columns,
            class,
            out,
        } => {
            let mut grids: Vec<Tensor<4>> = Vec::new();
            let mut n_bits = None;
            for dir in &models {
                let model = load_model(dir, &device)?;
                let image = model.config().image;
                let first = grids.first().map(|g| g.dims());
                if n_bits.is_some_and(|b| b != model.config().n_bits)
                    || first.is_some_and(|d| d[1..] != [image.channels, image.height, image.width])
                {
                    return Err(GlowError::Config(format!(
                        "{} models {}x{}x{} images at {} bits, unlike the first model; compare \
                         models of one dataset",
                        dir.display(),
                        image.channels,
                        image.height,
                        image.width,
                        model.config().n_bits
                    )));
                }
                n_bits = Some(model.config().n_bits);
                let classes = class
                    .map(|k| model.one_hot(&vec![k; n], &device))
                    .transpose()?;
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let x = model.sample(n, temperature, classes.as_ref(), &mut rng)?;
                let overflowed = glowflow::tensor_ops::non_finite_samples(&x);
                if overflowed > 0 {
                    eprintln!(
                        "warning: {overflowed} of {n} samples of {} overflowed when decoded \
                         (shown black and white); a lower temperature avoids the far tails",
                        dir.display()
                    );
                }
                // Each model's samples start a new row of the grid (grey padding).
                let padded = n.div_ceil(columns.max(1)) * columns.max(1);
                let [c, h, w] = [image.channels, image.height, image.width];
                let pad = Tensor::<4>::zeros([padded - n, c, h, w], &device);
                grids.push(Tensor::cat(vec![x, pad], 0));
            }
            let pixels = to_pixels(Tensor::cat(grids, 0), n_bits.unwrap_or(8));
            write_png_grid(&out, pixels, columns, zoom)?;
            println!(
                "wrote {n} samples per model at temperature {temperature} to {}",
                out.display()
            );
        }
        Command::Encode {
            source,
            inputs,
            out,
        } => {
            let glow = load_model(&source.model, &device)?;
            let LoadedInputs { x, names, labels } = inputs.load(&glow, &source, &device)?;
            let classes = labels
                .as_ref()
                .map(|l| glow.one_hot(l, &device))
                .transpose()?;
            let (latents, log_det) = glow.encode(x, classes.as_ref())?;
            let log_prob = latents.log_standard_normal() + log_det;
            let bpd = glowflow::likelihood::bits_per_dim(
                log_prob,
                glow.config().image.dims(),
                glow.config().n_bits,
            );
            let bpd: Vec<String> = glowflow::tensor_ops::to_f64_vec(bpd)
                .iter()
                .map(|b| format!("{b:.6}"))
                .collect();
            let mut meta = std::collections::BTreeMap::new();
            meta.insert("inputs".to_string(), names.join(","));
            meta.insert("bits_per_dim_at_bin_centres".to_string(), bpd.join(","));
            if let Some(labels) = &labels {
                let labels: Vec<String> = labels.iter().map(usize::to_string).collect();
                meta.insert("labels".to_string(), labels.join(","));
            }
            save_latents(&out, &glow, &latents, &meta)?;
            for (name, b) in names.iter().zip(&bpd) {
                println!("{name}: {b} bits/dim (pixel values at bin centres)");
            }
            println!(
                "wrote the latents of {} images ({} levels) to {}",
                names.len(),
                latents.levels.len(),
                out.display()
            );
        }
        Command::Decode {
            model,
            latents,
            columns,
            out,
        } => {
            let glow = load_model(&model, &device)?;
            let (z, meta) = load_latents(&latents, &glow, &device)?;
            if meta.get("fingerprint") != Some(&model_fingerprint(&glow)) {
                eprintln!(
                    "warning: {} was written by a model of the same architecture with other \
                     weights; decoding with {}",
                    latents.display(),
                    model.display()
                );
            }
            let classes = match (glow.config().n_classes, meta.get("labels")) {
                (0, _) => None,
                (_, Some(text)) => {
                    let labels = text
                        .split(',')
                        .map(|l| l.parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| {
                            GlowError::Config(format!(
                                "{}: unreadable `labels` metadata `{text}`",
                                latents.display()
                            ))
                        })?;
                    Some(glow.one_hot(&labels, &device)?)
                }
                (k, None) => {
                    return Err(GlowError::Label(format!(
                        "{}: the model is class-conditional ({k} classes) but the latent file \
                         has no `labels` metadata",
                        latents.display()
                    )))
                }
            };
            let (x, _) = glow.decode(&z, classes.as_ref())?;
            write_grid(&glow, x, columns, zoom, &out)?;
        }
        Command::Manipulate {
            source,
            inputs,
            attribute,
            alphas,
            attributes,
            direction_images,
            out,
        } => {
            if alphas.iter().any(|a| !a.is_finite()) {
                return Err(GlowError::Config(format!(
                    "alphas {alphas:?} must be finite numbers"
                )));
            }
            let glow = load_model(&source.model, &device)?;
            let train = source.train_config()?;
            let (data, files) = load_split(glow.config(), &train, Split::Train, &mut |w| {
                eprintln!("{w}")
            })?;
            let count = if direction_images == 0 {
                data.len()
            } else {
                direction_images.min(data.len())
            };
            let flags = match &attributes {
                Some(path) => {
                    let table = read_celeba_attributes(path)?;
                    let files = files.ok_or_else(|| {
                        GlowError::Config(
                            "--attributes needs a folder dataset (the attribute file names its \
                             image files)"
                                .into(),
                        )
                    })?;
                    celeba_flags(&table, &files[..count], &attribute)?
                }
                None => {
                    let labels = data.labels.as_ref().ok_or_else(|| {
                        GlowError::Label(
                            "the dataset has no labels; pass --attributes FILE (CelebA's \
                             list_attr_celeba.txt) to name attributes"
                                .into(),
                        )
                    })?;
                    class_flags(&labels[..count], &train.data.class_names()?, &attribute)?
                }
            };
            let mut key = std::collections::BTreeMap::new();
            key.insert("attribute".to_string(), attribute.clone());
            key.insert(
                "dataset".to_string(),
                serde_json::to_string(&train.data).expect("serialises"),
            );
            key.insert("images".to_string(), count.to_string());
            if let Some(path) = &attributes {
                key.insert("attributes_file".to_string(), path.display().to_string());
            }
            let safe: String = attribute
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let cache = source
                .model
                .join("directions")
                .join(format!("{safe}-{count}.safetensors"));
            let found = cached_direction(&cache, &glow, &key, || {
                dataset_direction(&glow, &data, &flags, train.eval_batch_size)
            })?;
            eprintln!(
                "direction `{attribute}`: {} training images with it, {} without ({} {})",
                found.n_with,
                found.n_without,
                if found.from_cache {
                    "cached in"
                } else {
                    "written to"
                },
                cache.display()
            );
            let (latents, _) = glow.encode(inputs.load(&glow, &source, &device)?.x, None)?;
            let moved: Vec<Latents> = alphas
                .iter()
                .map(|&alpha| move_along(&latents, &found.direction, alpha))
                .collect();
            let (decoded, _) = glow.decode(&concat_latents(moved), None)?;
            // Row i: image i at every alpha.
            let n = latents.levels[0].dims()[0];
            let order: Vec<i64> = (0..n)
                .flat_map(|i| (0..alphas.len()).map(move |a| (a * n + i) as i64))
                .collect();
            let index =
                Tensor::<1, Int>::from_data(TensorData::new(order.clone(), [order.len()]), &device);
            write_grid(&glow, decoded.select(0, index), alphas.len(), zoom, &out)?;
        }
    }
    Ok(())
}

/// A flag set by Ctrl-C or SIGTERM, so training can checkpoint and stop cleanly.
fn stop_on_signal() -> Result<Arc<AtomicBool>, GlowError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| GlowError::Config(format!("cannot install the signal handler: {e}")))?;
    }
    Ok(stop)
}

fn read_train_config(path: &std::path::Path) -> Result<TrainConfig, GlowError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| GlowError::Config(format!("{}: {e}", path.display())))?;
    let config: TrainConfig = serde_json::from_str(&text).map_err(|e| {
        GlowError::Config(format!("{}: not a training config: {e}", path.display()))
    })?;
    Ok(config)
}

/// Training progress: a bar with ETA and images/s on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        Progress { bar: None }
    }

    fn show(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Started { step, total } => {
                if std::io::stderr().is_terminal() {
                    let bar = indicatif::ProgressBar::new(total).with_position(step);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} steps  ETA {eta}  {msg}",
                        )
                        .expect("a valid template"),
                    );
                    self.bar = Some(bar);
                } else {
                    eprintln!("training from step {step} to {total}");
                }
            }
            TrainEvent::Metrics(row) => {
                let cell = |v: Option<f64>, digits: usize| {
                    v.map(|x| format!("{x:.digits$}"))
                        .unwrap_or_else(|| "-".into())
                };
                let line = format!(
                    "step {}: train {} bits/dim, test {}, lr {}, grad norm {}, {} images/s",
                    row.step,
                    cell(row.train_bpd, 4),
                    cell(row.test_bpd, 4),
                    row.lr
                        .map(|x| format!("{x:.2e}"))
                        .unwrap_or_else(|| "-".into()),
                    cell(row.grad_norm, 2),
                    cell(row.images_per_s, 1)
                );
                match &self.bar {
                    Some(bar) => {
                        bar.set_position(row.step);
                        bar.set_message(format!(
                            "{} bits/dim  {} img/s",
                            cell(row.train_bpd, 3),
                            cell(row.images_per_s, 1)
                        ));
                        if row.test_bpd.is_some() {
                            bar.println(line);
                        }
                    }
                    None => eprintln!("{line}"),
                }
            }
            TrainEvent::Note(note) => match &self.bar {
                Some(bar) => bar.println(note),
                None => eprintln!("{note}"),
            },
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

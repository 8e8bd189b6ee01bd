//! The `glowflow` command line: parses arguments, calls the library, prints.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;
use burn::tensor::{Int, Tensor, TensorData};
use clap::{Args, Parser, Subcommand};
use glowflow::data::dataset::ImageDataset;
use glowflow::io::png_grid::write_png_grid;
use glowflow::latent::{interpolate, reconstruct_keeping_top, temperature_sweep};
use glowflow::likelihood::preprocess;
use glowflow::likelihood::to_pixels;
use glowflow::train::batches::gather;
use glowflow::train::config::{self as presets, DataSource, TrainConfig};
use glowflow::train::eval::evaluate_bpd;
use glowflow::train::optimizer::OptimizerKind;
use glowflow::train::trainer::{load_datasets, read_run_configs, train as train_run, TrainEvent};
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
    /// Write a grid of samples from a saved model.
    Sample {
        /// Run or model directory (`glowflow train --out` or `glowflow new --out`).
        #[arg(long)]
        model: PathBuf,
        /// Number of samples.
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
    /// The model, its test set, and the run's evaluation batch size.
    fn load(&self, device: &Device) -> Result<(glowflow::Glow, ImageDataset, usize), GlowError> {
        let glow = load_model(&self.model, device)?;
        let mut train = match read_run_configs(&self.model) {
            Ok((_, train)) => train,
            Err(_) => presets::preset(&self.preset)?.1,
        };
        if let Some(path) = &self.data {
            train.data = train.data.at(path);
        }
        let (_, test) = load_datasets(glow.config(), &train, &mut |w| eprintln!("{w}"))?;
        Ok((glow, test, train.eval_batch_size))
    }
}

/// Test images `indices` as model inputs, each value at the centre of its bin (no noise).
fn images_at(
    glow: &glowflow::Glow,
    data: &ImageDataset,
    indices: &[usize],
    device: &Device,
) -> Result<Tensor<4>, GlowError> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        return Err(GlowError::Config(format!(
            "image index {bad} is out of range: the test set has {} images",
            data.len()
        )));
    }
    let batch = gather(data, indices, &mut rand::rngs::StdRng::seed_from_u64(0), 0);
    let (images, noise, _) = batch.to_tensors(data.shape, 0, device)?;
    Ok(preprocess(
        images,
        noise.full_like(0.5),
        glow.config().n_bits,
    ))
}

/// Writes model-space images as a PNG grid with `columns` per row.
fn write_grid(
    glow: &glowflow::Glow,
    x: Tensor<4>,
    columns: usize,
    out: &std::path::Path,
) -> Result<(), GlowError> {
    write_png_grid(out, to_pixels(x, glow.config().n_bits), columns)?;
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
            log_every
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
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone()).map_err(|e| {
                    GlowError::Config(format!("cannot install the signal handler: {e}"))
                })?;
            }
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
            write_grid(&glow, x.select(0, index), temperatures.len(), &out)?;
        }
        Command::Interpolate {
            source,
            a,
            b,
            steps,
            out,
        } => {
            let (glow, test, _) = source.load(&device)?;
            let ends = images_at(&glow, &test, &[a, b], &device)?;
            let path = interpolate(
                &glow,
                ends.clone().narrow(0, 0, 1),
                ends.narrow(0, 1, 1),
                steps,
            )?;
            write_grid(&glow, path, steps, &out)?;
        }
        Command::Reconstruct {
            source,
            index,
            temperature,
            seed,
            out,
        } => {
            let (glow, test, _) = source.load(&device)?;
            let x = images_at(&glow, &test, &index, &device)?;
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
            write_grid(&glow, grid.reshape([n * k, c, h, w]), k, &out)?;
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
            model,
            n,
            temperature,
            seed,
            columns,
            class,
            out,
        } => {
            let model = load_model(&model, &device)?;
            let classes = class
                .map(|k| model.one_hot(&vec![k; n], &device))
                .transpose()?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let x = model.sample(n, temperature, classes.as_ref(), &mut rng)?;
            let overflowed = glowflow::tensor_ops::non_finite_samples(&x);
            if overflowed > 0 {
                eprintln!(
                    "warning: {overflowed} of {n} samples overflowed when decoded (shown black and \
                     white); a lower temperature avoids the far tails"
                );
            }
            let pixels = to_pixels(x, model.config().n_bits);
            write_png_grid(&out, pixels, columns)?;
            println!(
                "wrote {n} samples at temperature {temperature} to {}",
                out.display()
            );
        }
    }
    Ok(())
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

//! Building, sampling and benchmarking models.

use std::path::PathBuf;

use burn::tensor::Tensor;
use clap::Args;
use glowflow::benchmark::{run_benchmark, BenchOptions};
use glowflow::device::check::check_device;
use glowflow::flow::conv::ConvRoute;
use glowflow::io::import::{export_checkpoint, import_checkpoint, ImportOptions, Peer};
use glowflow::io::model_dir::CONFIG_FILE;
use glowflow::io::png_grid::{pad_to_full_rows, write_png_grid};
use glowflow::io::sample_grid::ClassGrid;
use glowflow::likelihood::to_pixels;
use glowflow::model::compatible::check_same_images;
use glowflow::{load_model, save_model, GlowError};
use rand::SeedableRng;

use super::args::{at_least_one, parse_image, ArchArgs};
use super::Context;

/// `glowflow new` (its help is the doc comment of `Command::New`).
#[derive(Args)]
pub struct New {
    /// Directory to write the model into.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    arch: ArchArgs,
}

impl New {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let New { out, arch } = self;
        let config = arch.to_config()?;
        let existing = out.join(CONFIG_FILE);
        let exists = existing.try_exists().map_err(|source| GlowError::Io {
            path: existing.clone(),
            source,
        })?;
        if exists {
            return Err(GlowError::Config(format!(
                "{} already holds a model ({}); `glowflow new` never overwrites one (it may be a \
                 trained run): choose another --out, or delete the directory first",
                out.display(),
                existing.display()
            )));
        }
        let model = config.init(device)?;
        save_model(&model, &out)?;
        println!("wrote a new model to {}", out.display());
        Ok(())
    }
}

/// `glowflow import` (its help is the doc comment of `Command::Import`).
#[derive(Args)]
pub struct Import {
    /// The implementation that saved the checkpoint.
    #[arg(long, value_enum)]
    from: Peer,
    /// The checkpoint: a `torch.save` of the model's state_dict (zip or legacy format).
    checkpoint: PathBuf,
    /// Image shape CxHxW the model was trained on (required for rosinality, whose checkpoints
    /// do not record it; read from the checkpoint for y0ast).
    #[arg(long, value_parser = parse_image)]
    image: Option<glowflow::ImageShape>,
    /// Bits per colour channel the model was trained on (default: the peer's, 5 for rosinality's
    /// train.py, 8 for y0ast).
    #[arg(long)]
    n_bits: Option<u32>,
    /// Model directory to write.
    #[arg(long)]
    out: PathBuf,
}

impl Import {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let options = ImportOptions {
            image: self.image,
            n_bits: self.n_bits,
        };
        let model = import_checkpoint(self.from, &self.checkpoint, &options, &ctx.device)?;
        save_model(&model, &self.out)?;
        let c = model.config();
        println!(
            "imported {} ({} model, {}x{}x{} images, L = {}, K = {}, width {}, {} bits) into {}",
            self.checkpoint.display(),
            self.from.name(),
            c.image.channels,
            c.image.height,
            c.image.width,
            c.levels,
            c.steps,
            c.width,
            c.n_bits,
            self.out.display()
        );
        Ok(())
    }
}

/// `glowflow export` (its help is the doc comment of `Command::Export`).
#[derive(Args)]
pub struct Export {
    /// The implementation whose checkpoint format to write.
    #[arg(long, value_enum)]
    to: Peer,
    /// Run or model directory.
    model: PathBuf,
    /// The `.pt` file to write.
    #[arg(long)]
    out: PathBuf,
}

impl Export {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let model = load_model(&self.model, &ctx.device)?;
        export_checkpoint(self.to, &model, &self.out)?;
        println!(
            "wrote {} as a {} state_dict to {}",
            self.model.display(),
            self.to.name(),
            self.out.display()
        );
        Ok(())
    }
}

/// `glowflow sample` (its help is the doc comment of `Command::Sample`).
#[derive(Args)]
pub struct Sample {
    /// Run or model directory (`glowflow train --out` or `glowflow new --out`); repeat to
    /// compare models.
    #[arg(long, num_args = 1.., required = true)]
    model: Vec<PathBuf>,
    /// Number of samples (per model), at least 1.
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    n: usize,
    /// Temperature: every prior's standard deviation is scaled by it (0 gives the means).
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per row of the grid (default 8; for a class-conditional model sampled without
    /// --class, one class per column).
    #[arg(long, value_parser = at_least_one())]
    columns: Option<usize>,
    /// Class of every sample, for class-conditional models (default: the classes in turn, the
    /// samples rounded up to whole rows of classes).
    #[arg(long)]
    class: Option<usize>,
    /// PNG file to write.
    #[arg(long)]
    out: PathBuf,
}

impl Sample {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let zoom = ctx.zoom;
        let Sample {
            model: models,
            n,
            temperature,
            seed,
            columns,
            class,
            out,
        } = self;
        let mut grids: Vec<Tensor<4>> = Vec::new();
        let mut first: Option<glowflow::GlowConfig> = None;
        // The grid's columns: the first model's.
        let mut grid_columns: Option<usize> = None;
        let mut counts = Vec::new();
        for dir in &models {
            let model = load_model(dir, device)?;
            match &first {
                Some(reference) => {
                    check_same_images(reference, model.config(), &dir.display().to_string())?
                }
                None => first = Some(model.config().clone()),
            }
            let (labels, model_columns) = match (model.config().n_classes, class) {
                (0, _) => (None, columns.unwrap_or(8)),
                (_, Some(k)) => (Some(vec![k; n]), columns.unwrap_or(8)),
                (k, None) => match columns {
                    Some(c) => (Some((0..n).map(|i| i % k).collect()), c),
                    None => {
                        let grid = ClassGrid::new(k, n, 8);
                        (Some(grid.labels), grid.columns)
                    }
                },
            };
            let columns = *grid_columns.get_or_insert(model_columns);
            let count = labels.as_ref().map_or(n, Vec::len);
            counts.push(count);
            let classes = labels
                .map(|labels: Vec<usize>| model.one_hot(&labels, device))
                .transpose()?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let x = model.sample(count, temperature, classes.as_ref(), &mut rng)?;
            let overflowed = glowflow::tensor_ops::non_finite_samples(&x);
            if overflowed > 0 {
                eprintln!(
                    "warning: {overflowed} of {n} samples of {} overflowed when decoded \
                     (shown black and white); a lower temperature avoids the far tails",
                    dir.display()
                );
            }
            // Each model's samples start a new row of the grid (grey padding).
            grids.push(pad_to_full_rows(x, columns));
        }
        let n_bits = first.as_ref().map_or(8, |c| c.n_bits);
        let pixels = to_pixels(Tensor::cat(grids, 0), n_bits);
        write_png_grid(&out, pixels, grid_columns.unwrap_or(8), zoom)?;
        let per_class = match (first.map_or(0, |c| c.n_classes), class, columns) {
            (k, None, None) if k > 0 => " (one class per column, the classes in turn)",
            _ => "",
        };
        let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
        println!(
            "wrote {} samples per model at temperature {temperature}{per_class} to {}",
            counts.join(", "),
            out.display()
        );
        Ok(())
    }
}

/// `glowflow bench` (its help is the doc comment of `Command::Bench`).
#[derive(Args)]
pub struct Bench {
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
    /// How the coupling networks' convolutions are computed (to compare both on a device).
    #[arg(long, value_enum, default_value = "auto")]
    conv: ConvRoute,
    /// Also write the JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Bench {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let Bench {
            arch,
            batch_size,
            warmup,
            repeats,
            recompute_activations,
            phases,
            seed,
            conv,
            out,
        } = self;
        let options = BenchOptions {
            batch_size,
            warmup,
            repeats,
            recompute_activations,
            phases,
            seed,
            conv,
        };
        let result = run_benchmark(&arch.to_config()?, &options, device)?;
        let json = serde_json::to_string_pretty(&result).expect("serialises");
        if let Some(path) = out {
            glowflow::io::atomic::write_atomic(&path, json.as_bytes())?;
        }
        println!("{json}");
        Ok(())
    }
}

/// `glowflow check-device` (its help is the doc comment of `Command::CheckDevice`).
#[derive(Args)]
pub struct CheckDevice {
    /// Images per batch of each check.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Seed of the weights and images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl CheckDevice {
    /// Runs the command: the JSON report on stdout, an error (exit status 1) if a check failed.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let report = check_device(&ctx.device, self.batch_size, self.seed)?;
        let json = serde_json::to_string_pretty(&report).expect("serialises");
        if let Some(path) = &self.out {
            glowflow::io::atomic::write_atomic(path, json.as_bytes())?;
        }
        println!("{json}");
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{} is {:e}, above {:e}", c.name, c.measured, c.tolerance))
            .collect();
        match failed.is_empty() {
            true => Ok(()),
            false => Err(GlowError::Device(format!(
                "{} does not compute Glow as the CPU does: {}",
                report.device,
                failed.join("; ")
            ))),
        }
    }
}

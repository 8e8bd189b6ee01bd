//! Training, evaluation and the permutation ablation.

use std::path::PathBuf;

use clap::Args;
use glowflow::data::source::DataSource;
use glowflow::experiments::ablation;
use glowflow::train::config::{read_run_configs, TrainConfig, DEFAULT_WEIGHT_Y};
use glowflow::train::eval::{evaluate, TestBatches};
use glowflow::train::launch::check_evaluation_launch;
use glowflow::train::presets::preset;
use glowflow::train::trainer::{train_on, Placement, TrainEvent};
use glowflow::GlowError;

use super::args::{at_least_one, ArchArgs, RankTimeout, TestImages, TrainArgs};
use super::progress::{class_note, Progress};
use super::stop_signal::StopOnSignal;
use super::Context;

/// The preset `glowflow train` starts from when none is given.
const DEFAULT_PRESET: &str = "fashion-mnist";

/// `glowflow train` (its help is the doc comment of `Command::Train`).
#[derive(Args)]
pub struct Train {
    /// Starting point: fashion-mnist (default), mnist, cifar10, cifar10-ycond, imagenet32,
    /// imagenet32-ycond, imagenet64, lsun64, lsun128, celebahq256 or celeba64.
    #[arg(long, conflicts_with = "resume")]
    preset: Option<String>,
    /// Where the dataset is (a directory of IDX files, CIFAR-10 batches, the downsampled
    /// ImageNet's .npz archives, or one holding the preset's image folders: train/ and test/,
    /// imagenet32's train_32x32/ and valid_32x32/, lsun64's train/ and val/); the preset's format
    /// is kept.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run directory to create (default runs/PRESET).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint, exactly as if it had not
    /// stopped. The architecture and the recipe are the run's: architecture flags are refused,
    /// and so are training flags that would change what the remaining steps compute (--seed,
    /// --batch-size, --lr, --warmup-steps, --lr-decay, --time-budget, --grad-clip-norm,
    /// --ema-decay, --init-images, --pad-to, --optimizer, --recompute-activations,
    /// --batch-shards, --weight-y, --random-flip, --random-translate, --random-crop-from).
    /// --steps (up to a cosine decay's end),
    /// --checkpoint-every, --eval-every, --eval-images, --sample-every, --log-every, --data and
    /// --skip-bad-images may change; they are written to RUN/train.json, so a later resume keeps
    /// them.
    #[arg(long, conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// A training config file (JSON, as written to RUN/train.json) instead of the preset's.
    #[arg(long, conflicts_with = "resume")]
    train_config: Option<PathBuf>,
    /// For image folders: skip unreadable or unusable images with a warning.
    #[arg(long)]
    skip_bad_images: bool,
    /// For image folders: centre-crop and resize the images to N x N instead of the model's
    /// size, and train on a random model-size window of each at each step (RealNVP's and
    /// openai/glow's LSUN: 96, the lsun64 preset's); evaluation reads the central window.
    #[arg(long, value_name = "N", value_parser = at_least_one())]
    random_crop_from: Option<usize>,
    #[command(flatten)]
    rank_timeout: RankTimeout,
    #[command(flatten)]
    training: TrainArgs,
    #[command(flatten)]
    arch: ArchArgs,
}

impl Train {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let Train {
            preset: preset_name,
            data,
            out,
            resume,
            train_config,
            skip_bad_images,
            random_crop_from,
            rank_timeout,
            training,
            arch,
        } = self;
        let cluster = rank_timeout.launch()?;
        let (run_dir, model_config, mut train) = match &resume {
            Some(run_dir) => {
                if let Some(flag) = arch.given().first() {
                    return Err(GlowError::Config(format!(
                        "{flag} cannot be given with --resume: the architecture of a run is \
                         fixed by {}",
                        run_dir.join("config.json").display()
                    )));
                }
                let (model, train) = read_run_configs(run_dir)?;
                (run_dir.clone(), model, train)
            }
            None => {
                let name = preset_name.as_deref().unwrap_or(DEFAULT_PRESET);
                let (model, train) = preset(name)?;
                let train = match &train_config {
                    Some(path) => TrainConfig::load(path)?,
                    None => train,
                };
                let out = out.unwrap_or_else(|| PathBuf::from("runs").join(name));
                (out, arch.apply(model)?, train)
            }
        };
        let new_head = resume.is_none() && train_config.is_none() && model_config.class_head;
        if new_head && training.weight_y.is_none() {
            train.weight_y = DEFAULT_WEIGHT_Y;
        }
        training.apply(&mut train);
        if let Some(path) = data {
            train.data = train.data.at(&path);
        }
        match &mut train.data {
            DataSource::Folder {
                skip_bad_images: skip,
                random_crop_from: crop,
                ..
            } => {
                *skip |= skip_bad_images;
                *crop = random_crop_from.or(*crop);
            }
            _ if random_crop_from.is_some() => {
                return Err(GlowError::Config(
                    "--random-crop-from is for image folders; this run's data is not one (choose \
                     a folder preset such as lsun64 or celebahq256, or a --train-config with folders)"
                        .into(),
                ))
            }
            _ => {}
        }
        // Rank 0 alone reports; the others train silently.
        let mut progress = cluster.writes().then(Progress::new);
        let stop = match &progress {
            Some(progress) => StopOnSignal::install(progress.printer())?,
            None => StopOnSignal::install(|_: &str| {})?,
        };
        let on = Placement {
            cluster: &cluster,
            device: &ctx.device,
        };
        let summary = train_on(
            &on,
            &run_dir,
            &model_config,
            &train,
            resume.is_some(),
            stop.flag(),
            &mut |event| {
                if let Some(progress) = &mut progress {
                    progress.show(event)
                }
            },
        );
        // The stop notice, if a signal came, before the run's last lines.
        drop(stop);
        let summary = match summary {
            Ok(summary) => summary,
            Err(error) => {
                // One rank's error ends them all (the others would wait for it).
                cluster.abort(&error);
                return Err(error);
            }
        };
        let Some(progress) = progress else {
            return Ok(());
        };
        progress.finish();
        let exchange = if cluster.size() > 1 {
            format!(
                " ({:.1} s of it exchanging gradients with other ranks)",
                summary.exchange_seconds
            )
        } else {
            String::new()
        };
        println!(
            "run {}: {} steps, {:.1} images/s over {:.0} s of training{exchange}, train {} bits/dim, test {} bits/dim{}{}",
            run_dir.display(),
            summary.step,
            summary.images_per_second,
            summary.train_seconds,
            summary.train_bpd.map(|b| format!("{b:.4}")).unwrap_or_else(|| "-".into()),
            summary.test.map(|t| format!("{:.4}", t.bpd)).unwrap_or_else(|| "-".into()),
            summary.test.map(|t| class_note(&t)).unwrap_or_default(),
            if summary.skipped_steps > 0 {
                format!(" ({} steps skipped, {} roll-backs)", summary.skipped_steps, summary.rollbacks)
            } else {
                String::new()
            }
        );
        Ok(())
    }
}

/// `glowflow ablate` (its help is the doc comment of `Command::Ablate`).
#[derive(Args)]
pub struct Ablate {
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
}

impl Ablate {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let Ablate {
            out,
            seeds,
            variants,
            preset: preset_name,
            data,
            training,
            arch,
        } = self;
        if arch.coupling.is_some() || arch.permutation.is_some() || arch.lu.is_some() {
            return Err(GlowError::Config(
                "the ablation sets coupling, permutation and lu itself; choose arms with \
                 --variants instead"
                    .into(),
            ));
        }
        let (model, mut train) = ablation::cpu_scale(preset(&preset_name)?);
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
        let stop = StopOnSignal::install(|line: &str| eprintln!("{line}"))?;
        let mut current = PathBuf::new();
        let points = ablation::run_ablation(
            &out,
            &variants,
            &seeds,
            &model,
            &train,
            &ctx.device,
            stop.flag(),
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
        drop(stop);
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
        Ok(())
    }
}

/// `glowflow eval` (its help is the doc comment of `Command::Eval`).
#[derive(Args)]
pub struct Eval {
    #[command(flatten)]
    source: TestImages,
    /// Seed of the dequantisation noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluate the first N test images only (default: all of them).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    images: Option<u64>,
    /// Images per batch (default: the run's eval_batch_size, RUN/train.json). Each batch draws
    /// its own noise, so the figure depends on it as on --seed; a smaller batch needs less memory.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: Option<u64>,
    #[command(flatten)]
    rank_timeout: RankTimeout,
}

impl Eval {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let Eval {
            source,
            seed,
            images,
            batch_size,
            rank_timeout,
        } = self;
        let cluster = rank_timeout.launch()?;
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        // On several ranks the test batches are shared out; rank 0 alone reports.
        let evaluated = source
            .load(device)
            .and_then(|(glow, test, run_batch_size)| {
                let batch_size = batch_size.map_or(run_batch_size, count);
                let images = images.map_or(test.len(), count).min(test.len());
                let batches = TestBatches {
                    data: &test,
                    limit: images,
                    batch_size,
                    seed,
                };
                check_evaluation_launch(&cluster, &glow, batches)?;
                let figures = evaluate(&cluster, &glow, batches, device)?;
                Ok((glow, images, batch_size, figures))
            });
        let (glow, images, batch_size, figures) = match evaluated {
            Ok(evaluated) => evaluated,
            Err(error) => {
                // One rank's error ends them all (the others would wait for it).
                cluster.abort(&error);
                return Err(error);
            }
        };
        if !cluster.writes() {
            return Ok(());
        }
        let given = if figures.classes.is_some() {
            ", given each image's label"
        } else {
            ""
        };
        println!(
            "test bits/dim: {:.5} ({images} images in batches of {batch_size}, noise seed \
             {seed}{given})",
            figures.bpd
        );
        if let Some(classes) = figures.classes {
            println!(
                "marginal test bits/dim: {:.5} (p(x) = mean over the {} classes of p(x | class); \
                 the figure to compare with an unconditional model's)",
                classes.marginal_bpd,
                glow.config().n_classes
            );
            println!(
                "classification error: {:.2}% (Bayes' rule: the class of highest p(x | class))",
                100.0 * classes.error
            );
        }
        if let Some(head) = figures.head {
            println!(
                "classifier head: {:.2}% error, cross-entropy {:.4} bits per image",
                100.0 * head.error,
                head.bits
            );
        }
        Ok(())
    }
}

//! The `glowflow` command line: parses arguments, calls the library, prints.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};
use glowflow::io::png_grid::write_png_grid;
use glowflow::likelihood::to_pixels;
use glowflow::{
    load_model, save_model, CouplingKind, GlowConfig, GlowError, HiddenNorm, ImageShape, Padding,
    PermutationKind,
};
use rand::SeedableRng;

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
    /// Write a grid of samples from a saved model.
    Sample {
        /// Model directory (as written by `glowflow new`).
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
    /// Steps of flow per level K.
    #[arg(long)]
    steps: Option<usize>,
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
    seed: Option<u64>,
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
        let mut config = match &self.config {
            Some(path) => GlowConfig::load(path)?,
            None => GlowConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { config.$field = v; } )* };
        }
        set!(
            image,
            levels,
            steps,
            width,
            coupling,
            permutation,
            lu,
            n_bits,
            learn_top,
            n_classes,
            padding,
            hidden_norm,
            seed
        );
        config.validate()?;
        Ok(config)
    }
}

fn run(cli: Cli) -> Result<(), GlowError> {
    let device = Device::flex();
    match cli.command {
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The latent-space commands: encode, decode, manipulate, interpolate, reconstruct and the
//! temperature sweep.

use std::path::PathBuf;

use burn::tensor::Tensor;
use clap::Args;
use glowflow::io::latent_file::{load_latents, model_fingerprint, save_latents};
use glowflow::io::png_grid::{rows_per_image, write_png_grid};
use glowflow::latent::attribute::{training_set_direction, DirectionRequest};
use glowflow::latent::inputs::{image_file_inputs, test_set_inputs, ModelInputs};
use glowflow::latent::{
    along_direction, encode_with_bits_per_dim, interpolate, reconstructions, temperature_sweep,
};
use glowflow::likelihood::to_pixels;
use glowflow::{load_model, GlowError};
use rand::SeedableRng;

use super::args::{at_least_one, parse_finite, TestImages};
use super::Context;

/// The images a command works on: image files, or test-set images by index.
#[derive(Args)]
pub(crate) struct Inputs {
    /// Image files (PNG, JPEG, WebP, TIFF, Netpbm or BMP) of the model's size.
    #[arg(long, num_args = 1..)]
    image: Vec<PathBuf>,
    /// Indices of test-set images (the default when no --image is given: image 0).
    #[arg(long, num_args = 1.., conflicts_with = "image")]
    index: Vec<usize>,
    /// Class label of every --image, for class-conditional models (default: each image's most
    /// likely class, argmax_k p(image | k)).
    #[arg(long)]
    class: Option<usize>,
}

impl Inputs {
    /// The test images `--index` (image 0 when neither option is given) or the `--image` files,
    /// as model inputs.
    fn load(&self, glow: &glowflow::Glow, source: &TestImages) -> Result<ModelInputs, GlowError> {
        if self.image.is_empty() {
            let indices = if self.index.is_empty() {
                vec![0]
            } else {
                self.index.clone()
            };
            return test_set_inputs(glow, &source.test_set(glow)?, &indices);
        }
        image_file_inputs(glow, &self.image, self.class)
    }
}

/// Writes model-space images as a PNG grid with `columns` per row.
pub(crate) fn write_grid(
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

/// `glowflow encode` (its help is the doc comment of `Command::Encode`).
#[derive(Args)]
pub struct Encode {
    #[command(flatten)]
    source: TestImages,
    #[command(flatten)]
    inputs: Inputs,
    /// Latent file to write (.safetensors).
    #[arg(long)]
    out: PathBuf,
}

impl Encode {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let Encode {
            source,
            inputs,
            out,
        } = self;
        let glow = load_model(&source.model, device)?;
        let inputs = inputs.load(&glow, &source)?;
        let classes = inputs.one_hot(&glow, device)?;
        let ModelInputs { x, names, labels } = inputs;
        let (latents, bpd) = encode_with_bits_per_dim(&glow, x, classes.as_ref())?;
        let bpd: Vec<String> = bpd.iter().map(|b| format!("{b:.6}")).collect();
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("inputs".to_string(), names.join(","));
        meta.insert("bits_per_dim_at_bin_centres".to_string(), bpd.join(","));
        if let Some(labels) = &labels {
            let labels: Vec<String> = labels.iter().map(usize::to_string).collect();
            meta.insert("labels".to_string(), labels.join(","));
        }
        save_latents(&out, &glow, &latents, &meta)?;
        for (i, (name, b)) in names.iter().zip(&bpd).enumerate() {
            let class = match &labels {
                Some(labels) => format!(", class {}", labels[i]),
                None => String::new(),
            };
            println!("{name}: {b} bits/dim (pixel values at bin centres{class})");
        }
        println!(
            "wrote the latents of {} images ({} levels) to {}",
            names.len(),
            latents.levels.len(),
            out.display()
        );
        Ok(())
    }
}

/// `glowflow decode` (its help is the doc comment of `Command::Decode`).
#[derive(Args)]
pub struct Decode {
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
}

impl Decode {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let zoom = ctx.zoom;
        let Decode {
            model,
            latents,
            columns,
            out,
        } = self;
        let glow = load_model(&model, device)?;
        let (z, meta) = load_latents(&latents, &glow, device)?;
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
                Some(glow.one_hot(&labels, device)?)
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
        Ok(())
    }
}

/// `glowflow manipulate` (its help is the doc comment of `Command::Manipulate`).
#[derive(Args)]
pub struct Manipulate {
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
        allow_hyphen_values = true,
        value_parser = parse_finite
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
}

impl Manipulate {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let zoom = ctx.zoom;
        let Manipulate {
            source,
            inputs,
            attribute,
            alphas,
            attributes,
            direction_images,
            out,
        } = self;
        let glow = load_model(&source.model, device)?;
        let train = source.train_config()?;
        let request = DirectionRequest {
            attribute: attribute.clone(),
            attributes_file: attributes,
            images: direction_images,
            batch_size: train.eval_batch_size,
        };
        let (found, cache) = training_set_direction(
            &glow,
            &train.data,
            train.pad_to,
            &request,
            &source.model.join("directions"),
            &mut |w| eprintln!("{w}"),
        )?;
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
        let x = inputs.load(&glow, &source)?.x;
        let moved = along_direction(&glow, x, &found.direction, &alphas)?;
        // Row i: image i at every alpha.
        let grid = rows_per_image(moved, alphas.len())?;
        write_grid(&glow, grid, alphas.len(), zoom, &out)?;
        Ok(())
    }
}

/// `glowflow interpolate` (its help is the doc comment of `Command::Interpolate`).
#[derive(Args)]
pub struct Interpolate {
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
}

impl Interpolate {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let zoom = ctx.zoom;
        let Interpolate {
            source,
            a,
            b,
            steps,
            out,
        } = self;
        let (glow, test, _) = source.load(device)?;
        let ends = test_set_inputs(&glow, &test, &[a, b])?;
        let classes = ends.one_hot(&glow, device)?;
        let row = |x: &Tensor<2>, i| x.clone().narrow(0, i, 1);
        let labels = classes.as_ref().map(|y| (row(y, 0), row(y, 1)));
        let path = interpolate(
            &glow,
            ends.x.clone().narrow(0, 0, 1),
            ends.x.narrow(0, 1, 1),
            labels.as_ref().map(|(ya, yb)| (ya, yb)),
            steps,
        )?;
        write_grid(&glow, path, steps, zoom, &out)?;
        Ok(())
    }
}

/// `glowflow reconstruct` (its help is the doc comment of `Command::Reconstruct`).
#[derive(Args)]
pub struct Reconstruct {
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
}

impl Reconstruct {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let zoom = ctx.zoom;
        let Reconstruct {
            source,
            index,
            temperature,
            seed,
            out,
        } = self;
        let (glow, test, _) = source.load(device)?;
        let inputs = test_set_inputs(&glow, &test, &index)?;
        let classes = inputs.one_hot(&glow, device)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let variants = reconstructions(&glow, inputs.x, classes.as_ref(), temperature, &mut rng)?;
        // Row r: the original, then the reconstructions keeping L, L-1, ..., 1 levels.
        let columns = glow.config().levels + 1;
        write_grid(
            &glow,
            rows_per_image(variants, columns)?,
            columns,
            zoom,
            &out,
        )?;
        Ok(())
    }
}

/// `glowflow temperature-sweep` (its help is the doc comment of `Command::TemperatureSweep`).
#[derive(Args)]
pub struct TemperatureSweep {
    /// Run or model directory.
    #[arg(long)]
    model: PathBuf,
    /// Rows (samples per temperature), at least 1.
    #[arg(long, default_value_t = 8, value_parser = at_least_one())]
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
    /// Class of every sample, for class-conditional models.
    #[arg(long)]
    class: Option<usize>,
    /// PNG file to write.
    #[arg(long)]
    out: PathBuf,
}

impl TemperatureSweep {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let device = &ctx.device;
        let zoom = ctx.zoom;
        let TemperatureSweep {
            model,
            n,
            temperatures,
            seed,
            class,
            out,
        } = self;
        let glow = load_model(&model, device)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x = temperature_sweep(&glow, n, &temperatures, class, &mut rng)?;
        // One column per temperature: row i holds sample i at every temperature.
        let grid = rows_per_image(x, temperatures.len())?;
        write_grid(&glow, grid, temperatures.len(), zoom, &out)?;
        Ok(())
    }
}

//! What exact latents are good for (Glow §5): interpolation between real images, samples at
//! several temperatures from the same noise, reconstructions that keep only the top levels, and
//! attribute directions (mean latent with an attribute minus mean latent without it).
//!
//! Everything works on the standardised latents `ε` of [`Glow::encode`], one tensor per level.
//! Functions that produce several variants of a batch of `n` images return them variant by
//! variant (`n` images per variant); [`crate::io::png_grid::rows_per_image`] lays them out one
//! row per image.

use burn::tensor::Tensor;
use rand::Rng;

use crate::data::batches::gather;
use crate::data::dataset::ImageDataset;
use crate::error::{GlowError, Result};
use crate::flow::Condition;
use crate::likelihood::preprocess;
use crate::model::glow::{Glow, Latents};

pub mod attribute;
pub mod inputs;

pub use attribute::{attribute_direction, dataset_direction, DirectionSums};

/// Images `indices` of `data` as model inputs on the model's device, each value at the centre of
/// its bin (no noise); an index out of range is an error.
pub fn images_at_bin_centres(
    model: &Glow,
    data: &ImageDataset,
    indices: &[usize],
) -> Result<Tensor<4>> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        return Err(GlowError::Config(format!(
            "image index {bad} is out of range: the set has {} images",
            data.len()
        )));
    }
    let batch = gather(
        data,
        indices,
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0),
        0,
    );
    let (images, noise, _) = batch.to_tensors(data.shape, 0, &model.device())?;
    Ok(preprocess(
        images,
        noise.full_like(0.5),
        model.config().n_bits,
    ))
}

/// `(1 - t)·a + t·b` level by level.
fn lerp(a: &Latents, b: &Latents, t: f64) -> Latents {
    Latents {
        levels: a
            .levels
            .iter()
            .zip(&b.levels)
            .map(|(x, y)| x.clone() * (1.0 - t) + y.clone() * t)
            .collect(),
    }
}

fn single_image(x: &Tensor<4>, what: &str) -> Result<()> {
    if x.dims()[0] != 1 {
        return Err(GlowError::shape(
            what,
            format!(
                "expected one image ([1, C, H, W]), got a batch of {}",
                x.dims()[0]
            ),
        ));
    }
    Ok(())
}

/// The one-hot labels `[1, K]` of the two ends of an interpolation, for a class-conditional
/// model.
pub type EndLabels<'a> = Option<(&'a Tensor<2>, &'a Tensor<2>)>;

/// Decodes `steps` points evenly spaced on the straight line between the latents of the
/// preprocessed images `a` and `b` (each `[1, C, H, W]`); the first and last are `a` and `b`.
/// A class-conditional model takes the labels of both ends (`labels`): each image is encoded
/// under its own, and the label moves along the line with the latents,
/// `y(t) = (1 - t)·y_a + t·y_b` (the class prior is linear in the one-hot label), so that the
/// ends are still the images.
pub fn interpolate(
    model: &Glow,
    a: Tensor<4>,
    b: Tensor<4>,
    labels: EndLabels,
    steps: usize,
) -> Result<Tensor<4>> {
    single_image(&a, "interpolate: first image")?;
    single_image(&b, "interpolate: second image")?;
    let (ya, yb) = labels.unzip();
    let (za, _) = model.encode(a, ya)?;
    let (zb, _) = model.encode(b, yb)?;
    interpolate_latents(model, &za, &zb, labels, steps)
}

/// Decodes `steps` points evenly spaced on the straight line from the latents `za` to `zb` (one
/// image each, with their `labels` for a class-conditional model, as in [`interpolate`]), `za`
/// and `zb` included.
pub fn interpolate_latents(
    model: &Glow,
    za: &Latents,
    zb: &Latents,
    labels: EndLabels,
    steps: usize,
) -> Result<Tensor<4>> {
    if steps < 2 {
        return Err(GlowError::Config(format!(
            "interpolation needs at least 2 steps (the two endpoints), got {steps}"
        )));
    }
    let points: Vec<f64> = (0..steps).map(|i| i as f64 / (steps - 1) as f64).collect();
    let path: Vec<Latents> = points.iter().map(|&t| lerp(za, zb, t)).collect();
    let classes = labels.map(|(ya, yb)| {
        let rows = points
            .iter()
            .map(|&t| ya.clone() * (1.0 - t) + yb.clone() * t)
            .collect();
        Tensor::cat(rows, 0)
    });
    Ok(model.decode(&Latents::join(path), classes.as_ref())?.0)
}

/// The latents of the preprocessed images `x` and their bits per dimension (the log-density of
/// `x` itself: at bin centres for images from [`images_at_bin_centres`], no dequantisation noise).
pub fn encode_with_bits_per_dim(
    model: &Glow,
    x: Tensor<4>,
    classes: Option<&Tensor<2>>,
) -> Result<(Latents, Vec<f64>)> {
    let (latents, log_det) = model.encode(x, classes)?;
    let log_prob = latents.log_standard_normal() + log_det;
    let config = model.config();
    let bpd = crate::likelihood::bits_per_dim(log_prob, config.image.dims(), config.n_bits);
    Ok((latents, crate::tensor_ops::to_f64_vec(bpd)))
}

/// Samples from the same noise at each temperature: `n` images per temperature, temperature by
/// temperature (the `i`-th image of every temperature shares its noise). A class-conditional
/// model samples every image of `class`; an unconditional one takes no class.
pub fn temperature_sweep(
    model: &Glow,
    n: usize,
    temperatures: &[f64],
    class: Option<usize>,
    rng: &mut impl Rng,
) -> Result<Tensor<4>> {
    if let Some(t) = temperatures.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
        return Err(GlowError::Config(format!(
            "temperature {t} must be a finite number >= 0"
        )));
    }
    if n == 0 || temperatures.is_empty() {
        return Err(GlowError::Config(format!(
            "a temperature sweep needs at least one sample and one temperature (got {n} samples \
             and {} temperatures)",
            temperatures.len()
        )));
    }
    let device = model.device();
    let classes = match (model.config().n_classes, class) {
        (k, None) if k > 0 => {
            return Err(GlowError::Label(format!(
                "the model is class-conditional ({k} classes): give the class to sample (--class)"
            )))
        }
        (_, class) => class
            .map(|k| model.one_hot(&vec![k; n * temperatures.len()], &device))
            .transpose()?,
    };
    let noise = model.random_latents(n, 1.0, rng, &device);
    let scaled = temperatures
        .iter()
        .map(|&t| Latents {
            levels: noise.levels.iter().map(|e| e.clone() * t).collect(),
        })
        .collect();
    Ok(model.decode(&Latents::join(scaled), classes.as_ref())?.0)
}

/// Encodes `x` (with its one-hot `classes`, for a class-conditional model) and decodes it again
/// keeping only the latents of the top `keep` levels; the latents of the levels below are
/// redrawn at `temperature`. With `keep` equal to the number of levels this is
/// `decode(encode(x))`.
pub fn reconstruct_keeping_top(
    model: &Glow,
    x: Tensor<4>,
    classes: Condition,
    keep: usize,
    temperature: f64,
    rng: &mut impl Rng,
) -> Result<Tensor<4>> {
    let (latents, _) = model.encode(x, classes)?;
    let mixed = keep_top_levels(model, latents, keep, temperature, rng)?;
    Ok(model.decode(&mixed, classes)?.0)
}

/// `latents` with the levels below the top `keep` redrawn at `temperature` from `rng` (what
/// [`reconstruct_keeping_top`] decodes).
pub fn keep_top_levels(
    model: &Glow,
    latents: Latents,
    keep: usize,
    temperature: f64,
    rng: &mut impl Rng,
) -> Result<Latents> {
    let levels = model.config().levels;
    if keep == 0 || keep > levels {
        return Err(GlowError::Config(format!(
            "keep = {keep} levels, but the model has {levels}; keep between 1 and {levels}"
        )));
    }
    let n = latents.levels[0].dims()[0];
    let fresh = model.random_latents(n, temperature, rng, &model.device());
    let redrawn = levels - keep;
    Ok(Latents {
        levels: latents
            .levels
            .into_iter()
            .zip(fresh.levels)
            .enumerate()
            .map(|(l, (kept, new))| if l < redrawn { new } else { kept })
            .collect(),
    })
}

/// The images `x` (unconditional model) moved along `direction` by each of `alphas` and
/// decoded: `n` images per alpha, alpha by alpha (`α = 0` gives `decode(encode(x))`).
pub fn along_direction(
    model: &Glow,
    x: Tensor<4>,
    direction: &Latents,
    alphas: &[f64],
) -> Result<Tensor<4>> {
    if let Some(a) = alphas.iter().find(|a| !a.is_finite()) {
        return Err(GlowError::Config(format!(
            "alpha {a} must be a finite number"
        )));
    }
    let (latents, _) = model.encode(x, None)?;
    let moved = alphas
        .iter()
        .map(|&alpha| move_along(&latents, direction, alpha))
        .collect();
    Ok(model.decode(&Latents::join(moved), None)?.0)
}

/// The images `x` followed by their reconstructions keeping the top `L`, `L - 1`, ..., 1 levels
/// ([`reconstruct_keeping_top`], the lower levels redrawn at `temperature` from `rng` in that
/// order): `L + 1` variants of the `n` images, variant by variant.
pub fn reconstructions(
    model: &Glow,
    x: Tensor<4>,
    classes: Condition,
    temperature: f64,
    rng: &mut impl Rng,
) -> Result<Tensor<4>> {
    let mut variants = vec![x.clone()];
    for keep in (1..=model.config().levels).rev() {
        variants.push(reconstruct_keeping_top(
            model,
            x.clone(),
            classes,
            keep,
            temperature,
            rng,
        )?);
    }
    Ok(Tensor::cat(variants, 0))
}

/// `latents + α · direction` (the direction has a batch of one and is broadcast).
pub fn move_along(latents: &Latents, direction: &Latents, alpha: f64) -> Latents {
    Latents {
        levels: latents
            .levels
            .iter()
            .zip(&direction.levels)
            .map(|(e, d)| e.clone() + d.clone() * alpha)
            .collect(),
    }
}

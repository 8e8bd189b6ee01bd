//! Attribute directions (Glow §5, Figure 5): the mean latent of the images that have an
//! attribute minus the mean latent of those that do not,
//!
//! ```text
//! d = (1/|A|) Σ_{i ∈ A} ε(x_i)  -  (1/|Ā|) Σ_{i ∉ A} ε(x_i)
//! ```
//!
//! level by level. Moving an image's latents along `d` (`ε + α·d`) and decoding adds (α > 0) or
//! removes (α < 0) the attribute. Which images have an attribute comes from a class label
//! (each class of a labelled dataset is an attribute) or from CelebA's attribute file.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::celeba::Attributes;
use crate::data::dataset::{ImageDataset, Split};
use crate::data::source::{load_split, DataSource};
use crate::error::{GlowError, Result};
use crate::model::glow::{Glow, Latents};

use super::images_at_bin_centres;

/// Running sums of the latents with and without an attribute, batch by batch.
#[derive(Debug, Default)]
pub struct DirectionSums {
    with: Option<Vec<Tensor<4>>>,
    without: Option<Vec<Tensor<4>>>,
    /// Images with the attribute so far.
    pub n_with: usize,
    /// Images without it so far.
    pub n_without: usize,
}

/// `Σ_i e[i]` over the batch entries `ids`, keeping the batch dimension (size 1).
fn sum_of(e: &Tensor<4>, ids: &[usize], device: &Device) -> Tensor<4> {
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(ids.clone(), [ids.len()]), device);
    e.clone().select(0, index).sum_dim(0)
}

fn accumulate(total: &mut Option<Vec<Tensor<4>>>, latents: &Latents, ids: &[usize]) {
    if ids.is_empty() {
        return;
    }
    let device = latents.levels[0].device();
    let sums: Vec<Tensor<4>> = latents
        .levels
        .iter()
        .map(|e| sum_of(e, ids, &device))
        .collect();
    *total = Some(match total.take() {
        None => sums,
        Some(old) => old.into_iter().zip(sums).map(|(a, b)| a + b).collect(),
    });
}

impl DirectionSums {
    /// Adds a batch of latents, `flags[i]` saying whether image `i` has the attribute.
    pub fn add(&mut self, latents: &Latents, flags: &[bool]) -> Result<()> {
        let n = latents.levels[0].dims()[0];
        if flags.len() != n {
            return Err(GlowError::shape(
                "attribute direction",
                format!("{} flags for {n} images", flags.len()),
            ));
        }
        let with: Vec<usize> = (0..n).filter(|&i| flags[i]).collect();
        let without: Vec<usize> = (0..n).filter(|&i| !flags[i]).collect();
        accumulate(&mut self.with, latents, &with);
        accumulate(&mut self.without, latents, &without);
        self.n_with += with.len();
        self.n_without += without.len();
        Ok(())
    }

    /// The direction: mean with minus mean without, each level `[1, C_l, H_l, W_l]`.
    pub fn direction(&self) -> Result<Latents> {
        match (&self.with, &self.without) {
            (Some(with), Some(without)) => Ok(Latents {
                levels: with
                    .iter()
                    .zip(without)
                    .map(|(a, b)| {
                        a.clone() / self.n_with as f64 - b.clone() / self.n_without as f64
                    })
                    .collect(),
            }),
            _ => Err(GlowError::Label(format!(
                "an attribute direction needs images with and without the attribute ({} with, {} \
                 without); use more images or another attribute",
                self.n_with, self.n_without
            ))),
        }
    }
}

/// The attribute direction of one batch of latents with one flag per image.
pub fn attribute_direction(latents: &Latents, has_attribute: &[bool]) -> Result<Latents> {
    let mut sums = DirectionSums::default();
    sums.add(latents, has_attribute)?;
    sums.direction()
}

/// The attribute direction over the first `flags.len()` images of `data` (encoded at the centre
/// of their pixel bins, `batch_size` at a time); returns it with the sums' counts.
pub fn dataset_direction(
    model: &Glow,
    data: &ImageDataset,
    flags: &[bool],
    batch_size: usize,
) -> Result<(Latents, DirectionSums)> {
    if model.config().n_classes > 0 {
        return Err(GlowError::Label(
            "attribute directions of class-conditional models are not supported; the latents \
             of such a model depend on the label"
                .into(),
        ));
    }
    let mut sums = DirectionSums::default();
    for start in (0..flags.len()).step_by(batch_size.max(1)) {
        let end = (start + batch_size.max(1)).min(flags.len());
        let indices: Vec<usize> = (start..end).collect();
        let x = images_at_bin_centres(model, data, &indices)?;
        let (latents, _) = model.encode(x, None)?;
        sums.add(&latents, &flags[start..end])?;
    }
    let direction = sums.direction()?;
    Ok((direction, sums))
}

/// Which images of a labelled dataset belong to class `attribute`, given by name (any case) or
/// number; the error lists the valid names.
pub fn class_flags(labels: &[usize], names: &[String], attribute: &str) -> Result<Vec<bool>> {
    let class = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(attribute))
        .or_else(|| attribute.parse::<usize>().ok().filter(|&k| k < names.len()))
        .ok_or_else(|| {
            GlowError::Label(format!(
                "the dataset has no class `{attribute}`; its classes are {} (or their numbers \
                 0..{})",
                names.join(", "),
                names.len()
            ))
        })?;
    Ok(labels.iter().map(|&l| l == class).collect())
}

/// Whether each image file has CelebA attribute `attribute` (files are looked up by name).
pub fn celeba_flags(
    attributes: &Attributes,
    files: &[PathBuf],
    attribute: &str,
) -> Result<Vec<bool>> {
    attributes.index(attribute)?;
    files
        .iter()
        .map(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            attributes.has(name, attribute)
        })
        .collect()
}

/// An attribute direction read from its cache file, or computed and written there.
#[derive(Debug)]
pub struct CachedDirection {
    /// The direction.
    pub direction: Latents,
    /// Whether it was read from the cache.
    pub from_cache: bool,
    /// Images with the attribute it was computed from.
    pub n_with: usize,
    /// Images without it.
    pub n_without: usize,
}

/// The direction cached at `path` if that file was written for this model's weights and the same
/// `key` (attribute, dataset, number of images...); otherwise `compute`s it and writes the cache.
/// An unreadable or stale cache file is recomputed, never trusted.
pub fn cached_direction(
    path: &std::path::Path,
    model: &Glow,
    key: &std::collections::BTreeMap<String, String>,
    compute: impl FnOnce() -> Result<(Latents, DirectionSums)>,
) -> Result<CachedDirection> {
    use crate::io::latent_file::{load_latents, model_fingerprint, save_latents};
    let count = |meta: &std::collections::BTreeMap<String, String>, name: &str| {
        meta.get(name).and_then(|v| v.parse::<usize>().ok())
    };
    if let Ok((direction, meta)) = load_latents(path, model, &model.device()) {
        let fresh = meta.get("fingerprint") == Some(&model_fingerprint(model))
            && key.iter().all(|(k, v)| meta.get(k) == Some(v));
        if let (true, Some(n_with), Some(n_without)) =
            (fresh, count(&meta, "n_with"), count(&meta, "n_without"))
        {
            return Ok(CachedDirection {
                direction,
                from_cache: true,
                n_with,
                n_without,
            });
        }
    }
    let (direction, sums) = compute()?;
    let mut meta = key.clone();
    meta.insert("n_with".into(), sums.n_with.to_string());
    meta.insert("n_without".into(), sums.n_without.to_string());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| GlowError::io(dir, e))?;
    }
    save_latents(path, model, &direction, &meta)?;
    Ok(CachedDirection {
        direction,
        from_cache: false,
        n_with: sums.n_with,
        n_without: sums.n_without,
    })
}

/// Which attribute direction to find for a trained model, and from what.
#[derive(Debug, Clone)]
pub struct DirectionRequest {
    /// A class name or number of a labelled dataset, or a column of `attributes_file`.
    pub attribute: String,
    /// CelebA's `list_attr_celeba.txt` naming the attributes of a folder dataset's images.
    pub attributes_file: Option<PathBuf>,
    /// Training images to average over (0 = all).
    pub images: usize,
    /// Images encoded at a time.
    pub batch_size: usize,
}

/// The direction of `request.attribute` for `model` over the training set of `source` (padded
/// to `pad_to`, as the model was trained), cached in `cache_dir` (one file per attribute and
/// image count, keyed as [`cached_direction`] says); returns it with the cache file's path.
pub fn training_set_direction(
    model: &Glow,
    source: &DataSource,
    pad_to: usize,
    request: &DirectionRequest,
    cache_dir: &std::path::Path,
    warn: &mut dyn FnMut(String),
) -> Result<(CachedDirection, PathBuf)> {
    let (data, files) = load_split(model.config(), source, pad_to, Split::Train, warn)?;
    let count = match request.images {
        0 => data.len(),
        n => n.min(data.len()),
    };
    let attribute = request.attribute.as_str();
    let flags = match &request.attributes_file {
        Some(path) => {
            let table = crate::data::celeba::read_celeba_attributes(path)?;
            let files = files.ok_or_else(|| {
                GlowError::Config(
                    "an attribute file needs a folder dataset (it names the image files)".into(),
                )
            })?;
            celeba_flags(&table, &files[..count], attribute)?
        }
        None => {
            let labels = data.labels.as_ref().ok_or_else(|| {
                GlowError::Label(
                    "the dataset has no labels; pass CelebA's list_attr_celeba.txt (--attributes) \
                     to name attributes"
                        .into(),
                )
            })?;
            class_flags(&labels[..count], &source.class_names()?, attribute)?
        }
    };
    let mut key = std::collections::BTreeMap::new();
    key.insert("attribute".to_string(), attribute.to_string());
    key.insert(
        "dataset".to_string(),
        serde_json::to_string(source).expect("a data source serialises"),
    );
    key.insert("images".to_string(), count.to_string());
    if let Some(path) = &request.attributes_file {
        key.insert("attributes_file".to_string(), path.display().to_string());
    }
    let file_safe: String = attribute
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let cache = cache_dir.join(format!("{file_safe}-{count}.safetensors"));
    let found = cached_direction(&cache, model, &key, || {
        dataset_direction(model, &data, &flags, request.batch_size)
    })?;
    Ok((found, cache))
}

//! Test-set bits per dimension: every image (or the first `limit`), in batches, with seeded
//! dequantisation noise so that the figure is reproducible.

use burn::tensor::Device;

use crate::data::batches::{gather, stream_rng, EVAL_STREAM};
use crate::data::dataset::ImageDataset;
use crate::error::{GlowError, Result};
use crate::model::glow::Glow;

/// Mean bits/dim of `model` over the first `limit` images of `data` (all if `limit` is 0).
pub fn evaluate_bpd(
    model: &Glow,
    data: &ImageDataset,
    limit: usize,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<f64> {
    let expected = model.config().image;
    if data.shape != [expected.channels, expected.height, expected.width] {
        return Err(GlowError::shape(
            "evaluation data",
            format!(
                "images are {:?} (C, H, W) but the model was built for {}x{}x{}",
                data.shape, expected.channels, expected.height, expected.width
            ),
        ));
    }
    let total = if limit == 0 {
        data.len()
    } else {
        limit.min(data.len())
    };
    if total == 0 {
        return Err(GlowError::Config("the evaluation set has no images".into()));
    }
    let mut sum = 0.0;
    for (index, start) in (0..total).step_by(batch_size.max(1)).enumerate() {
        let indices: Vec<usize> = (start..(start + batch_size).min(total)).collect();
        let mut rng = stream_rng(seed, EVAL_STREAM, index as u64);
        let batch = gather(data, &indices, &mut rng, index as u64);
        let (images, noise, classes) =
            batch.to_tensors(data.shape, model.config().n_classes, device)?;
        let bpd = model.bits_per_dim(images, noise, classes.as_ref())?;
        sum += bpd.sum().into_scalar::<f64>();
    }
    Ok(sum / total as f64)
}

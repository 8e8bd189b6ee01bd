//! Test-set bits per dimension: every image (or the first `limit`), in batches, with seeded
//! dequantisation noise so that the figure is reproducible. On several ranks the batches are
//! shared out and their sums added in batch order, which gives one process's figure exactly.

use burn::tensor::Device;

use crate::cluster::Cluster;
use crate::data::batches::{gather, stream_rng, EVAL_STREAM};
use crate::data::dataset::ImageDataset;
use crate::error::{GlowError, Result};
use crate::model::glow::Glow;

/// Mean bits/dim of `model` over the first `limit` images of `data` (all if `limit` is 0); rank
/// `r` of `cluster` evaluates the batches `r, r + P, r + 2P, …`.
pub fn evaluate_bpd(
    cluster: &Cluster,
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
    let batch_size = batch_size.max(1);
    let batches = total.div_ceil(batch_size);
    let mut mine: Vec<f64> = Vec::new();
    for index in (cluster.rank()..batches).step_by(cluster.size()) {
        let start = index * batch_size;
        let indices: Vec<usize> = (start..(start + batch_size).min(total)).collect();
        let mut rng = stream_rng(seed, EVAL_STREAM, index as u64);
        let batch = gather(data, &indices, &mut rng, index as u64);
        let (images, noise, classes) =
            batch.to_tensors(data.shape, model.config().n_classes, device)?;
        let bpd = model.bits_per_dim(images, noise, classes.as_ref())?;
        mine.push(bpd.sum().into_scalar::<f64>());
    }
    // Batch `i` is the `i / P`-th of rank `i % P`.
    let sums = cluster.all_gather_f64("evaluation", &mine)?;
    let sum = (0..batches)
        .map(|index| sums[index % cluster.size()][index / cluster.size()])
        .fold(0.0, |sum, batch| sum + batch);
    Ok(sum / total as f64)
}

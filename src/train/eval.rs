//! Test-set figures: every image (or the first `limit`), in batches, with seeded dequantisation
//! noise so that each figure is reproducible. On several ranks the batches are shared out and
//! their sums added in batch order, which gives one process's figures exactly.
//!
//! Beside the mean bits/dim, a class-conditional model gets two figures from `log p(x | k)` of
//! every class `k` ([`Glow::class_scores`]), with the uniform label prior `p(k) = 1/K`:
//!
//! ```text
//! marginal   log p(x) = log Σ_k p(k) p(x | k) = logsumexp_k log p(x | k) - log K
//! Bayes      ŷ(x) = argmax_k p(k | x) = argmax_k log p(x | k)
//! ```
//!
//! The marginal bits/dim is the one to compare with an unconditional model's: the conditional
//! figure is given the label, which an unconditional model is not. A model with a classifier
//! head also gets the head's cross-entropy and error ([`HeadFigures`]), from the same pass.

use burn::tensor::{Device, Tensor};

use crate::cluster::Cluster;
use crate::data::batches::{gather, stream_rng, EVAL_STREAM};
use crate::data::dataset::ImageDataset;
use crate::error::{GlowError, Result};
use crate::likelihood::{argmax_and_log_sum_exp, classifier_row};
use crate::model::glow::Glow;
use crate::tensor_ops::{from_f64, to_f64_vec};

/// What a class-conditional model's test set gives beside its bits/dim (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassFigures {
    /// Mean bits/dim of the marginal `p(x) = (1/K) Σ_k p(x | k)`.
    pub marginal_bpd: f64,
    /// Fraction of the images whose label is not `argmax_k log p(x | k)` (Bayes' rule).
    pub error: f64,
}

/// A classifier head's figures over a set of images, as openai/glow logs them under
/// `--weight_y`: the mean cross-entropy `bits_y` and the error rate of its largest logit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadFigures {
    /// Mean cross-entropy of the head's softmax at the labels, in bits per image.
    pub bits: f64,
    /// Fraction of the images whose largest logit (the first of equal ones) is not the label.
    pub error: f64,
}

/// The test figures of `glowflow eval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestFigures {
    /// Mean bits/dim of `log p(x)`, or of `log p(x | y)` at each image's label for a
    /// class-conditional model.
    pub bpd: f64,
    /// The class figures, for a class-conditional model.
    pub classes: Option<ClassFigures>,
    /// The classifier head's figures, for a model with a head.
    pub head: Option<HeadFigures>,
}

/// The images an evaluation reads and how: the first `limit` images of `data` (all if `limit` is
/// 0) in batches of `batch_size`, batch `b` dequantised with the noise of evaluation stream `b`
/// of `seed`.
#[derive(Debug, Clone, Copy)]
pub struct TestBatches<'a> {
    /// The test set.
    pub data: &'a ImageDataset,
    /// How many of its first images (0: all).
    pub limit: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of the dequantisation noise.
    pub seed: u64,
}

/// Mean bits/dim of `model` over `test`; rank `r` of `cluster` evaluates the batches
/// `r, r + P, r + 2P, …`.
pub fn evaluate_bpd(
    cluster: &Cluster,
    model: &Glow,
    test: TestBatches,
    device: &Device,
) -> Result<f64> {
    let means = batch_means(
        cluster,
        model,
        test,
        device,
        1,
        |images, noise, classes, _| {
            let bpd = model.bits_per_dim(images, noise, classes.as_ref())?;
            Ok(vec![bpd.sum().into_scalar::<f64>()])
        },
    )?;
    Ok(means[0])
}

/// [`evaluate_bpd`], and for a class-conditional model its [`ClassFigures`] from the same pass.
pub fn evaluate(
    cluster: &Cluster,
    model: &Glow,
    test: TestBatches,
    device: &Device,
) -> Result<TestFigures> {
    let k = model.config().n_classes;
    if k == 0 {
        let bpd = evaluate_bpd(cluster, model, test, device)?;
        return Ok(TestFigures {
            bpd,
            classes: None,
            head: None,
        });
    }
    let log_k = (k as f64).ln();
    let has_head = model.config().class_head;
    let means = batch_means(
        cluster,
        model,
        test,
        device,
        if has_head { 5 } else { 3 },
        |images, noise, _, labels| {
            // `Batch::to_tensors` has refused a class-conditional model's batch without labels.
            let labels = labels.expect("a class-conditional model's batches have labels");
            let n = labels.len();
            let scores = model.class_scores(model.preprocess(images, noise))?;
            let per_class = scores.log_prob;
            let mut conditional = Vec::with_capacity(n);
            let mut marginal = Vec::with_capacity(n);
            let mut errors = 0.0;
            for (row, &label) in per_class.chunks(k).zip(labels) {
                let (best, log_sum_exp) = argmax_and_log_sum_exp(row);
                conditional.push(row[label]);
                marginal.push(log_sum_exp - log_k);
                errors += f64::from(u8::from(best != label));
            }
            let bits = |log_prob: Vec<f64>| {
                model
                    .to_bits_per_dim(from_f64(log_prob, [n], device))
                    .sum()
                    .into_scalar::<f64>()
            };
            let mut sums = vec![bits(conditional), bits(marginal), errors];
            if let Some(logits) = scores.head_logits {
                let head = to_f64_vec(logits)
                    .chunks(k)
                    .zip(labels)
                    .map(|(row, &label)| classifier_row(row, label))
                    .fold([0.0; 2], |sum, row| [sum[0] + row[0], sum[1] + row[1]]);
                sums.extend(head);
            }
            Ok(sums)
        },
    )?;
    Ok(TestFigures {
        bpd: means[0],
        classes: Some(ClassFigures {
            marginal_bpd: means[1],
            error: means[2],
        }),
        head: has_head.then(|| HeadFigures {
            bits: means[3],
            error: means[4],
        }),
    })
}

/// The means over the evaluated images of `figures` sums that `per_batch(images, noise,
/// one-hot classes, labels)` gives for each batch.
fn batch_means(
    cluster: &Cluster,
    model: &Glow,
    test: TestBatches,
    device: &Device,
    figures: usize,
    per_batch: impl Fn(Tensor<4>, Tensor<4>, Option<Tensor<2>>, Option<&[usize]>) -> Result<Vec<f64>>,
) -> Result<Vec<f64>> {
    let TestBatches {
        data,
        limit,
        batch_size,
        seed,
    } = test;
    let expected = model.config().image;
    if data.shape != expected.chw() {
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
        mine.extend(per_batch(images, noise, classes, batch.labels.as_deref())?);
    }
    // Batch `i` is the `i / P`-th of rank `i % P`, its sums `figures` values from there.
    let sums = cluster.all_gather_f64("evaluation", &mine)?;
    Ok((0..figures)
        .map(|figure| {
            (0..batches)
                .map(|index| {
                    sums[index % cluster.size()][index / cluster.size() * figures + figure]
                })
                .fold(0.0, |sum, batch| sum + batch)
                / total as f64
        })
        .collect())
}

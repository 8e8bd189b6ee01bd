//! The multi-scale Glow model (Glow §3, Figure 2): a composition of invertible maps and priors.
//!
//! ```text
//!  x ─► squeeze ─► K × step ─► split ─► ε₁           level 1
//!                               │
//!                               ▼ z_a
//!       squeeze ─► K × step ─► split ─► ε₂           level 2
//!                               │
//!                              ...
//!       squeeze ─► K × step ─► top prior ─► ε_L       level L (no split)
//! ```
//!
//! `encode` maps an image `x` to its standardised latents `ε = (ε₁, ..., ε_L)` (each `ε_l` is
//! standard normal under the model) and `log|det ∂ε/∂x|`, the sum of every step's log-det and
//! `-Σ log σ` of every prior. The exact log-density is then
//!
//! ```text
//! log p(x) = Σ_l log N(ε_l; 0, I) + log|det ∂ε/∂x|
//! ```
//!
//! `decode` is the exact inverse. Sampling at temperature `T` decodes `ε ~ N(0, T² I)`, which
//! scales every prior's standard deviation by `T`; `T = 0` decodes every prior's mean.

use std::ops::Range;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::Rng;

use super::config::{GlowConfig, HiddenNorm};
use super::params::{flat_params, with_flat_params};
use super::walk::{walk_forward, walk_inverse, GlowMap, Walked};
use crate::device::shards_on;
use crate::error::{GlowError, Result};
use crate::flow::actnorm::ActNorm;
use crate::flow::coupling::{Coupling, CouplingOptions};
use crate::flow::permute::Permutation;
use crate::flow::prior::{one_hot, TopPrior};
use crate::flow::split::Split;
use crate::flow::step::FlowStep;
use crate::flow::{Condition, InvertibleMap};
use crate::likelihood::{self, argmax_and_log_sum_exp};
use crate::parallel::{join_rows, map_ranges, rows, split, DEFAULT_SHARDS};
use crate::tensor_ops::{random_normal, sum_per_sample, to_f64_vec};

/// One level: K steps of flow on the squeezed input, then (except at the top) a split.
#[derive(Module, Debug)]
pub struct Level {
    /// The steps of flow.
    pub steps: Vec<FlowStep>,
    /// The factor-out, absent on the last level.
    pub split: Option<Split>,
}

/// The standardised latents of a batch: `ε` of each split in level order, then the top's.
#[derive(Debug, Clone)]
pub struct Latents {
    /// One `[N, C_l, H_l, W_l]` tensor per level.
    pub levels: Vec<Tensor<4>>,
}

impl Latents {
    /// `Σ_l log N(ε_l; 0, I)` per sample.
    pub fn log_standard_normal(&self) -> Tensor<1> {
        let half_log_two_pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        self.levels
            .iter()
            .map(|eps| sum_per_sample(eps.clone().square() * -0.5 - half_log_two_pi))
            .reduce(|a, b| a + b)
            .expect("a model has at least one level")
    }

    /// The samples `range` of every level.
    pub fn rows(&self, range: &Range<usize>) -> Latents {
        Latents {
            levels: self.levels.iter().map(|eps| rows(eps, range)).collect(),
        }
    }

    /// Batches of latents joined along the batch dimension, level by level.
    pub fn join(parts: Vec<Latents>) -> Latents {
        Latents {
            levels: transpose(parts.into_iter().map(|p| p.levels).collect())
                .into_iter()
                .map(join_rows)
                .collect(),
        }
    }
}

/// A class-conditional model's scores of the classes of a batch ([`Glow::class_scores`]).
#[derive(Debug, Clone)]
pub struct ClassScores {
    /// `log p(x | y = k)` (nats) of each image under each class, `[N, n_classes]` row-major.
    pub log_prob: Vec<f64>,
    /// The classifier head's logits, `[N, n_classes]`, where the model has a head.
    pub head_logits: Option<Tensor<2>>,
}

/// The classes a class-conditional model gives a batch ([`Glow::predicted_classes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictedClasses {
    /// Bayes' rule, `argmax_k log p(x | k)`, per image.
    pub bayes: Vec<usize>,
    /// The classifier head's largest logit per image, where the model has a head.
    pub head: Option<Vec<usize>>,
}

/// A batch of `n` must hold at least one image: an empty batch has no latents to encode or
/// decode, and a mean over it would be NaN.
fn check_not_empty(n: usize, entry: &str) -> Result<()> {
    if n == 0 {
        return Err(GlowError::shape(
            entry,
            "the batch holds 0 images; pass at least one",
        ));
    }
    Ok(())
}

/// Fails when `x` (`[N, ...]`) holds a NaN or an infinity, naming the samples that do: the flow
/// would carry them into every output and return NaNs as if they were results.
fn check_finite<const D: usize>(x: &Tensor<D>, entry: &str, what: &str) -> Result<()> {
    let n = x.dims()[0];
    let finite_rows = x.clone().is_finite().reshape([n as i32, -1]).all_dim(1);
    let bad: Vec<usize> = finite_rows
        .int()
        .into_data()
        .iter::<i64>()
        .enumerate()
        .filter(|&(_, finite)| finite == 0)
        .map(|(i, _)| i)
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = bad.iter().take(5).map(usize::to_string).collect();
    Err(GlowError::value(
        entry,
        format!(
            "{what} of {} of the {n} samples hold NaN or infinite values (samples {}{}); pass \
             finite values",
            bad.len(),
            shown.join(", "),
            if bad.len() > shown.len() { ", ..." } else { "" }
        ),
    ))
}

/// `parts[i][l]` regrouped as `[l][i]` (every part has the same length).
fn transpose<T>(parts: Vec<Vec<T>>) -> Vec<Vec<T>> {
    let len = parts.first().map_or(0, Vec::len);
    let mut out: Vec<Vec<T>> = (0..len).map(|_| Vec::with_capacity(parts.len())).collect();
    for part in parts {
        for (slot, item) in out.iter_mut().zip(part) {
            slot.push(item);
        }
    }
    out
}

/// A Glow model.
#[derive(Module, Debug)]
pub struct Glow {
    /// The levels, from the image side to the top.
    pub levels: Vec<Level>,
    /// The prior on the top level's latent.
    pub top: TopPrior,
    /// The architecture this model was built from.
    #[module(skip)]
    pub config: GlowConfig,
    /// Concurrent shards that encode and decode cut a batch into on the CPU
    /// ([`Glow::with_shards`]; a batch on a GPU is one shard).
    #[module(skip)]
    pub shards: usize,
}

impl Glow {
    /// Builds the model described by a validated config, drawing initial weights from `rng`.
    pub(crate) fn new(config: GlowConfig, rng: &mut impl Rng, device: &Device) -> Result<Self> {
        let options = CouplingOptions {
            kind: config.coupling,
            width: config.width,
            padding: config.padding,
            hidden_actnorm: (config.hidden_norm == HiddenNorm::Actnorm)
                .then_some(config.actnorm_logscale_factor),
            zero_logscale_factor: config.zero_logscale_factor,
            scale_floor: config.scale_floor,
        };
        let shapes = config.level_shapes();
        let mut levels = Vec::with_capacity(shapes.len());
        for (index, &[c, _, _]) in shapes.iter().enumerate() {
            let mut steps = Vec::with_capacity(config.steps);
            for _ in 0..config.steps {
                steps.push(FlowStep {
                    actnorm: ActNorm::with_scale(
                        c,
                        config.actnorm_scale,
                        config.actnorm_logscale_factor,
                        device,
                    ),
                    permutation: Permutation::new(config.permutation, config.lu, c, rng, device),
                    coupling: Coupling::new(c, &options, rng, device)?
                        .with_output_padding(config.zero_padding(), device),
                });
            }
            let split = (index + 1 < shapes.len()).then(|| {
                Split::new(
                    c,
                    config.zero_padding(),
                    config.zero_logscale_factor,
                    device,
                )
            });
            levels.push(Level { steps, split });
        }
        let top_shape = *shapes
            .last()
            .expect("validated configs have at least one level");
        let top = TopPrior::new(
            top_shape,
            config.learn_top,
            config.n_classes,
            config.zero_padding(),
            config.zero_logscale_factor,
            device,
        );
        let top = if config.class_head {
            top.with_classifier(config.n_classes, config.zero_logscale_factor, device)
        } else {
            top
        };
        Ok(Glow {
            levels,
            top,
            config,
            shards: DEFAULT_SHARDS,
        })
    }

    /// The model with encode and decode (and so log-likelihoods, sampling and every latent tool)
    /// cutting a batch into `shards` concurrent shards ([`crate::parallel::split`]; at least 1).
    /// The shard count, not the number of threads that run the shards, fixes the rounding of
    /// the results, so the default ([`DEFAULT_SHARDS`]) gives the same figures on any machine;
    /// more shards than worker threads only queue.
    pub fn with_shards(self, shards: usize) -> Self {
        Glow {
            shards: shards.max(1),
            ..self
        }
    }

    /// The architecture.
    pub fn config(&self) -> &GlowConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.levels[0].steps[0].actnorm.bias.device()
    }

    /// `[C, H, W]` of each level's latent `ε_l`.
    pub fn latent_shapes(&self) -> Vec<[usize; 3]> {
        let shapes = self.config.level_shapes();
        let last = shapes.len() - 1;
        shapes
            .into_iter()
            .enumerate()
            .map(|(l, [c, h, w])| if l == last { [c, h, w] } else { [c / 2, h, w] })
            .collect()
    }

    /// Whether the data-dependent initialisation has run (or was loaded).
    pub fn is_initialized(&self) -> bool {
        self.levels[0].steps[0].actnorm.is_initialized()
    }

    /// One-hot class rows for `labels`, checked against the model's `n_classes`.
    pub fn one_hot(&self, labels: &[usize], device: &Device) -> Result<Tensor<2>> {
        if self.config.n_classes == 0 {
            return Err(GlowError::Label(
                "the model is unconditional (n_classes = 0); pass no labels".into(),
            ));
        }
        one_hot(labels, self.config.n_classes, device)
    }

    fn check_input(&self, x: &Tensor<4>, classes: Condition) -> Result<()> {
        self.check_images(x)?;
        self.check_classes(x.dims()[0], classes)
    }

    fn check_images(&self, x: &Tensor<4>) -> Result<()> {
        let [n, c, h, w] = x.dims();
        check_not_empty(n, "Glow input")?;
        let image = self.config.image;
        if [c, h, w] != image.chw() {
            return Err(GlowError::shape(
                "Glow input",
                format!(
                    "images are {c}x{h}x{w} but the model was built for {}x{}x{} \
                     (channels x height x width)",
                    image.channels, image.height, image.width
                ),
            ));
        }
        check_finite(x, "Glow input", "images")
    }

    fn check_classes(&self, n: usize, classes: Condition) -> Result<()> {
        match (self.config.n_classes, classes) {
            (0, None) => Ok(()),
            (0, Some(_)) => Err(GlowError::Label(
                "the model is unconditional (n_classes = 0) but labels were given".into(),
            )),
            (k, None) => Err(GlowError::Label(format!(
                "the model is class-conditional (n_classes = {k}); pass a label for each image"
            ))),
            (k, Some(y)) if y.dims() != [n, k] => Err(GlowError::shape(
                "class labels",
                format!("one-hot labels are {:?}, expected [{n}, {k}]", y.dims()),
            )),
            (_, Some(y)) => check_finite(y, "class labels", "label rows"),
        }
    }

    /// `x -> (ε, log|det ∂ε/∂x|)` for a batch of preprocessed images `[N, C, H, W]`.
    pub fn encode(&self, x: Tensor<4>, classes: Condition) -> Result<(Latents, Tensor<1>)> {
        let shards = shards_on(&x.device(), self.shards);
        let walked = self.encode_in_shards(x, classes, shards)?;
        Ok((walked.latents, walked.log_det))
    }

    /// [`Glow::encode`] in `shards` concurrent shards ([`crate::parallel::split`]), also
    /// returning each level's output (the input of its split or, at the top, of the top prior).
    /// They hold `2·D` values per image at most, so keeping them costs little; recomputing
    /// gradients from them bounds the drift of repeated inversion to the K steps of one level.
    ///
    /// Without autodiff the shards run concurrently ([`crate::parallel`]); with autodiff the
    /// batch runs in one piece, since concurrent graphs must not share parameters.
    pub fn encode_in_shards(
        &self,
        x: Tensor<4>,
        classes: Condition,
        shards: usize,
    ) -> Result<Walked> {
        let ranges = split(x.dims()[0], shards);
        self.encode_in_ranges(x, classes, &ranges)
    }

    /// [`Glow::encode_in_shards`] with the shards given as row ranges of `x` (contiguous, in
    /// order, covering every row): for a part of a batch whose shards were fixed for the whole.
    pub fn encode_in_ranges(
        &self,
        x: Tensor<4>,
        classes: Condition,
        ranges: &[Range<usize>],
    ) -> Result<Walked> {
        self.check_input(&x, classes)?;
        self.walk_in_ranges(x, classes, ranges, |map, z, c| map.as_map().forward(z, c))
    }

    /// The forward walk of `x` in the shards `ranges` (concurrently, without autodiff), each map
    /// applied by `apply(map, input, the shard's labels)`.
    fn walk_in_ranges(
        &self,
        x: Tensor<4>,
        classes: Condition,
        ranges: &[Range<usize>],
        apply: impl Fn(&GlowMap, Tensor<4>, Condition) -> (Tensor<4>, Tensor<1>) + Sync,
    ) -> Result<Walked> {
        let maps = self.maps();
        let encode = |x: Tensor<4>, c: Condition| walk_forward(&maps, x, |map, z| apply(map, z, c));
        if x.device().is_autodiff() {
            return Ok(encode(x, classes));
        }
        let parts = map_ranges(ranges.to_vec(), |r| {
            let shard_classes = classes.map(|c| rows(c, &r));
            Ok(encode(rows(&x, &r), shard_classes.as_ref()))
        })?;
        let (latents, log_dets, outputs): (Vec<_>, Vec<_>, Vec<_>) = parts
            .into_iter()
            .map(|w| (w.latents, w.log_det, w.level_outputs))
            .collect();
        Ok(Walked {
            latents: Latents::join(latents),
            log_det: join_rows(log_dets),
            level_outputs: transpose(outputs).into_iter().map(join_rows).collect(),
        })
    }

    /// `ε -> (x, log|det ∂x/∂ε|)`, the exact inverse of [`Glow::encode`]. Without autodiff the
    /// batch runs in concurrent shards like [`Glow::encode`].
    pub fn decode(&self, latents: &Latents, classes: Condition) -> Result<(Tensor<4>, Tensor<1>)> {
        let expected = self.latent_shapes();
        if latents.levels.len() != expected.len() {
            return Err(GlowError::shape(
                "Glow latents",
                format!(
                    "{} latent tensors given, the model has {} levels",
                    latents.levels.len(),
                    expected.len()
                ),
            ));
        }
        let n = latents.levels[0].dims()[0];
        check_not_empty(n, "Glow latents")?;
        for (l, (eps, shape)) in latents.levels.iter().zip(&expected).enumerate() {
            let [en, c, h, w] = eps.dims();
            if en != n || [c, h, w] != *shape {
                return Err(GlowError::shape(
                    "Glow latents",
                    format!(
                        "level {l} latent is {:?}, expected [{n}, {}, {}, {}]",
                        eps.dims(),
                        shape[0],
                        shape[1],
                        shape[2]
                    ),
                ));
            }
        }
        for (l, eps) in latents.levels.iter().enumerate() {
            check_finite(eps, "Glow latents", &format!("level {l} latents"))?;
        }
        self.check_classes(n, classes)?;
        let maps = self.maps();
        if latents.levels[0].device().is_autodiff() {
            return Ok(walk_inverse(&maps, latents, classes));
        }
        let shards = shards_on(&latents.levels[0].device(), self.shards);
        let parts = map_ranges(split(n, shards), |r| {
            let shard_classes = classes.map(|c| rows(c, &r));
            Ok(walk_inverse(
                &maps,
                &latents.rows(&r),
                shard_classes.as_ref(),
            ))
        })?;
        let (x, log_det): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        Ok((join_rows(x), join_rows(log_det)))
    }

    /// Exact `log p(x)` (nats) per sample for preprocessed images in `[-0.5, 0.5]`:
    /// `Σ log N(ε; 0, I) + log|det ∂ε/∂x|`.
    pub fn log_prob(&self, x: Tensor<4>, classes: Condition) -> Result<Tensor<1>> {
        let (latents, log_det) = self.encode(x, classes)?;
        Ok(latents.log_standard_normal() + log_det)
    }

    /// What a class-conditional model says about the class of each preprocessed image, from one
    /// pass of the flow ([`ClassScores`]). Only the top prior sees the label, so the flow runs
    /// once, and the top prior's density of its latent under every class comes from two matrix
    /// products in f64 ([`TopPrior::log_density_per_class`]):
    ///
    /// ```text
    /// log p(x | k) = Σ_{l<L} log N(ε_l; 0, I) + log|det ∂z_L/∂x| + log N(ε_L^k; 0, I) - Σ log σ_k
    /// ε_L^k = (z_L - μ_k) / σ_k
    /// ```
    ///
    /// and the classifier head, where the model has one, reads the same `z_L`. Bayes' rule turns
    /// `log p(x | k)` into `p(y | x)` ([`crate::train::eval`]).
    pub fn class_scores(&self, x: Tensor<4>) -> Result<ClassScores> {
        let k = self.config.n_classes;
        if k == 0 {
            return Err(GlowError::Label(
                "the model is unconditional (n_classes = 0): it has no log p(x | y) per class"
                    .into(),
            ));
        }
        self.check_images(&x)?;
        let n = x.dims()[0];
        let device = x.device();
        let ranges = split(n, shards_on(&device, self.shards));
        // The top prior is left out of the walk: its input `z_L` leaves as the last latent.
        let walked = self.walk_in_ranges(x, None, &ranges, |map, z, c| match map {
            GlowMap::Top(_) => {
                let zeros = Tensor::zeros([z.dims()[0]], &z.device());
                (z, zeros)
            }
            other => other.as_map().forward(z, c),
        })?;
        let mut levels = walked.latents.levels;
        let z_top = levels.pop().expect("a model has a top level");
        let below = walked.log_det
            + if levels.is_empty() {
                Tensor::zeros([n], &device)
            } else {
                Latents { levels }.log_standard_normal()
            };
        let (means, log_stds) = self.top.class_parameters(k, &device)?;
        let [_, c, h, w] = z_top.dims();
        let top = TopPrior::log_density_per_class(
            &to_f64_vec(z_top.clone()),
            &to_f64_vec(means),
            &to_f64_vec(log_stds),
            c * h * w,
        );
        let below = to_f64_vec(below);
        Ok(ClassScores {
            log_prob: top
                .iter()
                .enumerate()
                .map(|(i, top)| below[i / k] + top)
                .collect(),
            head_logits: self.top.class_logits(z_top),
        })
    }

    /// The class a class-conditional model gives each preprocessed image: by Bayes' rule under a
    /// uniform class prior, `argmax_k log p(x | k)`, and, where the model has a classifier head,
    /// by the head's largest logit (the first of equal scores, both), from one
    /// [`Glow::class_scores`] pass.
    pub fn predicted_classes(&self, x: Tensor<4>) -> Result<PredictedClasses> {
        let k = self.config.n_classes;
        let scores = self.class_scores(x)?;
        let argmax = |scores: &[f64]| -> Vec<usize> {
            scores
                .chunks(k)
                .map(|row| argmax_and_log_sum_exp(row).0)
                .collect()
        };
        Ok(PredictedClasses {
            bayes: argmax(&scores.log_prob),
            head: scores.head_logits.map(|logits| argmax(&to_f64_vec(logits))),
        })
    }

    /// 8-bit images (values 0..=255 as floats) with uniform dequantisation noise in `[0, 1)` as
    /// model inputs: reduced to the model's `n_bits` and scaled to `[-0.5, 0.5]`
    /// ([`likelihood::preprocess`]).
    pub fn preprocess(&self, images: Tensor<4>, noise: Tensor<4>) -> Tensor<4> {
        likelihood::preprocess(images, noise, self.config.n_bits)
    }

    /// `log p(x)` (nats, of preprocessed inputs) as bits per dimension of the discrete images
    /// ([`likelihood::bits_per_dim`]).
    pub fn to_bits_per_dim(&self, log_prob: Tensor<1>) -> Tensor<1> {
        likelihood::bits_per_dim(log_prob, self.config.image.dims(), self.config.n_bits)
    }

    /// Bits per dimension of 8-bit images (values 0..=255 as floats) under the model, with the
    /// given uniform dequantisation noise in `[0, 1)` (see [`likelihood`]).
    pub fn bits_per_dim(
        &self,
        images: Tensor<4>,
        noise: Tensor<4>,
        classes: Condition,
    ) -> Result<Tensor<1>> {
        let log_prob = self.log_prob(self.preprocess(images, noise), classes)?;
        Ok(self.to_bits_per_dim(log_prob))
    }

    /// Latents `ε ~ N(0, T² I)` for `n` samples, drawn from `rng`.
    pub fn random_latents(
        &self,
        n: usize,
        temperature: f64,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Latents {
        let levels = self
            .latent_shapes()
            .into_iter()
            .map(|[c, h, w]| random_normal([n, c, h, w], temperature, rng, device))
            .collect();
        Latents { levels }
    }

    /// `n` samples at temperature `T` (every prior's standard deviation scaled by `T`), as
    /// preprocessed images in `[-0.5, 0.5]`; see [`likelihood::to_pixels`].
    pub fn sample(
        &self,
        n: usize,
        temperature: f64,
        classes: Condition,
        rng: &mut impl Rng,
    ) -> Result<Tensor<4>> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(GlowError::Config(format!(
                "temperature {temperature} must be a finite number >= 0 (0.7 is typical)"
            )));
        }
        check_not_empty(n, "Glow::sample")?;
        let device = self.device();
        let latents = self.random_latents(n, temperature, rng, &device);
        Ok(self.decode(&latents, classes)?.0)
    }

    /// Data-dependent initialisation (Glow §3.1) on a batch of preprocessed images: every
    /// ActNorm (in the steps and in the coupling networks) is set so that its output on this
    /// batch has zero mean and unit variance per channel. ActNorms already initialised (for
    /// example in a loaded model) are left as they are.
    ///
    /// On an autodiff device the statistics are computed by the same model without autodiff, so
    /// that no graph of the initialisation pass is recorded.
    pub fn data_init(self, x: Tensor<4>, classes: Condition) -> Result<Self> {
        self.check_input(&x, classes)?;
        if self.device().is_autodiff() {
            let plain_classes = classes.map(|c| c.clone().inner());
            let initialised = self.valid().data_init(x.inner(), plain_classes.as_ref())?;
            let values = flat_params(&initialised).into_iter().map(Some).collect();
            return Ok(with_flat_params(self, values));
        }
        let mut initialised = Vec::new();
        walk_forward(&self.maps(), x.detach(), |map, z| match map {
            GlowMap::Step(step) => {
                let (step, y) = (*step).clone().data_init(z, classes);
                initialised.push(step);
                let n = y.dims()[0];
                let device = y.device();
                (y, Tensor::zeros([n], &device))
            }
            other => other.as_map().forward(z, classes),
        });
        let mut model = self;
        let steps = model
            .levels
            .iter_mut()
            .flat_map(|level| level.steps.iter_mut());
        for (step, initialised) in steps.zip(initialised) {
            *step = initialised;
        }
        Ok(model)
    }
}

//! The loss of a training step (mean bits/dim) and the gradient of every parameter, by ordinary
//! backpropagation or by recomputing activations (constant memory in depth).
//!
//! **Backprop** records the whole forward pass and differentiates it: memory grows linearly with
//! the number of steps K·L.
//!
//! **Recompute** (Glow §1 and RevNets, Gomez et al. 2017) keeps no activations. The forward pass
//! runs without a graph and keeps only the latents `ε_l`, the log-determinant and each level's
//! output `z_l`. The backward pass walks the flow in reverse. With `L` the loss, `w = ∂L/∂log p(x_i)
//! = -1/(N·D·ln 2)` and `g = ∂L/∂y` for the output `y` of the map at hand, each map `f` (a flow
//! step, a split, the top prior) is handled alone:
//!
//! ```text
//! x  = f⁻¹(y)                               exact inverse, no graph
//! (y', ld) = f(x)                           re-run with a graph of this map only
//! s  = Σ g·y' + w·Σ ld  (+ w·Σ log N(ε) for priors)
//! ∂L/∂θ_f = ∂s/∂θ_f,   ∂L/∂x = ∂s/∂x        one local backward
//! ```
//!
//! so peak memory is one step's graph, whatever K and L are. A flow step is handled layer by
//! layer, and its coupling evaluates its network once for both lines above (its inverse needs
//! `NN(y_a)` and `y_a = x_a`: [`Coupling::invert_and_rerun`]), so a step costs one evaluation
//! of the network more than backprop, not two. Splits and the top prior take their
//! input from the stored level outputs instead of inverting, which resets the drift of repeated
//! inversion at every level boundary: in f32 the recomputed inputs drift by at most K steps'
//! rounding (the documented trade-off: `2·D` stored values per image).
//!
//! Both run the batch in the run's fixed shards, concurrently ([`crate::parallel`]), each shard
//! differentiating its own copy of the parameters. Backprop shards the whole pass, each shard
//! differentiating its rows' share of the mean (one set of gradients per shard); recompute shards
//! each map's local backward pass and, on the rank that starts the fold (always, on one process),
//! adds its shards' gradients at once, so that it holds one set of gradients and one map's graph
//! per shard. On several ranks ([`crate::cluster`]) each computes its block of shards and the
//! gradients are added in shard order along the ranks: `((g₀ + g₁) + g₂) + …` on any cluster.
//! The loss is the mean of the batch's per-image bits/dim, plus, for a model with a classifier
//! head, `weight_y` times the mean of its cross-entropy in bits (openai/glow's
//! `bits_x + weight_y · bits_y`, [`crate::likelihood::cross_entropy_bits`]). The head reads the
//! top latent `z_L`, so in the recompute pass it joins the top prior's local backward pass, its
//! term `weight_y/N · Σ bits_y` added to that surrogate.
//!
//! [`Coupling::invert_and_rerun`]: crate::flow::coupling::Coupling::invert_and_rerun

use std::ops::Range;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::eval::HeadFigures;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::flow::actnorm::ActNorm;
use crate::flow::permute::Permutation;
use crate::flow::prior::TopPrior;
use crate::flow::split::Split;
use crate::flow::step::FlowStep;
use crate::flow::{Condition, InvertibleMap};
use crate::likelihood::{classifier_row, cross_entropy_bits};
use crate::model::glow::Glow;
use crate::model::params::{flat_grads, flat_params, with_flat_params};
use crate::model::walk::{GlowMap, Leaves};
use crate::parallel::{join_rows, map_ranges, rows, split};
use crate::tensor_ops::{sum_per_sample, to_f64_vec};

/// One parameter gradient per float parameter of the model, in [`flat_grads`] order.
pub type FlatGrads = Vec<Option<Tensor<1>>>;

/// How a training step computes its gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientPass {
    /// The constant-memory backward pass (see the module doc) instead of backprop; both give
    /// the same gradients up to rounding.
    pub recompute: bool,
    /// Concurrent shards of the batch ([`crate::parallel::split`]).
    pub shards: usize,
    /// Weight of the classifier head's mean cross-entropy (bits per image) in the loss; 0, or a
    /// model without a head, trains on bits/dim alone.
    pub weight_y: f64,
}

/// A batch's loss figures, means over its images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchLoss {
    /// Mean bits/dim.
    pub bpd: f64,
    /// The classifier head's figures, for a model with a head.
    pub head: Option<HeadFigures>,
}

impl BatchLoss {
    /// What the step minimises: `bpd + weight_y · bits_y`.
    pub fn objective(&self, weight_y: f64) -> f64 {
        match self.head {
            Some(head) if weight_y > 0.0 => self.bpd + weight_y * head.bits,
            _ => self.bpd,
        }
    }

    /// The means of per-image rows `[bpd]`, or `[bpd, bits_y, miss]` with a head.
    fn of_rows(rows: &[f64], with_head: bool) -> Self {
        let stride = if with_head { 3 } else { 1 };
        let images = (rows.len() / stride) as f64;
        let mean = |column: usize| {
            rows.iter()
                .skip(column)
                .step_by(stride)
                .fold(0.0, |sum, v| sum + v)
                / images
        };
        BatchLoss {
            bpd: mean(0),
            head: with_head.then(|| HeadFigures {
                bits: mean(1),
                error: mean(2),
            }),
        }
    }
}

/// The loss figures of a batch of 8-bit `images` with dequantisation `noise` (and optional
/// one-hot `classes`) under `model` (on an autodiff device), and the gradient of every parameter
/// of the loss `pass.weight_y` sets. The batch runs in `pass.shards` concurrent shards
/// ([`crate::parallel::split`]), of which this rank of `cluster` computes its block
/// ([`Cluster::shard_block`]); the shards' gradients are added in shard order across the ranks
/// ([`Cluster::add_in_rank_order`]). A fixed count gives the same loss and gradients, bit for bit, on any
/// number of threads and ranks.
pub fn loss_and_gradients(
    model: &Glow,
    images: Tensor<4>,
    noise: Tensor<4>,
    classes: Option<&Tensor<2>>,
    pass: GradientPass,
    cluster: &Cluster,
) -> Result<(BatchLoss, FlatGrads)> {
    let n = images.dims()[0];
    let ranges = split(n, pass.shards);
    let mine = &ranges[cluster.shard_block(ranges.len())];
    // The first rank starts the fold, so it may add its shards at once; the others keep each
    // shard's gradients to add them onto the sum they receive.
    let starts_fold = cluster.rank() == 0;
    let weights = LossWeights::new(model, n, pass.weight_y);
    let local = if pass.recompute {
        let block = mine[0].start..mine[mine.len() - 1].end;
        let local_ranges: Vec<_> = mine
            .iter()
            .map(|r| r.start - block.start..r.end - block.start)
            .collect();
        let x = model.preprocess(rows(&images, &block).inner(), rows(&noise, &block).inner());
        let block_classes = classes.map(|c| rows(c, &block));
        recomputed_gradients(
            model,
            x,
            block_classes.as_ref(),
            &local_ranges,
            weights,
            starts_fold,
        )?
    } else {
        backprop_gradients(model, &images, &noise, classes, mine, weights)?
    };
    let (rows, grads) = if cluster.size() == 1 {
        (local.rows, add_in_order(local.shards))
    } else {
        local.added_across(cluster, &images.device().inner())?
    };
    let with_head = model.top.classifier.is_some();
    Ok((BatchLoss::of_rows(&rows, with_head), grads))
}

/// The weights of a batch's loss terms, summed over its `n` images: `∂L/∂log p(x_i)` and, where
/// the head is trained, `∂L/∂bits_y(x_i)`.
#[derive(Debug, Clone, Copy)]
struct LossWeights {
    /// `1 / N`, each image's share of the batch's mean.
    per_image: f64,
    /// `-1 / (N·D·ln 2)`, the same for every image.
    log_prob: f64,
    /// `weight_y / N` for a model with a head and `weight_y > 0`.
    head: Option<f64>,
}

impl LossWeights {
    fn new(model: &Glow, n: usize, weight_y: f64) -> Self {
        let dims = model.config().image.dims();
        LossWeights {
            per_image: 1.0 / n as f64,
            log_prob: -1.0 / (n as f64 * dims as f64 * std::f64::consts::LN_2),
            head: (model.top.classifier.is_some() && weight_y > 0.0).then(|| weight_y / n as f64),
        }
    }

    /// The head's term of the loss for its `logits` of images with one-hot `classes`:
    /// `weight_y/N · Σ bits_y`, where the head is trained.
    fn head_term(&self, logits: Option<Tensor<2>>, classes: Condition) -> Option<Tensor<1>> {
        let weight = self.head?;
        let logits = logits?;
        let labels = classes.expect("a model with a classifier head has labels");
        Some(cross_entropy_bits(logits, labels.clone()).sum() * weight)
    }
}

/// Per-image loss rows of a shard: `[bpd]`, or `[bpd, bits_y, miss]` where the head's logits are
/// given (with the one-hot `classes` they are scored against).
fn loss_rows(bpd: Tensor<1>, logits: Option<Tensor<2>>, classes: Condition) -> Vec<f64> {
    let bpd = to_f64_vec(bpd);
    let Some(logits) = logits else {
        return bpd;
    };
    let k = logits.dims()[1];
    let labels = to_f64_vec(
        classes
            .expect("a model with a classifier head has labels")
            .clone(),
    );
    let logits = to_f64_vec(logits);
    bpd.iter()
        .zip(logits.chunks(k).zip(labels.chunks(k)))
        .flat_map(|(&bpd, (row, one_hot))| {
            let label = one_hot.iter().position(|&v| v == 1.0).unwrap_or(0);
            let [bits, miss] = classifier_row(row, label);
            [bpd, bits, miss]
        })
        .collect()
}

/// The backprop pass over the shards `ranges` of a batch: each shard differentiates its rows'
/// share of the loss, `Σ_shard (bpd + weight_y · bits_y) / N`.
fn backprop_gradients(
    model: &Glow,
    images: &Tensor<4>,
    noise: &Tensor<4>,
    classes: Option<&Tensor<2>>,
    ranges: &[Range<usize>],
    weights: LossWeights,
) -> Result<LocalGradients> {
    let parts = map_ranges(ranges.to_vec(), |r| {
        let copy = own_copy(model);
        let on_device = |t: Tensor<4>| t.inner().autodiff();
        let shard_classes = classes.map(|c| rows(c, &r));
        let x = copy.preprocess(on_device(rows(images, &r)), on_device(rows(noise, &r)));
        let walked = copy.encode_in_shards(x, shard_classes.as_ref(), 1)?;
        let bpd = copy.to_bits_per_dim(walked.latents.log_standard_normal() + walked.log_det);
        let z_top = walked
            .level_outputs
            .last()
            .expect("a model has a top level")
            .clone();
        // Σ_shard bpd / N: the shard's mean weighted by its share of the batch, so that its
        // gradients need no pass of their own to be weighted.
        let mut loss = bpd.clone().sum() * weights.per_image;
        let logits = copy.top.class_logits(z_top);
        if let Some(head) = weights.head_term(logits.clone(), shard_classes.as_ref()) {
            loss = loss + head;
        }
        let grads = loss.backward();
        let plain_classes = shard_classes.map(|c| c.inner());
        let logits = logits.map(|l| l.inner());
        let rows = loss_rows(bpd.inner(), logits, plain_classes.as_ref());
        Ok((rows, flat_grads(&copy, &grads)))
    })?;
    let (rows, shards): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    Ok(LocalGradients {
        rows: rows.concat(),
        shards,
    })
}

/// What one rank computed of a batch: its images' loss rows ([`loss_rows`]) and its shards'
/// gradients, to be added in order onto the previous ranks' sum.
struct LocalGradients {
    rows: Vec<f64>,
    /// One entry per shard, or (on the rank that starts the fold) the shards already added.
    shards: Vec<FlatGrads>,
}

impl LocalGradients {
    /// The batch's per-image loss rows (in rank order) and its gradients: every rank's shards
    /// added in shard order ([`Cluster::add_in_rank_order`]). The gradients travel as f32 (the
    /// training device's type, so exactly); a parameter without a gradient has none on every
    /// rank.
    fn added_across(self, cluster: &Cluster, device: &Device) -> Result<(Vec<f64>, FlatGrads)> {
        let rows = cluster.all_gather_f64("loss", &self.rows)?.concat();
        let sizes: Vec<Option<usize>> = self.shards[0]
            .iter()
            .map(|g| g.as_ref().map(|g| g.dims()[0]))
            .collect();
        let flat: Vec<Vec<f32>> = self
            .shards
            .into_iter()
            .map(|grads| {
                grads
                    .into_iter()
                    .flatten()
                    .flat_map(|g| {
                        g.try_into_vec_as::<f32>()
                            .expect("a float tensor reads back as f32")
                    })
                    .collect()
            })
            .collect();
        let sum = cluster.add_in_rank_order("gradient sum", &flat)?;
        let mut at = 0;
        let grads = sizes
            .into_iter()
            .map(|size| {
                size.map(|len| {
                    at += len;
                    Tensor::from_floats(&sum[at - len..at], device)
                })
            })
            .collect();
        Ok((rows, grads))
    }
}

/// `module` with its own autodiff parameter nodes (same values): concurrent graphs that shared
/// parameter nodes would be merged into one and run one at a time.
fn own_copy<M: Module>(module: &M) -> M {
    with_flat_params(
        module.clone(),
        flat_params(module).into_iter().map(Some).collect(),
    )
}

/// The shards' gradients `parts` added parameter by parameter, in shard order:
/// `((g₀ + g₁) + g₂) + …`, the parameters concurrently.
fn add_in_order(parts: Vec<FlatGrads>) -> FlatGrads {
    let mut parts = parts.into_iter();
    let first = parts.next().expect("a batch has a shard");
    let mut terms: Vec<Vec<Option<Tensor<1>>>> = first.into_iter().map(|g| vec![g]).collect();
    for grads in parts {
        terms.iter_mut().zip(grads).for_each(|(t, g)| t.push(g));
    }
    terms
        .into_par_iter()
        .map(|terms| {
            terms
                .into_iter()
                .reduce(|sum, g| match (sum, g) {
                    (Some(sum), Some(g)) => Some(sum + g),
                    (sum, g) => sum.or(g),
                })
                .flatten()
        })
        .collect()
}

/// `Σ_i log N(ε_i; 0, I)` per sample, without the constant.
fn log_normal(eps: Tensor<4>) -> Tensor<1> {
    sum_per_sample(eps.square() * -0.5)
}

/// A map re-run for its local backward pass, in one shard: the map's input (plain), the tracked
/// leaves the input is made of (blocks of its channels, in order) and the surrogate built on them.
struct Rerun {
    input: Tensor<4>,
    leaves: Vec<Tensor<4>>,
    surrogate: Tensor<1>,
}

/// Differentiates a map's surrogate (a scalar built from this map alone, summed over images) in
/// the concurrent shards `ranges` of the batch ([`crate::parallel`]): shard `r` runs
/// `rerun(copy, r)` on its own copy of `module` and backpropagates. Returns the inputs joined,
/// the parameter gradients (summed in shard order when `add_now`, else one per shard) and
/// `∂s/∂x` joined. The batch is sharded map by map, not as a whole, so that a rank that adds at
/// once holds only one set of gradients.
fn local_backward<M: Module + Sync>(
    module: &M,
    ranges: &[Range<usize>],
    add_now: bool,
    rerun: impl Fn(&M, &Range<usize>) -> Rerun + Sync,
) -> (Tensor<4>, Vec<FlatGrads>, Tensor<4>) {
    let parts = map_ranges(ranges.to_vec(), |r| {
        let copy = own_copy(module);
        let Rerun {
            input,
            leaves,
            surrogate,
        } = rerun(&copy, &r);
        let mut grads = surrogate.backward();
        let mut dx: Vec<_> = leaves
            .into_iter()
            .map(|leaf| {
                leaf.grad_remove(&mut grads)
                    .expect("every map's output depends on its input")
            })
            .collect();
        // One leaf (every map but a coupling) is its own gradient: no copy through `cat`.
        let dx = match dx.len() {
            1 => dx.pop().expect("one leaf"),
            _ => Tensor::cat(dx, 1),
        };
        Ok((input, flat_grads(&copy, &grads), dx))
    })
    .expect("a map's backward pass does not fail");
    let (inputs, param_grads, input_grads): (Vec<_>, Vec<_>, Vec<_>) = parts.into_iter().collect();
    let param_grads = if add_now {
        vec![add_in_order(param_grads)]
    } else {
        param_grads
    };
    (join_rows(inputs), param_grads, join_rows(input_grads))
}

/// A plain value as a leaf of a new graph, whose gradient is read after the backward pass.
fn tracked(x: Tensor<4>) -> Tensor<4> {
    x.autodiff().require_grad()
}

/// The constant-memory pass for preprocessed inputs `x` (see the module doc), part of a batch of
/// `n`, in the shards `ranges` of `x`: the model's maps walked backward
/// ([`crate::model::walk`]), one local backward pass each. With `add_now` the shards' gradients
/// are added map by map (one set held); otherwise each shard's are kept.
fn recomputed_gradients(
    model: &Glow,
    x: Tensor<4>,
    classes: Condition,
    ranges: &[Range<usize>],
    weights: LossWeights,
    add_now: bool,
) -> Result<LocalGradients> {
    let plain = model.valid();
    let plain_classes = classes.map(|c| c.clone().inner());
    let walked = plain.encode_in_ranges(x, plain_classes.as_ref(), ranges)?;
    let bpd = plain.to_bits_per_dim(walked.latents.log_standard_normal() + walked.log_det);
    let z_top = walked
        .level_outputs
        .last()
        .expect("a model has a top level");
    let logits = plain.top.class_logits(z_top.clone());
    let rows = loss_rows(bpd, logits, plain_classes.as_ref());
    let pass = LocalPass {
        ranges,
        classes,
        add_now,
        weights,
    };
    let mut level_outputs = walked.level_outputs.into_iter().rev();
    // The value and the gradient dL/dy of the output of the map at hand; nothing flows out of
    // the top prior.
    let mut y: Option<Tensor<4>> = None;
    let mut g: Option<Tensor<4>> = None;
    // Per map (last first): the gradients of each shard, or of all shards added.
    let mut grads: Vec<Vec<FlatGrads>> = Vec::new();
    for (map, plain_map) in model.maps().iter().zip(plain.maps()).rev() {
        // A map that lets a latent leave takes its input from the stored level outputs (which
        // resets the drift of repeated inversion); any other inverts its output.
        let stored = (map.leaves() != Leaves::Nothing).then(|| {
            level_outputs
                .next()
                .expect("one stored output per map that lets a latent leave")
        });
        let result = match (map, &plain_map) {
            (GlowMap::Squeeze(squeeze), _) => {
                // A permutation of values: its input gradient is its inverse applied to g.
                let invert = |t: Tensor<4>| squeeze.inverse(t, None).0;
                y = y.map(invert);
                g = g.map(invert);
                continue;
            }
            (GlowMap::Step(step), GlowMap::Step(plain_step)) => {
                pass.step_backward(step, plain_step, &y, &g)
            }
            (GlowMap::Split(split), GlowMap::Split(plain_split)) => {
                pass.backward(*split, *plain_split, map.leaves(), stored, &y, &g)
            }
            (GlowMap::Top(top), GlowMap::Top(plain_top)) => {
                pass.backward(*top, *plain_top, map.leaves(), stored, &y, &g)
            }
            _ => unreachable!("a model and its plain copy have the same maps"),
        };
        let (input, map_grads, dx) = result;
        grads.push(map_grads);
        y = Some(input);
        g = Some(dx);
    }
    grads.reverse();
    // Each shard's gradients of all maps, in the model's parameter order.
    let mut shards: Vec<FlatGrads> = vec![Vec::new(); grads[0].len()];
    for map in grads {
        for (shard, map_grads) in shards.iter_mut().zip(map) {
            shard.extend(map_grads);
        }
    }
    Ok(LocalGradients { rows, shards })
}

/// A loss term that a map's input feeds beside the map itself: the classifier head reads the top
/// prior's input `z_L`, so its term joins the top prior's local backward pass.
trait ReadOut {
    /// The term for the map's input `x` (a shard's, with its one-hot `classes`), if any.
    fn read_out(
        &self,
        _weights: &LossWeights,
        _x: Tensor<4>,
        _classes: Condition,
    ) -> Option<Tensor<1>> {
        None
    }
}

impl ReadOut for Split {}
impl ReadOut for Permutation {}
impl ReadOut for ActNorm {}

impl ReadOut for TopPrior {
    fn read_out(
        &self,
        weights: &LossWeights,
        x: Tensor<4>,
        classes: Condition,
    ) -> Option<Tensor<1>> {
        weights.head_term(self.class_logits(x), classes)
    }
}

/// What every map's local backward pass of one recompute pass shares.
struct LocalPass<'a> {
    /// The shards of the batch.
    ranges: &'a [Range<usize>],
    /// The labels of the batch, on the autodiff device.
    classes: Condition<'a>,
    /// Whether the shards' gradients are added at once ([`local_backward`]).
    add_now: bool,
    /// The weights of the loss's terms.
    weights: LossWeights,
}

impl LocalPass<'_> {
    /// The local backward pass of one map `map` (its plain copy `plain` inverts without a graph):
    /// its input `x` (the `stored` level output, else `plain⁻¹(y)`), its parameter gradients and
    /// `∂L/∂x`, from the forward pass re-run on `x` with a graph ([`Self::surrogate`]).
    fn backward<M: InvertibleMap + Module + Sync + ReadOut>(
        &self,
        map: &M,
        plain: &M,
        leaves: Leaves,
        stored: Option<Tensor<4>>,
        y: &Option<Tensor<4>>,
        g: &Option<Tensor<4>>,
    ) -> (Tensor<4>, Vec<FlatGrads>, Tensor<4>) {
        let plain_classes = self.classes.map(|c| c.clone().inner());
        local_backward(map, self.ranges, self.add_now, |map, r| {
            let input = match (&stored, y) {
                (Some(stored), _) => rows(stored, r),
                (None, Some(y)) => {
                    let shard_classes = plain_classes.as_ref().map(|c| rows(c, r));
                    plain.inverse(rows(y, r), shard_classes.as_ref()).0
                }
                (None, None) => unreachable!("the last map lets the whole output leave"),
            };
            let leaf = tracked(input.clone());
            let shard_classes = self.classes.map(|c| rows(c, r));
            let rerun = map.forward(leaf.clone(), shard_classes.as_ref());
            let surrogate = self.surrogate(rerun, leaves, g, r);
            let surrogate = match map.read_out(&self.weights, leaf.clone(), shard_classes.as_ref())
            {
                Some(term) => surrogate + term,
                None => surrogate,
            };
            Rerun {
                input,
                leaves: vec![leaf],
                surrogate,
            }
        })
    }

    /// The local backward pass of a flow step, layer by layer from its output `y`: the coupling
    /// inverts and re-runs with one evaluation of its network
    /// ([`crate::flow::coupling::Coupling::invert_and_rerun`]), the 1x1 convolution and ActNorm
    /// as any map ([`Self::backward`]). Returns the step's input, its parameter gradients in the
    /// step's order (ActNorm, mixing, coupling) and `∂L/∂x`.
    fn step_backward(
        &self,
        step: &FlowStep,
        plain: &FlowStep,
        y: &Option<Tensor<4>>,
        g: &Option<Tensor<4>>,
    ) -> (Tensor<4>, Vec<FlatGrads>, Tensor<4>) {
        let y = y.as_ref().expect("a flow step's output flows on");
        let (mixed, coupling_grads, g_mixed) =
            local_backward(&step.coupling, self.ranges, self.add_now, |coupling, r| {
                let (input, leaves, rerun) =
                    coupling.invert_and_rerun(rows(y, r), tracked, |t| t.inner());
                Rerun {
                    input,
                    leaves: leaves.into(),
                    surrogate: self.surrogate(rerun, Leaves::Nothing, g, r),
                }
            });
        let (normed, mixing_grads, g_normed) = self.backward(
            &step.permutation,
            &plain.permutation,
            Leaves::Nothing,
            None,
            &Some(mixed),
            &Some(g_mixed),
        );
        let (x, actnorm_grads, dx) = self.backward(
            &step.actnorm,
            &plain.actnorm,
            Leaves::Nothing,
            None,
            &Some(normed),
            &Some(g_normed),
        );
        let grads = actnorm_grads
            .into_iter()
            .zip(mixing_grads)
            .zip(coupling_grads)
            .map(|((actnorm, mixing), coupling)| [actnorm, mixing, coupling].concat())
            .collect();
        (x, grads, dx)
    }

    /// The surrogate of a map re-run as `(y', ld)` in shard `r`:
    ///
    /// ```text
    /// s = Σ g·y_kept + w·Σ (ld + log N(ε))       y_kept: what flows on, ε: the latent that leaves
    /// ```
    fn surrogate(
        &self,
        (out, ld): (Tensor<4>, Tensor<1>),
        leaves: Leaves,
        g: &Option<Tensor<4>>,
        r: &Range<usize>,
    ) -> Tensor<1> {
        let (kept, latent) = leaves.part(out);
        let log_terms = match latent {
            Some(eps) => log_normal(eps) + ld,
            None => ld,
        };
        let prior_and_log_det = (log_terms * self.weights.log_prob).sum();
        match (kept, g) {
            // dL/dy · y' summed over the shard's rows: the link from the map's recomputed
            // output to the rest of the loss.
            (Some(kept), Some(g)) => (kept * rows(g, r).autodiff()).sum() + prior_and_log_det,
            _ => prior_and_log_det,
        }
    }
}

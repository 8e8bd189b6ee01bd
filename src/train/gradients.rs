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
//! The loss is the mean of the batch's per-image bits/dim.
//!
//! [`Coupling::invert_and_rerun`]: crate::flow::coupling::Coupling::invert_and_rerun

use std::ops::Range;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use crate::cluster::Cluster;
use crate::error::Result;
use crate::flow::step::FlowStep;
use crate::flow::{Condition, InvertibleMap};
use crate::model::glow::Glow;
use crate::model::params::{flat_grads, flat_params, with_flat_params};
use crate::model::walk::{GlowMap, Leaves};
use crate::parallel::{join_rows, map_ranges, rows, split};
use crate::tensor_ops::{from_f64, sum_per_sample, to_f64_vec};

/// One parameter gradient per float parameter of the model, in [`flat_grads`] order.
pub type FlatGrads = Vec<Option<Tensor<1>>>;

/// Mean bits/dim of a batch of 8-bit `images` with dequantisation `noise` (and optional one-hot
/// `classes`) under `model` (on an autodiff device), and the gradient of every parameter.
/// `recompute` selects the constant-memory backward pass (see the module doc); both give the same
/// gradients up to rounding. The batch runs in `shards` concurrent shards
/// ([`crate::parallel::split`]), of which this rank of `cluster` computes its block
/// ([`Cluster::shard_block`]); the shards' gradients are added in shard order across the ranks
/// ([`Cluster::add_in_rank_order`]). A fixed count gives the same loss and gradients, bit for bit, on any
/// number of threads and ranks.
pub fn loss_and_gradients(
    model: &Glow,
    images: Tensor<4>,
    noise: Tensor<4>,
    classes: Option<&Tensor<2>>,
    recompute: bool,
    shards: usize,
    cluster: &Cluster,
) -> Result<(Tensor<1>, FlatGrads)> {
    let n = images.dims()[0];
    let ranges = split(n, shards);
    let mine = &ranges[cluster.shard_block(ranges.len())];
    // The first rank starts the fold, so it may add its shards at once; the others keep each
    // shard's gradients to add them onto the sum they receive.
    let starts_fold = cluster.rank() == 0;
    let local = if recompute {
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
            n,
            starts_fold,
        )?
    } else {
        backprop_gradients(model, &images, &noise, classes, mine, n)?
    };
    let (bpd, grads) = if cluster.size() == 1 {
        (local.bpd, add_in_order(local.shards))
    } else {
        local.added_across(cluster, &images.device().inner())?
    };
    let bpd_len = bpd.len();
    let bpd = from_f64(bpd, [bpd_len], &images.device().inner());
    Ok((bpd.mean(), grads))
}

/// The backprop pass over the shards `ranges` of a batch of `n`: each shard differentiates the
/// sum of its rows' bits/dim over `n` (its mean weighted by its share of the batch).
fn backprop_gradients(
    model: &Glow,
    images: &Tensor<4>,
    noise: &Tensor<4>,
    classes: Option<&Tensor<2>>,
    ranges: &[Range<usize>],
    n: usize,
) -> Result<LocalGradients> {
    let parts = map_ranges(ranges.to_vec(), |r| {
        let copy = own_copy(model);
        let on_device = |t: Tensor<4>| t.inner().autodiff();
        let shard_classes = classes.map(|c| rows(c, &r));
        let bpd = copy.bits_per_dim(
            on_device(rows(images, &r)),
            on_device(rows(noise, &r)),
            shard_classes.as_ref(),
        )?;
        // Σ_shard bpd / n: the shard's mean weighted by its share of the batch, so that its
        // gradients need no pass of their own to be weighted.
        let grads = (bpd.clone().sum() / n as f64).backward();
        Ok((bpd.inner(), flat_grads(&copy, &grads)))
    })?;
    let (bpd, shards): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    Ok(LocalGradients {
        bpd: to_f64_vec(join_rows(bpd)),
        shards,
    })
}

/// What one rank computed of a batch: its images' bits/dim and its shards' gradients, to be
/// added in order onto the previous ranks' sum.
struct LocalGradients {
    bpd: Vec<f64>,
    /// One entry per shard, or (on the rank that starts the fold) the shards already added.
    shards: Vec<FlatGrads>,
}

impl LocalGradients {
    /// The batch's per-image bits/dim (in rank order) and its gradients: every rank's shards
    /// added in shard order ([`Cluster::add_in_rank_order`]). The gradients travel as f32 (the
    /// training device's type, so exactly); a parameter without a gradient has none on every
    /// rank.
    fn added_across(self, cluster: &Cluster, device: &Device) -> Result<(Vec<f64>, FlatGrads)> {
        let bpd = cluster.all_gather_f64("bits/dim", &self.bpd)?.concat();
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
        Ok((bpd, grads))
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
    n: usize,
    add_now: bool,
) -> Result<LocalGradients> {
    let dims = model.config().image.dims();
    let plain = model.valid();
    let plain_classes = classes.map(|c| c.clone().inner());
    let walked = plain.encode_in_ranges(x, plain_classes.as_ref(), ranges)?;
    let bpd = plain.to_bits_per_dim(walked.latents.log_standard_normal() + walked.log_det);
    let pass = LocalPass {
        ranges,
        classes,
        add_now,
        w: -1.0 / (n as f64 * dims as f64 * std::f64::consts::LN_2),
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
    Ok(LocalGradients {
        bpd: to_f64_vec(bpd),
        shards,
    })
}

/// What every map's local backward pass of one recompute pass shares.
struct LocalPass<'a> {
    /// The shards of the batch.
    ranges: &'a [Range<usize>],
    /// The labels of the batch, on the autodiff device.
    classes: Condition<'a>,
    /// Whether the shards' gradients are added at once ([`local_backward`]).
    add_now: bool,
    /// `∂L/∂log p(x_i)`, the same for every image.
    w: f64,
}

impl LocalPass<'_> {
    /// The local backward pass of one map `map` (its plain copy `plain` inverts without a graph):
    /// its input `x` (the `stored` level output, else `plain⁻¹(y)`), its parameter gradients and
    /// `∂L/∂x`, from the forward pass re-run on `x` with a graph ([`Self::surrogate`]).
    fn backward<M: InvertibleMap + Module + Sync>(
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
            Rerun {
                input,
                leaves: vec![leaf],
                surrogate: self.surrogate(rerun, leaves, g, r),
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
        let prior_and_log_det = (log_terms * self.w).sum();
        match (kept, g) {
            // dL/dy · y' summed over the shard's rows: the link from the map's recomputed
            // output to the rest of the loss.
            (Some(kept), Some(g)) => (kept * rows(g, r).autodiff()).sum() + prior_and_log_det,
            _ => prior_and_log_det,
        }
    }
}

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
//! so peak memory is one step's graph, whatever K and L are. Splits and the top prior take their
//! input from the stored level outputs instead of inverting, which resets the drift of repeated
//! inversion at every level boundary: in f32 the recomputed inputs drift by at most K steps'
//! rounding (the documented trade-off: `2·D` stored values per image).
//!
//! Both run the batch in concurrent shards, one per worker thread ([`crate::parallel`]), each
//! shard differentiating its own copy of the parameters. Backprop shards the whole pass and adds
//! the shards' gradients weighted by their share of the batch (one set of gradients per shard);
//! recompute shards each map's local backward pass and adds its gradients at once, so that it
//! still holds one set of gradients and one map's graph per shard.

use std::ops::Range;

use burn::module::Module;
use burn::tensor::Tensor;

use crate::model::params::{flat_grads, flat_params, with_flat_params};
use crate::error::Result;
use crate::flow::squeeze::unsqueeze;
use crate::flow::InvertibleMap;
use crate::likelihood::{bits_per_dim, preprocess};
use crate::model::glow::Glow;
use crate::parallel::{join_rows, map_ranges, rows, split};
use crate::tensor_ops::sum_per_sample;

/// One parameter gradient per float parameter of the model, in [`flat_grads`] order.
pub type FlatGrads = Vec<Option<Tensor<1>>>;

/// Mean bits/dim of a batch of 8-bit `images` with dequantisation `noise` (and optional one-hot
/// `classes`) under `model` (on an autodiff device), and the gradient of every parameter.
/// `recompute` selects the constant-memory backward pass (see the module doc); both give the same
/// gradients up to rounding. The batch runs in `shards` concurrent shards
/// ([`crate::parallel::split`]; 0 = one per worker thread): a fixed count gives the same
/// gradients, bit for bit, on any number of threads.
pub fn loss_and_gradients(
    model: &Glow,
    images: Tensor<4>,
    noise: Tensor<4>,
    classes: Option<&Tensor<2>>,
    recompute: bool,
    shards: usize,
) -> Result<(Tensor<1>, FlatGrads)> {
    let n = images.dims()[0];
    let ranges = split(n, shards);
    if recompute {
        let x = preprocess(images.inner(), noise.inner(), model.config().n_bits);
        return recomputed_gradients(model, x, classes, &ranges);
    }
    let parts = map_ranges(ranges, |r| {
        let copy = own_copy(model);
        let on_device = |t: Tensor<4>| t.inner().autodiff();
        let shard_classes = classes.map(|c| rows(c, &r));
        let loss = copy
            .bits_per_dim(
                on_device(rows(&images, &r)),
                on_device(rows(&noise, &r)),
                shard_classes.as_ref(),
            )?
            .mean();
        let grads = loss.backward();
        let share = r.len() as f64 / n as f64;
        Ok((share, loss.inner(), flat_grads(&copy, &grads)))
    })?;
    let loss = parts
        .iter()
        .map(|(share, loss, _)| loss.clone() * *share)
        .reduce(|a, b| a + b)
        .expect("a batch has a shard");
    let grads = sum_grads(parts.into_iter().map(|(share, _, grads)| -> FlatGrads {
        grads.into_iter().map(|g| g.map(|g| g * share)).collect()
    }));
    Ok((loss, grads))
}

/// `module` with its own autodiff parameter nodes (same values): concurrent graphs that shared
/// parameter nodes would be merged into one and run one at a time.
fn own_copy<M: Module>(module: &M) -> M {
    with_flat_params(
        module.clone(),
        flat_params(module).into_iter().map(Some).collect(),
    )
}

/// The shards' gradients added parameter by parameter, in shard order.
fn sum_grads(parts: impl Iterator<Item = FlatGrads>) -> FlatGrads {
    parts
        .reduce(|sum, grads| {
            sum.into_iter()
                .zip(grads)
                .map(|pair| match pair {
                    (Some(sum), Some(g)) => Some(sum + g),
                    (sum, g) => sum.or(g),
                })
                .collect()
        })
        .expect("a batch has a shard")
}

/// `Σ_i log N(ε_i; 0, I)` per sample, without the constant.
fn log_normal(eps: Tensor<4>) -> Tensor<1> {
    sum_per_sample(eps.square() * -0.5)
}

/// Differentiates a map's surrogate (a scalar built from this map alone, summed over images) in
/// the concurrent shards `ranges` of the batch ([`crate::parallel`]): shard `r` takes its input
/// `input(r)` (plain), runs `surrogate(copy, x, r)` on its own copy of `module` and backpropagates.
/// Returns the inputs joined, the parameter gradients summed in shard order and `∂s/∂x` joined.
/// The batch is sharded map by map, not as a whole, so that only one set of gradients is held.
fn local_backward<M: Module + Sync>(
    module: &M,
    ranges: &[Range<usize>],
    input: impl Fn(&Range<usize>) -> Tensor<4> + Sync,
    surrogate: impl Fn(&M, Tensor<4>, &Range<usize>) -> Tensor<1> + Sync,
) -> (Tensor<4>, FlatGrads, Tensor<4>) {
    let parts = map_ranges(ranges.to_vec(), |r| {
        let copy = own_copy(module);
        let x = input(&r);
        let x_tracked = x.clone().autodiff().require_grad();
        let mut grads = surrogate(&copy, x_tracked.clone(), &r).backward();
        let dx = x_tracked
            .grad_remove(&mut grads)
            .expect("every map's output depends on its input");
        Ok((x, flat_grads(&copy, &grads), dx))
    })
    .expect("a map's backward pass does not fail");
    let (inputs, param_grads, input_grads): (Vec<_>, Vec<_>, Vec<_>) = parts.into_iter().collect();
    (
        join_rows(inputs),
        sum_grads(param_grads.into_iter()),
        join_rows(input_grads),
    )
}

/// The constant-memory pass for preprocessed inputs `x` (see the module doc), in the shards
/// `ranges`.
fn recomputed_gradients(
    model: &Glow,
    x: Tensor<4>,
    classes: Option<&Tensor<2>>,
    ranges: &[Range<usize>],
) -> Result<(Tensor<1>, FlatGrads)> {
    let config = model.config();
    let dims = config.image.dims();
    let n = x.dims()[0];
    let plain = model.valid();
    let plain_classes = classes.map(|c| c.clone().inner());
    let (latents, log_det, outputs) =
        plain.encode_in_shards(x, plain_classes.as_ref(), ranges.len())?;
    let loss = bits_per_dim(latents.log_standard_normal() + log_det, dims, config.n_bits).mean();
    let w = -1.0 / (n as f64 * dims as f64 * std::f64::consts::LN_2);
    // dL/dz · z' summed over the shard's rows: the link from a map's recomputed output to the
    // rest of the loss.
    let link = |g: &Tensor<4>, r: &Range<usize>, y: Tensor<4>| (y * rows(g, r).autodiff()).sum();

    let top_input = outputs.last().expect("a model has levels");
    let (_, top_grads, mut g) = local_backward(
        &model.top,
        ranges,
        |r| rows(top_input, r),
        |top, z, r| {
            let shard_classes = classes.map(|c| rows(c, r));
            let (eps, ld) = top.standardize(z, shard_classes.as_ref());
            ((log_normal(eps) + ld) * w).sum()
        },
    );
    let mut level_grads: Vec<FlatGrads> = Vec::with_capacity(model.levels.len());
    for (l, (level, plain_level)) in model.levels.iter().zip(&plain.levels).enumerate().rev() {
        let mut grads: Vec<FlatGrads> = Vec::with_capacity(level.steps.len() + 1);
        let mut y = outputs[l].clone();
        if let Some(split) = &level.split {
            let (_, split_grads, dz) = local_backward(
                split,
                ranges,
                |r| rows(&y, r),
                |split, z, r| {
                    let (z_a, eps, ld) = split.factor_out(z);
                    link(&g, r, z_a) + ((log_normal(eps) + ld) * w).sum()
                },
            );
            grads.push(split_grads);
            g = dz;
        }
        for (step, plain_step) in level.steps.iter().zip(&plain_level.steps).rev() {
            let (input, step_grads, dx) = local_backward(
                step,
                ranges,
                |r| plain_step.inverse(rows(&y, r)).0,
                |step, x, r| {
                    let (out, ld) = step.forward(x);
                    link(&g, r, out) + (ld * w).sum()
                },
            );
            grads.push(step_grads);
            g = dx;
            y = input;
        }
        // The input of this level is the previous split's z_a; its value comes from the stored
        // level output, only its gradient from here.
        g = unsqueeze(g);
        grads.reverse();
        level_grads.push(grads.into_iter().flatten().collect());
    }
    level_grads.reverse();
    let mut all: FlatGrads = level_grads.into_iter().flatten().collect();
    all.extend(top_grads);
    Ok((loss, all))
}

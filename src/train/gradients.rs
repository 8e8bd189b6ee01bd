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

use burn::module::Module;
use burn::tensor::Tensor;

use super::params::{flat_grads, flat_params, with_flat_params};
use crate::error::Result;
use crate::flow::squeeze::unsqueeze;
use crate::flow::InvertibleMap;
use crate::likelihood::{bits_per_dim, preprocess};
use crate::model::glow::Glow;
use crate::parallel::{map_shards, rows};
use crate::tensor_ops::sum_per_sample;

/// One parameter gradient per float parameter of the model, in [`flat_grads`] order.
pub type FlatGrads = Vec<Option<Tensor<1>>>;

/// Mean bits/dim of a batch of 8-bit `images` with dequantisation `noise` (and optional one-hot
/// `classes`) under `model` (on an autodiff device), and the gradient of every parameter.
/// `recompute` selects the constant-memory backward pass (see the module doc); both give the same
/// gradients up to rounding. The batch runs in concurrent shards ([`crate::parallel`]), the
/// shards' losses and gradients weighted by their share of the batch.
pub fn loss_and_gradients(
    model: &Glow,
    images: Tensor<4>,
    noise: Tensor<4>,
    classes: Option<&Tensor<2>>,
    recompute: bool,
) -> Result<(Tensor<1>, FlatGrads)> {
    let n = images.dims()[0];
    let parts = map_shards(n, |r| {
        // Each shard differentiates its own copy of the parameters: graphs that shared the
        // model's parameter nodes would be merged into one, and run one at a time.
        let copy = with_flat_params(
            model.clone(),
            flat_params(model).into_iter().map(Some).collect(),
        );
        let on_device = |t: Tensor<4>| t.inner().autodiff();
        let shard_classes = classes.map(|c| rows(c, &r));
        let (loss, grads) = shard_loss_and_gradients(
            &copy,
            on_device(rows(&images, &r)),
            on_device(rows(&noise, &r)),
            shard_classes.as_ref(),
            recompute,
        )?;
        Ok((r.len() as f64 / n as f64, loss, grads))
    })?;
    Ok(weighted_sum(parts))
}

/// `Σ w_i·loss_i` and `Σ w_i·grads_i` over the shards `(w_i, loss_i, grads_i)`, with `w_i` the
/// shard's share of the batch: the mean loss of the whole batch and its gradients.
fn weighted_sum(parts: Vec<(f64, Tensor<1>, FlatGrads)>) -> (Tensor<1>, FlatGrads) {
    let mut parts = parts.into_iter();
    let (w, loss, grads) = parts.next().expect("a batch has a shard");
    if parts.len() == 0 {
        return (loss, grads);
    }
    let scale = |grads: FlatGrads, w: f64| -> FlatGrads {
        grads.into_iter().map(|g| g.map(|g| g * w)).collect()
    };
    let (mut loss, mut grads) = (loss * w, scale(grads, w));
    for (w, part_loss, part_grads) in parts {
        loss = loss + part_loss * w;
        grads = grads
            .into_iter()
            .zip(scale(part_grads, w))
            .map(|pair| match pair {
                (Some(sum), Some(g)) => Some(sum + g),
                (sum, g) => sum.or(g),
            })
            .collect();
    }
    (loss, grads)
}

/// [`loss_and_gradients`] of one shard on the model itself.
fn shard_loss_and_gradients(
    model: &Glow,
    images: Tensor<4>,
    noise: Tensor<4>,
    classes: Option<&Tensor<2>>,
    recompute: bool,
) -> Result<(Tensor<1>, FlatGrads)> {
    if !recompute {
        let loss = model.bits_per_dim(images, noise, classes)?.mean();
        let grads = loss.backward();
        return Ok((loss.inner(), flat_grads(model, &grads)));
    }
    let x = preprocess(images.inner(), noise.inner(), model.config().n_bits);
    recomputed_gradients(model, x, classes)
}

/// `Σ_i log N(ε_i; 0, I)` per sample, without the constant.
fn log_normal(eps: Tensor<4>) -> Tensor<1> {
    sum_per_sample(eps.square() * -0.5)
}

/// Differentiates `surrogate(module, x)` (a scalar built from this module alone) at the plain
/// input `x`: the module's flat gradients and `∂surrogate/∂x`.
fn local_backward<M: Module>(
    module: &M,
    x: Tensor<4>,
    surrogate: impl FnOnce(&M, Tensor<4>) -> Tensor<1>,
) -> (FlatGrads, Tensor<4>) {
    let x = x.autodiff().require_grad();
    let mut grads = surrogate(module, x.clone()).backward();
    let dx = x
        .grad_remove(&mut grads)
        .expect("every map's output depends on its input");
    (flat_grads(module, &grads), dx)
}

/// The constant-memory pass for preprocessed inputs `x` (see the module doc).
fn recomputed_gradients(
    model: &Glow,
    x: Tensor<4>,
    classes: Option<&Tensor<2>>,
) -> Result<(Tensor<1>, FlatGrads)> {
    let config = model.config();
    let dims = config.image.dims();
    let n = x.dims()[0];
    let plain = model.valid();
    let plain_classes = classes.map(|c| c.clone().inner());
    let (latents, log_det, outputs) =
        plain.encode_keeping_level_outputs(x, plain_classes.as_ref())?;
    let loss = bits_per_dim(latents.log_standard_normal() + log_det, dims, config.n_bits).mean();
    let w = -1.0 / (n as f64 * dims as f64 * std::f64::consts::LN_2);
    // dL/dz · z' summed: the link from a map's recomputed output to the rest of the loss.
    let link = |g: &Tensor<4>, y: Tensor<4>| (y * g.clone().autodiff()).sum();

    let top_input = outputs.last().expect("a model has levels").clone();
    let (top_grads, mut g) = local_backward(&model.top, top_input, |top, z| {
        let (eps, ld) = top.standardize(z, classes);
        ((log_normal(eps) + ld) * w).sum()
    });
    let mut level_grads: Vec<FlatGrads> = Vec::with_capacity(model.levels.len());
    for (l, (level, plain_level)) in model.levels.iter().zip(&plain.levels).enumerate().rev() {
        let mut grads: Vec<FlatGrads> = Vec::with_capacity(level.steps.len() + 1);
        let mut y = outputs[l].clone();
        if let Some(split) = &level.split {
            let (split_grads, dz) = local_backward(split, y.clone(), |split, z| {
                let (z_a, eps, ld) = split.factor_out(z);
                link(&g, z_a) + ((log_normal(eps) + ld) * w).sum()
            });
            grads.push(split_grads);
            g = dz;
        }
        for (step, plain_step) in level.steps.iter().zip(&plain_level.steps).rev() {
            let input = plain_step.inverse(y).0;
            let (step_grads, dx) = local_backward(step, input.clone(), |step, x| {
                let (out, ld) = step.forward(x);
                link(&g, out) + (ld * w).sum()
            });
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

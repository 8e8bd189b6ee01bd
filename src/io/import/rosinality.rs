//! rosinality/glow-pytorch (`model.py`) checkpoints as glowflow models, and back.
//!
//! Its `Glow(in_channel, n_flow, n_block, affine, conv_lu)` is, layer for layer:
//!
//! ```text
//! squeeze          view(b, c, h/2, 2, w/2, 2).permute(0, 1, 3, 5, 2, 4)   = ours
//! ActNorm          scale · (x + loc), log|det| = H·W·Σ log|scale|            actnorm_scale = linear
//! InvConv2dLU      w_p (w_l ⊙ l_mask + I)(w_u ⊙ u_mask + diag(s_sign · exp(w_s)))   = ours (lu)
//! InvConv2d        weight [C, C, 1, 1]                                       = ours (no lu)
//! AffineCoupling   net = conv3x3+bias → ReLU → conv1x1+bias → ReLU → ZeroConv2d    hidden_norm = bias, padding = zero
//!                  log_s, t = net(x_a).chunk(2); y_b = (x_b + t) · sigmoid(log_s + 2)   coupling = affine (rows reordered)
//!                  additive: y_b = x_b + net(x_a)                           coupling = additive
//! ZeroConv2d       (conv(pad(x, value=1)) + b) · exp(3 · scale)             zero_conv_padding = ones
//! split prior      mean, log_sd = ZeroConv2d(x_a).chunk(2)                   ours interleaved (rows reordered)
//! top prior        mean, log_sd = ZeroConv2d(C → 2C)(zeros).chunk(2)         ours 2C → 2C on zeros (extra inputs 0)
//! log p(x)         -log(n_bins) · D + logdet + log_p, x = v / n_bins - 0.5 + U/n_bins    = ours
//! ```
//!
//! Our couplings and split priors read their two outputs interleaved (`h[:, 0::2]`,
//! `h[:, 1::2]`), rosinality's as halves, so those output rows are permuted on the way in and out:
//! the same function, bit for bit the same weights. The peer's `Glow` builds its last block with
//! an LU 1x1 convolution even under `--no_lu`; such a checkpoint becomes a model without LU whose
//! last block's weight is `w_p (L + I)(U + diag(s))` computed in f64 and rounded to f32 once, and
//! exporting a model without LU factors the last block's weights back (host LU in f64).

use std::path::Path;

use super::keys::{
    f32_tensor, identity, interleave, ours, put, strictly_lower, strictly_upper,
    strip_wrapper_prefix, Checkpoint, ZeroConv, ZeroConvLayout,
};
use super::torch_file::{HostTensor, StateDict, Values};
use super::{validated, ImportOptions, Peer};
use crate::error::{GlowError, Result};
use crate::flow::actnorm::ActNormScale;
use crate::flow::conv::Padding;
use crate::flow::coupling::CouplingKind;
use crate::flow::permute::PermutationKind;
use crate::host_linalg;
use crate::model::config::{GlowConfig, HiddenNorm};

/// The scale factor of rosinality's `ZeroConv2d`, `exp(3 · scale)`.
const ZERO_CONV_FACTOR: f64 = 3.0;

/// Our parameter paths for level `l`, step `k`.
fn step_key(l: usize, k: usize, rest: &str) -> String {
    format!("levels.{l}.steps.{k}.{rest}")
}

/// rosinality's `ZeroConv2d(c_in, order.len())`, its log-scale `scale` of shape `[1, C, 1, 1]`;
/// our output row `i` is its row `order[i]`.
fn zero_conv(c_in: usize, order: Vec<usize>) -> ZeroConv {
    ZeroConv {
        layout: ZeroConvLayout {
            scale_key: "scale",
            scale_shape: |c| vec![1, c, 1, 1],
        },
        c_in,
        order,
    }
}

/// How the checkpoint's keys describe the model.
struct Architecture {
    image_channels: usize,
    blocks: usize,
    flows: usize,
    width: usize,
    affine: bool,
    /// Whether each block's 1x1 convolutions are LU-decomposed.
    lu: Vec<bool>,
}

/// Reads the architecture off the key names and shapes of the first flow of each block.
fn architecture(ckpt: &mut Checkpoint) -> Result<Architecture> {
    let first = "blocks.0.flows.0.";
    if !ckpt.has(&format!("{first}actnorm.loc")) {
        let hint = if ckpt.has("flow.layers.1.actnorm.bias") {
            "its keys (flow.layers.*) are y0ast/Glow-PyTorch's: use --from y0ast"
        } else if ckpt.has("levels.0.steps.0.actnorm.bias") {
            "its keys (levels.*) are glowflow's own: load it as a model directory"
        } else {
            "save model.state_dict() of rosinality's Glow (the keys blocks.0.flows.0.* are absent)"
        };
        return Err(ckpt.error(format!(
            "key {first}actnorm.loc is missing: not a rosinality/glow-pytorch checkpoint; {hint}"
        )));
    }
    let c = ckpt.shape(&format!("{first}actnorm.loc"))?;
    let channels = c.get(1).copied().unwrap_or(0);
    if c.len() != 4 || channels == 0 || channels % 4 != 0 {
        return Err(ckpt.error(format!(
            "key {first}actnorm.loc has shape {c:?}; rosinality's ActNorm is [1, 4 · C, 1, 1]"
        )));
    }
    let blocks = ckpt.count("blocks.");
    let flows = ckpt.count("blocks.0.flows.");
    let net0 = ckpt.shape(&format!("{first}coupling.net.0.weight"))?;
    let out = ckpt.shape(&format!("{first}coupling.net.4.conv.weight"))?;
    let (width, affine) = match (net0.first(), out.first()) {
        (Some(&w), Some(&o)) if o == channels || o == channels / 2 => (w, o == channels),
        _ => {
            return Err(ckpt.error(format!(
                "key {first}coupling.net.4.conv.weight has shape {out:?}; rosinality's coupling \
                 ends in {channels} (affine) or {} (additive) channels",
                channels / 2
            )))
        }
    };
    let lu = (0..blocks)
        .map(|b| ckpt.has(&format!("blocks.{b}.flows.0.invconv.w_p")))
        .collect();
    let arch = Architecture {
        image_channels: channels / 4,
        blocks,
        flows,
        width,
        affine,
        lu,
    };
    ckpt.architecture = format!(
        "in_channel {}, n_block {blocks}, n_flow {flows}, width {width}, {}",
        arch.image_channels,
        if affine { "affine" } else { "additive" }
    );
    Ok(arch)
}

/// Converts rosinality's `state` (read from `path`) to our parameters and config.
pub fn to_glow(
    state: &StateDict,
    options: &ImportOptions,
    path: &Path,
) -> Result<(GlowConfig, StateDict)> {
    let stripped = strip_wrapper_prefix(state, "blocks.0.flows.0.actnorm.loc");
    let mut ckpt = Checkpoint::new(&stripped, path, Peer::Rosinality);
    let arch = architecture(&mut ckpt)?;
    let image = options.image.ok_or_else(|| {
        ckpt.error(format!(
            "rosinality/glow-pytorch checkpoints do not record the image size; pass --image \
             {}xHxW (the size the model was trained on, e.g. {}x64x64 for train.py's default)",
            arch.image_channels, arch.image_channels
        ))
    })?;
    if arch.image_channels != image.channels {
        return Err(ckpt.error(format!(
            "the checkpoint is for {}-channel images (blocks.0.flows.0.actnorm.loc has {} = 4 · {} \
             channels), but --image says {}: pass --image {}x{}x{}",
            arch.image_channels,
            4 * arch.image_channels,
            arch.image_channels,
            image.channels,
            arch.image_channels,
            image.height,
            image.width
        )));
    }
    // A checkpoint with any plain 1x1 convolution becomes a model without LU (see the module doc).
    let lu = arch.lu.iter().all(|&l| l);
    let config = validated(
        GlowConfig {
            image,
            levels: arch.blocks,
            steps: arch.flows,
            width: arch.width,
            coupling: if arch.affine {
                CouplingKind::Affine
            } else {
                CouplingKind::Additive
            },
            scale_floor: 0.0,
            permutation: PermutationKind::InvConv,
            lu,
            n_bits: options.n_bits.unwrap_or(Peer::Rosinality.default_n_bits()),
            learn_top: true,
            n_classes: 0,
            class_head: false,
            padding: Padding::Zero,
            zero_conv_padding: Some(Padding::Ones),
            hidden_norm: HiddenNorm::Bias,
            actnorm_logscale_factor: 1.0,
            actnorm_scale: ActNormScale::Linear,
            zero_logscale_factor: ZERO_CONV_FACTOR,
            seed: 0,
        },
        path,
    )?;
    let mut out = StateDict::new();
    let shapes = config.level_shapes();
    for (l, &[c, _, _]) in shapes.iter().enumerate() {
        for k in 0..arch.flows {
            let theirs = format!("blocks.{l}.flows.{k}.");
            take_actnorm(&mut ckpt, &theirs, l, k, c, &mut out)?;
            take_invconv(&mut ckpt, &theirs, l, k, c, arch.lu[l], lu, &mut out)?;
            take_coupling(&mut ckpt, &theirs, l, k, c, &arch, &mut out)?;
        }
        let prior = format!("blocks.{l}.prior.");
        if l + 1 < shapes.len() {
            // Split prior: c/2 -> c, halves (mean, log_sd) -> interleaved.
            let order = interleave(c / 2, false);
            zero_conv(c / 2, order).take(
                &mut ckpt,
                &prior,
                &format!("levels.{l}.split.prior."),
                &mut out,
            )?;
        } else {
            // Top prior on zeros: C -> 2C; ours is 2C -> 2C, its extra inputs get zero weights.
            let c2 = 2 * c;
            let order: Vec<usize> = (0..c2).collect();
            let mut top = StateDict::new();
            zero_conv(c, order).take(&mut ckpt, &prior, "top.learned.", &mut top)?;
            let weight = ours(&top, "top.learned.conv.weight")?;
            let padded: Vec<f32> = weight
                .chunks(c * 9)
                .flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(0.0, c * 9)))
                .collect();
            top.insert(
                "top.learned.conv.weight".into(),
                f32_tensor(&[c2, c2, 3, 3], padded),
            );
            out.extend(top);
        }
    }
    ckpt.finish()?;
    Ok((config, out))
}

fn take_actnorm(
    ckpt: &mut Checkpoint,
    theirs: &str,
    l: usize,
    k: usize,
    c: usize,
    out: &mut StateDict,
) -> Result<()> {
    let loc = ckpt.take(&format!("{theirs}actnorm.loc"), &[1, c, 1, 1])?;
    let scale = ckpt.take(&format!("{theirs}actnorm.scale"), &[1, c, 1, 1])?;
    let initialized = ckpt.take(&format!("{theirs}actnorm.initialized"), &[])?;
    out.insert(step_key(l, k, "actnorm.bias"), f32_tensor(&[c], loc));
    out.insert(step_key(l, k, "actnorm.logs"), f32_tensor(&[c], scale));
    out.insert(
        step_key(l, k, "actnorm.initialized"),
        f32_tensor(&[1], initialized),
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn take_invconv(
    ckpt: &mut Checkpoint,
    theirs: &str,
    l: usize,
    k: usize,
    c: usize,
    their_lu: bool,
    our_lu: bool,
    out: &mut StateDict,
) -> Result<()> {
    let key = |name: &str| format!("{theirs}invconv.{name}");
    if !their_lu {
        let weight = ckpt.take(&key("weight"), &[c, c, 1, 1])?;
        out.insert(
            step_key(l, k, "permutation.Conv.weight"),
            f32_tensor(&[c, c], weight),
        );
        return Ok(());
    }
    let p = ckpt.take(&key("w_p"), &[c, c])?;
    let lower = ckpt.take(&key("w_l"), &[c, c])?;
    let upper = ckpt.take(&key("w_u"), &[c, c])?;
    let sign = ckpt.take(&key("s_sign"), &[c])?;
    let log_s = ckpt.take(&key("w_s"), &[c])?;
    ckpt.take_fixed(&key("u_mask"), &[c, c], &strictly_upper(c))?;
    ckpt.take_fixed(&key("l_mask"), &[c, c], &strictly_lower(c))?;
    ckpt.take_fixed(&key("l_eye"), &[c, c], &identity(c))?;
    if our_lu {
        for (name, shape, values) in [
            ("p", vec![c, c], p),
            ("l", vec![c, c], lower),
            ("u", vec![c, c], upper),
            ("sign_s", vec![c], sign),
            ("log_s", vec![c], log_s),
        ] {
            out.insert(
                step_key(l, k, &format!("permutation.ConvLu.{name}")),
                f32_tensor(&shape, values),
            );
        }
    } else {
        let weight = lu_product(&p, &lower, &upper, &sign, &log_s, c);
        out.insert(
            step_key(l, k, "permutation.Conv.weight"),
            f32_tensor(&[c, c], weight),
        );
    }
    Ok(())
}

/// `W = P (tril(L, -1) + I)(triu(U, 1) + diag(sign · exp(log_s)))` in f64, rounded to f32.
fn lu_product(p: &[f32], l: &[f32], u: &[f32], sign: &[f32], log_s: &[f32], c: usize) -> Vec<f32> {
    let at = |m: &[f32], i: usize, j: usize| f64::from(m[i * c + j]);
    let lower = |i: usize, j: usize| match i.cmp(&j) {
        std::cmp::Ordering::Greater => at(l, i, j),
        std::cmp::Ordering::Equal => 1.0,
        std::cmp::Ordering::Less => 0.0,
    };
    let upper = |i: usize, j: usize| match i.cmp(&j) {
        std::cmp::Ordering::Less => at(u, i, j),
        std::cmp::Ordering::Equal => f64::from(sign[i]) * f64::from(log_s[i]).exp(),
        std::cmp::Ordering::Greater => 0.0,
    };
    let lu: Vec<f64> = (0..c * c)
        .map(|ij| (0..c).map(|m| lower(ij / c, m) * upper(m, ij % c)).sum())
        .collect();
    (0..c * c)
        .map(|ij| {
            (0..c)
                .map(|m| at(p, ij / c, m) * lu[m * c + ij % c])
                .sum::<f64>() as f32
        })
        .collect()
}

fn take_coupling(
    ckpt: &mut Checkpoint,
    theirs: &str,
    l: usize,
    k: usize,
    c: usize,
    arch: &Architecture,
    out: &mut StateDict,
) -> Result<()> {
    let w = arch.width;
    let net = |i: usize, name: &str| format!("{theirs}coupling.net.{i}.{name}");
    let ours_net = |name: &str| step_key(l, k, &format!("coupling.net.{name}"));
    for (i, conv, shape) in [
        (0, "conv_in", [w, c / 2, 3, 3]),
        (2, "conv_hidden", [w, w, 1, 1]),
    ] {
        let weight = ckpt.take(&net(i, "weight"), &shape)?;
        let bias = ckpt.take(&net(i, "bias"), &[w])?;
        out.insert(
            ours_net(&format!("{conv}.conv.weight")),
            f32_tensor(&shape, weight),
        );
        out.insert(
            ours_net(&format!("{conv}.conv.bias")),
            f32_tensor(&[w], bias),
        );
    }
    // Affine: log_s, t = chunk(2) -> ours t = h[0::2], log s = h[1::2].
    let order = if arch.affine {
        interleave(c / 2, true)
    } else {
        (0..c / 2).collect()
    };
    zero_conv(w, order).take(
        ckpt,
        &format!("{theirs}coupling.net.4."),
        &step_key(l, k, "coupling.net.conv_out."),
        out,
    )
}

/// Why `config` cannot be written as a rosinality checkpoint, if it cannot.
fn unsupported(config: &GlowConfig) -> Option<String> {
    let need = |what: &str, fix: &str| Some(format!("{what}; rosinality/glow-pytorch {fix}"));
    if config.coupling == CouplingKind::AffineExp {
        return need(
            "coupling = affine-exp",
            "has additive and affine (sigmoid) couplings only",
        );
    }
    if config.scale_floor != 0.0 {
        return need(
            "scale_floor is not 0",
            "has no scale floor in its affine coupling (scale = sigmoid(r + 2))",
        );
    }
    if config.permutation != PermutationKind::InvConv {
        return need(
            "permutation is not inv-conv",
            "mixes channels with 1x1 convolutions only",
        );
    }
    if config.padding != Padding::Zero {
        return need(
            &format!("padding = {:?}", config.padding),
            "pads its hidden convolutions with zeros (padding = zero)",
        );
    }
    if config.zero_padding() != Padding::Ones {
        return need(
            "zero_conv_padding is not ones",
            "pads its zero convolutions with ones (zero_conv_padding = ones)",
        );
    }
    if config.hidden_norm != HiddenNorm::Bias {
        return need(
            "hidden_norm = actnorm",
            "uses biased hidden convolutions (hidden_norm = bias)",
        );
    }
    if config.n_classes > 0 {
        return need("n_classes > 0", "has no class-conditional prior");
    }
    None
}

/// Our parameters (`ours_state`, of a model built from `config`) as rosinality's `state_dict`.
/// Options it cannot represent are an error naming them. An `exp` ActNorm is written as
/// `scale = exp(s · logs)`, a zero-convolution factor other than 3 is folded into the scale, and
/// the top prior's kernels over inputs `i` and `C + i` are added (its input is zeros padded with
/// ones, so only their sum acts): the same function up to f32 rounding.
pub fn from_glow(config: &GlowConfig, ours_state: &StateDict) -> Result<StateDict> {
    if let Some(reason) = unsupported(config) {
        return Err(GlowError::Config(format!(
            "cannot export to rosinality/glow-pytorch: {reason}"
        )));
    }
    let mut theirs = StateDict::new();
    let shapes = config.level_shapes();
    let zero_factor = (config.zero_logscale_factor / ZERO_CONV_FACTOR) as f32;
    for (l, &[c, _, _]) in shapes.iter().enumerate() {
        let last = l + 1 == shapes.len();
        for k in 0..config.steps {
            let get = |rest: &str| ours(ours_state, &step_key(l, k, rest));
            let t = format!("blocks.{l}.flows.{k}.");
            put_actnorm(&mut theirs, config, &get, &t, c)?;
            put_invconv(&mut theirs, config.lu, last, &get, &t, c)?;
            let w = config.width;
            for (i, conv, shape) in [
                (0, "conv_in", [w, c / 2, 3, 3]),
                (2, "conv_hidden", [w, w, 1, 1]),
            ] {
                let net = format!("{t}coupling.net.{i}.");
                let ours_conv = format!("coupling.net.{conv}.conv.");
                put(
                    &mut theirs,
                    format!("{net}weight"),
                    &shape,
                    get(&format!("{ours_conv}weight"))?,
                );
                put(
                    &mut theirs,
                    format!("{net}bias"),
                    &[w],
                    get(&format!("{ours_conv}bias"))?,
                );
            }
            let order = if config.coupling == CouplingKind::Additive {
                (0..c / 2).collect()
            } else {
                interleave(c / 2, true)
            };
            let conv_out = ["conv.weight", "conv.bias", "logs"]
                .map(|name| get(&format!("coupling.net.conv_out.{name}")));
            let [weight, bias, logs] = conv_out;
            zero_conv(w, order).put(
                &mut theirs,
                &format!("{t}coupling.net.4."),
                [&weight?, &bias?, &logs?],
                zero_factor,
            );
        }
        let prior = format!("blocks.{l}.prior.");
        if !last {
            let get = |rest: &str| ours(ours_state, &format!("levels.{l}.split.prior.{rest}"));
            let [weight, bias, logs] = ["conv.weight", "conv.bias", "logs"].map(get);
            zero_conv(c / 2, interleave(c / 2, false)).put(
                &mut theirs,
                &prior,
                [&weight?, &bias?, &logs?],
                zero_factor,
            );
        } else {
            put_top(&mut theirs, config, ours_state, c, zero_factor, &prior)?;
        }
    }
    Ok(theirs)
}

fn put_actnorm(
    theirs: &mut StateDict,
    config: &GlowConfig,
    get: &dyn Fn(&str) -> Result<Vec<f32>>,
    t: &str,
    c: usize,
) -> Result<()> {
    let logs = get("actnorm.logs")?;
    let scale = match config.actnorm_scale {
        ActNormScale::Linear => logs,
        ActNormScale::Exp => {
            let s = config.actnorm_logscale_factor as f32;
            logs.iter().map(|x| (x * s).exp()).collect()
        }
    };
    put(
        theirs,
        format!("{t}actnorm.loc"),
        &[1, c, 1, 1],
        get("actnorm.bias")?,
    );
    put(theirs, format!("{t}actnorm.scale"), &[1, c, 1, 1], scale);
    let initialized = get("actnorm.initialized")?[0] > 0.5;
    theirs.insert(
        format!("{t}actnorm.initialized"),
        HostTensor {
            shape: vec![],
            values: Values::U8(vec![u8::from(initialized)]),
        },
    );
    Ok(())
}

/// The 1x1 convolution: ours as it is, or (their last block is always LU) factored.
fn put_invconv(
    theirs: &mut StateDict,
    our_lu: bool,
    last_block: bool,
    get: &dyn Fn(&str) -> Result<Vec<f32>>,
    t: &str,
    c: usize,
) -> Result<()> {
    let inv = format!("{t}invconv.");
    if !our_lu && !last_block {
        put(
            theirs,
            format!("{inv}weight"),
            &[c, c, 1, 1],
            get("permutation.Conv.weight")?,
        );
        return Ok(());
    }
    let [p, lower, upper, sign, log_s] = if our_lu {
        ["p", "l", "u", "sign_s", "log_s"].map(|name| get(&format!("permutation.ConvLu.{name}")))
    } else {
        lu_factors(&get("permutation.Conv.weight")?, c).map(Ok)
    };
    put(theirs, format!("{inv}w_p"), &[c, c], p?);
    put(theirs, format!("{inv}w_l"), &[c, c], lower?);
    put(theirs, format!("{inv}w_u"), &[c, c], upper?);
    put(theirs, format!("{inv}s_sign"), &[c], sign?);
    put(theirs, format!("{inv}w_s"), &[c], log_s?);
    put(theirs, format!("{inv}u_mask"), &[c, c], strictly_upper(c));
    put(theirs, format!("{inv}l_mask"), &[c, c], strictly_lower(c));
    put(theirs, format!("{inv}l_eye"), &[c, c], identity(c));
    Ok(())
}

/// `W = P L U` factored on the host in f64 as rosinality stores it: `w_p`, `w_l`, `triu(U, 1)`,
/// the signs and log-magnitudes of `diag(U)`, each rounded to f32.
fn lu_factors(weight: &[f32], c: usize) -> [Vec<f32>; 5] {
    let w: Vec<f64> = weight.iter().map(|&x| f64::from(x)).collect();
    let f = host_linalg::lu(&w, c);
    let diag: Vec<f64> = (0..c).map(|i| f.u[i * c + i]).collect();
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let upper = (0..c * c)
        .map(|ij| if ij % c > ij / c { f.u[ij] } else { 0.0 })
        .collect();
    [
        to_f32(f.p),
        to_f32(f.l),
        to_f32(upper),
        to_f32(diag.iter().map(|d| d.signum()).collect()),
        to_f32(diag.iter().map(|d| d.abs().ln()).collect()),
    ]
}

/// The top prior: our `2C -> 2C` kernels folded to `C -> 2C` (see [`from_glow`]); a model
/// without a learned top has the standard normal prior, all zeros there.
fn put_top(
    theirs: &mut StateDict,
    config: &GlowConfig,
    ours_state: &StateDict,
    c: usize,
    factor: f32,
    prefix: &str,
) -> Result<()> {
    let c2 = 2 * c;
    let (weight, bias, logs) = if config.learn_top {
        let weight = ours(ours_state, "top.learned.conv.weight")?;
        let folded = weight
            .chunks(c2 * 9)
            .flat_map(|row| (0..c * 9).map(move |j| row[j] + row[c * 9 + j]))
            .collect();
        (
            folded,
            ours(ours_state, "top.learned.conv.bias")?,
            ours(ours_state, "top.learned.logs")?,
        )
    } else {
        (vec![0.0; c2 * c * 9], vec![0.0; c2], vec![0.0; c2])
    };
    let order: Vec<usize> = (0..c2).collect();
    zero_conv(c, order).put(theirs, prefix, [&weight, &bias, &logs], factor);
    Ok(())
}

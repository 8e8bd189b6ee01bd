//! y0ast/Glow-PyTorch (`model.py`, `modules.py`) checkpoints as glowflow models, and back.
//!
//! Its `Glow` follows openai/glow's code closely, so most of it is glowflow's defaults:
//!
//! ```text
//! flow.layers       per level: SqueezeLayer, K × FlowStep, Split2d (not on the last level)
//! squeeze           view(b, c, h/2, 2, w/2, 2).permute(0, 1, 3, 5, 2, 4)   = ours
//! ActNorm2d         (x + bias) · exp(logs), log|det| = H·W·Σ logs          actnorm_logscale_factor = 1
//! InvertibleConv1x1 p (lower ⊙ l_mask + I)(upper ⊙ l_maskᵀ + diag(sign_s · exp(log_s)))   = ours (lu)
//!                   or weight [C, C]                                        = ours (no lu)
//! coupling block    Conv2d+ActNorm → ReLU → Conv2d(1x1)+ActNorm → ReLU → Conv2dZeros       hidden_norm = actnorm
//!                   shift, scale = h[:, 0::2], h[:, 1::2]; y_b = (x_b + shift) · sigmoid(scale + 2)   = ours
//! Conv2dZeros       (conv(x) + b) · exp(3 · logs), "same" zero padding     padding = zero
//! Split2d           mean, logs = Conv2dZeros(z1)[:, 0::2], [:, 1::2]         = ours
//! learn_top_fn      mean, logs = Conv2dZeros(2C → 2C)(prior_h = 0) halves   = ours (learn_top)
//! project_ycond     (y Wᵀ + b) · exp(3 · logs) added to the top's h          = ours (n_classes), W transposed
//! project_class     (mean_hw(z) Wᵀ + b) · exp(3 · logs), the classifier head = ours (class_head), W transposed
//! log p(x)          -log(256) · D + logdet + log N(z), x = v/256 - 0.5 + U/256   = ours (n_bits 8)
//! ```
//!
//! The shapes say everything but the bits: `prior_h` is `[1, 2C, H/2^L, W/2^L]`, so the image
//! size comes from the checkpoint. `project_class`, the classifier head of `y_condition`, is
//! ours (`class_head`, W transposed): y0ast's conditional model always has one, so an export of
//! a conditional model without a head writes it as zeros, as y0ast initialises it.
//! ActNorm's `inited` flag is not in y0ast's `state_dict` (its loaders call
//! `set_actnorm_init()`); an imported model counts as initialised. The shuffle and reverse
//! permutations are not in the `state_dict` either, so only `invconv` checkpoints are imported.

use std::path::Path;

use super::keys::{
    f32_tensor, ours, put, strip_wrapper_prefix, Checkpoint, ZeroConv, ZeroConvLayout,
};
use super::torch_file::StateDict;
use super::{validated, ImportOptions, Peer};
use crate::error::{GlowError, Result};
use crate::flow::actnorm::ActNormScale;
use crate::flow::conv::Padding;
use crate::flow::coupling::CouplingKind;
use crate::flow::permute::PermutationKind;
use crate::model::config::{GlowConfig, HiddenNorm, ImageShape};

/// The scale factor of y0ast's `Conv2dZeros` and `LinearZeros`, `exp(3 · logs)`.
const ZERO_FACTOR: f64 = 3.0;

/// The index in `flow.layers` of level `l`'s first step (after its squeeze), with `k` steps.
fn first_step(l: usize, k: usize) -> usize {
    l * (k + 2) + 1
}

/// Converts y0ast's `state` (read from `path`) to our parameters and config; `options.image`
/// is checked against the checkpoint's shapes.
pub fn to_glow(
    state: &StateDict,
    options: &ImportOptions,
    path: &Path,
) -> Result<(GlowConfig, StateDict)> {
    let stripped = strip_wrapper_prefix(state, "flow.layers.1.actnorm.bias");
    let mut ckpt = Checkpoint::new(&stripped, path, Peer::Y0ast);
    let config = validated(config_of(&mut ckpt, options)?, path)?;
    let mut out = StateDict::new();
    let shapes = config.level_shapes();
    let k_steps = config.steps;
    for (l, &[c, _, _]) in shapes.iter().enumerate() {
        for k in 0..k_steps {
            let t = format!("flow.layers.{}.", first_step(l, k_steps) + k);
            let o = format!("levels.{l}.steps.{k}.");
            take_actnorm(
                &mut ckpt,
                &format!("{t}actnorm."),
                &format!("{o}actnorm."),
                c,
                &mut out,
            )?;
            take_invconv(
                &mut ckpt,
                &format!("{t}invconv."),
                &format!(
                    "{o}permutation.{}.",
                    if config.lu { "ConvLu" } else { "Conv" }
                ),
                c,
                config.lu,
                &mut out,
            )?;
            let w = config.width;
            for (i, conv, shape) in [
                (0, "conv_in", [w, c / 2, 3, 3]),
                (2, "conv_hidden", [w, w, 1, 1]),
            ] {
                let theirs = format!("{t}block.{i}.");
                let mine = format!("{o}coupling.net.{conv}.");
                let weight = ckpt.take(&format!("{theirs}conv.weight"), &shape)?;
                out.insert(format!("{mine}conv.weight"), f32_tensor(&shape, weight));
                take_actnorm(
                    &mut ckpt,
                    &format!("{theirs}actnorm."),
                    &format!("{mine}norm."),
                    w,
                    &mut out,
                )?;
            }
            let c_out = match config.coupling {
                CouplingKind::Additive => c / 2,
                _ => c,
            };
            zero_conv(w, c_out).take(
                &mut ckpt,
                &format!("{t}block.4."),
                &format!("{o}coupling.net.conv_out."),
                &mut out,
            )?;
        }
        if l + 1 < shapes.len() {
            let t = format!("flow.layers.{}.conv.", first_step(l, k_steps) + k_steps);
            zero_conv(c / 2, c).take(
                &mut ckpt,
                &t,
                &format!("levels.{l}.split.prior."),
                &mut out,
            )?;
        }
    }
    let [c_top, h, w] = *shapes.last().expect("validated configs have levels");
    let c2 = 2 * c_top;
    ckpt.take_fixed("prior_h", &[1, c2, h, w], &vec![0.0; c2 * h * w])?;
    if config.learn_top {
        zero_conv(c2, c2).take(&mut ckpt, "learn_top_fn.", "top.learned.", &mut out)?;
    }
    if config.n_classes > 0 {
        let n = config.n_classes;
        take_linear(
            &mut ckpt,
            "project_ycond.",
            "top.class_bias.",
            [n, c2],
            &mut out,
        )?;
        take_linear(
            &mut ckpt,
            "project_class.",
            "top.classifier.",
            [c_top, n],
            &mut out,
        )?;
    }
    ckpt.finish()?;
    Ok((config, out))
}

/// The architecture from the key names and shapes.
fn config_of(ckpt: &mut Checkpoint, options: &ImportOptions) -> Result<GlowConfig> {
    let first = "flow.layers.1.";
    if !ckpt.has(&format!("{first}actnorm.bias")) {
        let hint = if ckpt.has("blocks.0.flows.0.actnorm.loc") {
            "its keys (blocks.*) are rosinality/glow-pytorch's: use --from rosinality"
        } else if ckpt.has("levels.0.steps.0.actnorm.bias") {
            "its keys (levels.*) are glowflow's own: load it as a model directory"
        } else {
            "save model.state_dict() of y0ast's Glow (the keys flow.layers.1.* are absent)"
        };
        return Err(ckpt.error(format!(
            "key {first}actnorm.bias is missing: not a y0ast/Glow-PyTorch checkpoint; {hint}"
        )));
    }
    let c = ckpt
        .shape(&format!("{first}actnorm.bias"))?
        .get(1)
        .copied()
        .unwrap_or(0);
    let steps = (1..)
        .take_while(|i| ckpt.has(&format!("flow.layers.{i}.actnorm.bias")))
        .count();
    let levels = (0..)
        .take_while(|&l| {
            ckpt.has(&format!(
                "flow.layers.{}.actnorm.bias",
                first_step(l, steps)
            ))
        })
        .count();
    if !ckpt.has(&format!("{first}invconv.weight")) && !ckpt.has(&format!("{first}invconv.p")) {
        return Err(ckpt.error(format!(
            "key {first}invconv.weight (or invconv.p) is missing: the checkpoint was trained with \
             --flow_permutation shuffle or reverse, whose permutation y0ast does not store in the \
             state_dict; glowflow imports --flow_permutation invconv checkpoints"
        )));
    }
    let lu = ckpt.has(&format!("{first}invconv.p"));
    let width = ckpt
        .shape(&format!("{first}block.0.conv.weight"))?
        .first()
        .copied()
        .unwrap_or(0);
    let out = ckpt
        .shape(&format!("{first}block.4.conv.weight"))?
        .first()
        .copied()
        .unwrap_or(0);
    let coupling = if out == c {
        CouplingKind::Affine
    } else {
        CouplingKind::Additive
    };
    let prior = ckpt.shape("prior_h")?;
    let [_, _, top_h, top_w] = *prior else {
        return Err(ckpt.error(format!(
            "key prior_h has shape {prior:?}; y0ast's is [1, 2C, H, W]"
        )));
    };
    // The top is the image squeezed L times: H = H_top · 2^L (0, which validation rejects, on
    // overflow).
    let unsqueezed = |top: usize| {
        u32::try_from(levels)
            .ok()
            .and_then(|l| 1usize.checked_shl(l))
            .and_then(|factor| top.checked_mul(factor))
            .unwrap_or(0)
    };
    let image = ImageShape {
        channels: c / 4,
        height: unsqueezed(top_h),
        width: unsqueezed(top_w),
    };
    let n_classes = if ckpt.has("project_ycond.linear.weight") {
        ckpt.shape("project_ycond.linear.weight")?
            .get(1)
            .copied()
            .unwrap_or(0)
    } else {
        0
    };
    ckpt.architecture = format!(
        "{}x{}x{} images, L {levels}, K {steps}, hidden {width}, {coupling:?} coupling, {}",
        image.channels,
        image.height,
        image.width,
        if lu {
            "LU 1x1 convolutions"
        } else {
            "1x1 convolutions"
        }
    );
    if options.image.is_some_and(|given| given != image) {
        let given = options.image.unwrap_or(image);
        return Err(ckpt.error(format!(
            "the checkpoint is for {}x{}x{} images (from blocks.0's channels and prior_h), but \
             --image says {}x{}x{}: pass --image {}x{}x{} or leave it out",
            image.channels,
            image.height,
            image.width,
            given.channels,
            given.height,
            given.width,
            image.channels,
            image.height,
            image.width
        )));
    }
    Ok(GlowConfig {
        image,
        levels,
        steps,
        width,
        coupling,
        scale_floor: 0.0,
        permutation: PermutationKind::InvConv,
        lu,
        n_bits: options.n_bits.unwrap_or(Peer::Y0ast.default_n_bits()),
        learn_top: ckpt.has("learn_top_fn.conv.weight"),
        n_classes,
        class_head: n_classes > 0,
        padding: Padding::Zero,
        zero_conv_padding: None,
        hidden_norm: HiddenNorm::Actnorm,
        actnorm_logscale_factor: 1.0,
        actnorm_scale: ActNormScale::Exp,
        zero_logscale_factor: ZERO_FACTOR,
        seed: 0,
    })
}

fn take_actnorm(
    ckpt: &mut Checkpoint,
    theirs: &str,
    mine: &str,
    c: usize,
    out: &mut StateDict,
) -> Result<()> {
    out.insert(
        format!("{mine}bias"),
        f32_tensor(&[c], ckpt.take(&format!("{theirs}bias"), &[1, c, 1, 1])?),
    );
    out.insert(
        format!("{mine}logs"),
        f32_tensor(&[c], ckpt.take(&format!("{theirs}logs"), &[1, c, 1, 1])?),
    );
    out.insert(format!("{mine}initialized"), f32_tensor(&[1], vec![1.0]));
    Ok(())
}

fn take_invconv(
    ckpt: &mut Checkpoint,
    theirs: &str,
    mine: &str,
    c: usize,
    lu: bool,
    out: &mut StateDict,
) -> Result<()> {
    let names: &[(&str, &str, usize)] = if lu {
        &[
            ("p", "p", 2),
            ("lower", "l", 2),
            ("upper", "u", 2),
            ("sign_s", "sign_s", 1),
            ("log_s", "log_s", 1),
        ]
    } else {
        &[("weight", "weight", 2)]
    };
    for &(their_name, our_name, rank) in names {
        let shape = if rank == 2 { vec![c, c] } else { vec![c] };
        let values = ckpt.take(&format!("{theirs}{their_name}"), &shape)?;
        out.insert(format!("{mine}{our_name}"), f32_tensor(&shape, values));
    }
    Ok(())
}

/// Why `config` cannot be written as a y0ast checkpoint, if it cannot.
fn unsupported(config: &GlowConfig) -> Option<String> {
    let reason = if config.coupling == CouplingKind::AffineExp {
        "coupling = affine-exp; y0ast/Glow-PyTorch has additive and affine (sigmoid) couplings only"
    } else if config.scale_floor != 0.0 {
        "scale_floor is not 0; y0ast/Glow-PyTorch's affine coupling has no scale floor \
         (scale = sigmoid(r + 2))"
    } else if config.permutation != PermutationKind::InvConv {
        "permutation is not inv-conv; y0ast/Glow-PyTorch does not store its shuffle and reverse \
         permutations in the state_dict"
    } else if config.padding != Padding::Zero || config.zero_padding() != Padding::Zero {
        "padding (or zero_conv_padding) is not zero; y0ast/Glow-PyTorch pads every convolution \
         with zeros"
    } else if config.hidden_norm != HiddenNorm::Actnorm {
        "hidden_norm = bias; y0ast/Glow-PyTorch's hidden convolutions use ActNorm \
         (hidden_norm = actnorm)"
    } else if config.actnorm_scale != ActNormScale::Exp {
        "actnorm_scale = linear; y0ast/Glow-PyTorch stores log-scales (actnorm_scale = exp)"
    } else {
        return None;
    };
    Some(reason.to_string())
}

/// Our parameters (`ours_state`, of a model built from `config`) as y0ast's `state_dict`.
/// Options it cannot represent are an error naming them. ActNorm log-scale factors other than 1
/// and zero-convolution factors other than 3 are folded into the stored log-scales, which
/// computes the same function up to f32 rounding.
pub fn from_glow(config: &GlowConfig, ours_state: &StateDict) -> Result<StateDict> {
    if let Some(reason) = unsupported(config) {
        return Err(GlowError::Config(format!(
            "cannot export to y0ast/Glow-PyTorch: {reason}"
        )));
    }
    let actnorm = config.actnorm_logscale_factor as f32;
    let zero = (config.zero_logscale_factor / ZERO_FACTOR) as f32;
    let get = |key: &str| ours(ours_state, key);
    let scaled = |key: &str, factor: f32| -> Result<Vec<f32>> {
        Ok(get(key)?.iter().map(|x| x * factor).collect())
    };
    let mut theirs = StateDict::new();
    let shapes = config.level_shapes();
    let k_steps = config.steps;
    let w = config.width;
    for (l, &[c, _, _]) in shapes.iter().enumerate() {
        for k in 0..k_steps {
            let t = format!("flow.layers.{}.", first_step(l, k_steps) + k);
            let o = format!("levels.{l}.steps.{k}.");
            let mut put_actnorm = |prefix: String, mine: String, c: usize| -> Result<()> {
                put(
                    &mut theirs,
                    format!("{prefix}bias"),
                    &[1, c, 1, 1],
                    get(&format!("{mine}bias"))?,
                );
                put(
                    &mut theirs,
                    format!("{prefix}logs"),
                    &[1, c, 1, 1],
                    scaled(&format!("{mine}logs"), actnorm)?,
                );
                Ok(())
            };
            put_actnorm(format!("{t}actnorm."), format!("{o}actnorm."), c)?;
            for (i, conv) in [(0, "conv_in"), (2, "conv_hidden")] {
                put_actnorm(
                    format!("{t}block.{i}.actnorm."),
                    format!("{o}coupling.net.{conv}.norm."),
                    w,
                )?;
            }
            if config.lu {
                for (theirs_name, mine, shape) in [
                    ("p", "p", vec![c, c]),
                    ("lower", "l", vec![c, c]),
                    ("upper", "u", vec![c, c]),
                    ("sign_s", "sign_s", vec![c]),
                    ("log_s", "log_s", vec![c]),
                ] {
                    put(
                        &mut theirs,
                        format!("{t}invconv.{theirs_name}"),
                        &shape,
                        get(&format!("{o}permutation.ConvLu.{mine}"))?,
                    );
                }
            } else {
                put(
                    &mut theirs,
                    format!("{t}invconv.weight"),
                    &[c, c],
                    get(&format!("{o}permutation.Conv.weight"))?,
                );
            }
            for (i, conv, shape) in [
                (0, "conv_in", [w, c / 2, 3, 3]),
                (2, "conv_hidden", [w, w, 1, 1]),
            ] {
                put(
                    &mut theirs,
                    format!("{t}block.{i}.conv.weight"),
                    &shape,
                    get(&format!("{o}coupling.net.{conv}.conv.weight"))?,
                );
            }
            let c_out = if config.coupling == CouplingKind::Additive {
                c / 2
            } else {
                c
            };
            put_zero_conv(
                &mut theirs,
                ours_state,
                &format!("{t}block.4."),
                &format!("{o}coupling.net.conv_out."),
                [w, c_out],
                zero,
            )?;
        }
        if l + 1 < shapes.len() {
            let t = format!("flow.layers.{}.conv.", first_step(l, k_steps) + k_steps);
            put_zero_conv(
                &mut theirs,
                ours_state,
                &t,
                &format!("levels.{l}.split.prior."),
                [c / 2, c],
                zero,
            )?;
        }
    }
    let [c, h, w_top] = *shapes.last().expect("validated configs have levels");
    let c2 = 2 * c;
    put(
        &mut theirs,
        "prior_h".into(),
        &[1, c2, h, w_top],
        vec![0.0; c2 * h * w_top],
    );
    if config.learn_top {
        put_zero_conv(
            &mut theirs,
            ours_state,
            "learn_top_fn.",
            "top.learned.",
            [c2, c2],
            zero,
        )?;
    }
    if config.n_classes > 0 {
        let n = config.n_classes;
        let linear = |mine: &str| -> Result<[Vec<f32>; 3]> {
            Ok([
                get(&format!("{mine}weight"))?,
                get(&format!("{mine}bias"))?,
                scaled(&format!("{mine}logs"), zero)?,
            ])
        };
        put_linear(
            &mut theirs,
            "project_ycond.",
            [n, c2],
            linear("top.class_bias.")?,
        );
        // y0ast's conditional model always has the head; a model without one gets its zero
        // initialisation.
        let head = if config.class_head {
            linear("top.classifier.")?
        } else {
            [vec![0.0; c * n], vec![0.0; n], vec![0.0; n]]
        };
        put_linear(&mut theirs, "project_class.", [c, n], head);
    }
    Ok(theirs)
}

/// y0ast's `LinearZeros(inputs, outputs)` at `prefix` as our zero linear map at `mine` (its
/// weight transposed).
fn take_linear(
    ckpt: &mut Checkpoint,
    prefix: &str,
    mine: &str,
    [inputs, outputs]: [usize; 2],
    out: &mut StateDict,
) -> Result<()> {
    let weight = ckpt.take(&format!("{prefix}linear.weight"), &[outputs, inputs])?;
    let bias = ckpt.take(&format!("{prefix}linear.bias"), &[outputs])?;
    let logs = ckpt.take(&format!("{prefix}logs"), &[outputs])?;
    let weight = transposed(&weight, outputs, inputs);
    out.insert(
        format!("{mine}weight"),
        f32_tensor(&[inputs, outputs], weight),
    );
    out.insert(format!("{mine}bias"), f32_tensor(&[outputs], bias));
    out.insert(format!("{mine}logs"), f32_tensor(&[outputs], logs));
    Ok(())
}

/// Our zero linear map `[inputs, outputs]` (weight, bias and log-scales in y0ast's factor) as
/// y0ast's `LinearZeros` at `prefix`.
fn put_linear(
    theirs: &mut StateDict,
    prefix: &str,
    [inputs, outputs]: [usize; 2],
    [weight, bias, logs]: [Vec<f32>; 3],
) {
    let weight = transposed(&weight, inputs, outputs);
    put(
        theirs,
        format!("{prefix}linear.weight"),
        &[outputs, inputs],
        weight,
    );
    put(theirs, format!("{prefix}linear.bias"), &[outputs], bias);
    put(theirs, format!("{prefix}logs"), &[outputs], logs);
}

/// A row-major `rows × cols` matrix transposed (PyTorch's `Linear` stores `[out, in]`, ours
/// `[in, out]`).
fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|ij| values[(ij % rows) * cols + ij / rows])
        .collect()
}

/// Our zero convolution at `mine` as y0ast's `Conv2dZeros(c_in, c_out)` at `prefix`, its
/// log-scales times `factor` (our factor over their 3).
fn put_zero_conv(
    theirs: &mut StateDict,
    ours_state: &StateDict,
    prefix: &str,
    mine: &str,
    [c_in, c_out]: [usize; 2],
    factor: f32,
) -> Result<()> {
    let [weight, bias, logs] =
        ["conv.weight", "conv.bias", "logs"].map(|name| ours(ours_state, &format!("{mine}{name}")));
    zero_conv(c_in, c_out).put(theirs, prefix, [&weight?, &bias?, &logs?], factor);
    Ok(())
}

/// y0ast's `Conv2dZeros(c_in, c_out)`, its log-scale `logs` of shape `[C, 1, 1]`, in our order.
fn zero_conv(c_in: usize, c_out: usize) -> ZeroConv {
    ZeroConv {
        layout: ZeroConvLayout {
            scale_key: "logs",
            scale_shape: |c| vec![c, 1, 1],
        },
        c_in,
        order: (0..c_out).collect(),
    }
}

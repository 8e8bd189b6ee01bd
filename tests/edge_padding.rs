//! The claim in `src/flow/conv.rs`: a "same" convolution with openai/glow's edge-aware padding,
//! computed as `conv(x, W, zero padding) + conv(e, W_e, no padding)`, equals the convolution of
//! the explicitly padded input `[x_pad ; e]` (zeros around `x`, plus a channel `e` that is 1 in
//! the padded border and 0 inside) with the stacked kernel `[W ; W_e]`. Checked against that
//! padded convolution written out by hand in f64.

mod common;

use burn::tensor::Tensor;
use common::*;
use glowflow::flow::conv::SameConv2d;
use glowflow::tensor_ops::to_f64_vec;
use glowflow::Padding;
use rand::SeedableRng;

/// Cross-correlation (as `tf.nn.conv2d` and burn compute it) of `x` (`[N, C, H, W]`, zero-padded
/// by `k / 2` on every side, with the border-indicator channel appended when `edge` is given)
/// with `weight` (`[O, C, k, k]`), `edge` (`[O, 1, k, k]`) and `bias` (`[O]`), by hand.
fn padded_conv_by_hand(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    edge: Option<&Tensor<4>>,
    bias: &[f64],
) -> Vec<f64> {
    let [n, c_in, h, w] = x.dims();
    let [c_out, _, k, _] = weight.dims();
    let pad = k / 2;
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    let xs = to_f64_vec(x.clone());
    let ws = to_f64_vec(weight.clone());
    let es = edge.map(|e| to_f64_vec(e.clone()));
    // The explicit padded input: channels 0..C are x surrounded by zeros, channel C the border.
    let channels = c_in + usize::from(es.is_some());
    let mut padded = vec![0.0; n * channels * hp * wp];
    let at = |s: usize, c: usize, i: usize, j: usize| ((s * channels + c) * hp + i) * wp + j;
    for s in 0..n {
        for i in 0..hp {
            for j in 0..wp {
                let inside = (pad..pad + h).contains(&i) && (pad..pad + w).contains(&j);
                for c in 0..c_in {
                    if inside {
                        padded[at(s, c, i, j)] = xs[((s * c_in + c) * h + i - pad) * w + j - pad];
                    }
                }
                if es.is_some() && !inside {
                    padded[at(s, c_in, i, j)] = 1.0;
                }
            }
        }
    }
    let kernel = |o: usize, c: usize, a: usize, b: usize| match (&es, c == c_in) {
        (Some(e), true) => e[(o * k + a) * k + b],
        _ => ws[((o * c_in + c) * k + a) * k + b],
    };
    let mut y = Vec::with_capacity(n * c_out * h * w);
    for s in 0..n {
        for (o, &b_o) in bias.iter().enumerate().take(c_out) {
            for i in 0..h {
                for j in 0..w {
                    let mut sum = b_o;
                    for c in 0..channels {
                        for a in 0..k {
                            for b in 0..k {
                                sum += kernel(o, c, a, b) * padded[at(s, c, i + a, j + b)];
                            }
                        }
                    }
                    y.push(sum);
                }
            }
        }
    }
    y
}

/// A `2 -> 3` convolution with a `kernel`-wide kernel, every weight and the bias drawn at random.
fn random_conv(kernel: usize, padding: Padding) -> SameConv2d {
    let device = f64_device();
    let mut rng = rand::rngs::StdRng::seed_from_u64(kernel as u64);
    let conv = SameConv2d::normal([2, 3], kernel, 0.5, padding, true, &mut rng, &device);
    perturb(conv, 0.5, 7)
}

#[test]
fn edge_padded_conv_equals_the_explicitly_padded_conv_with_a_border_channel() {
    let device = f64_device();
    // Not square, and more than one sample: the border term is shared by the batch.
    let x = normal([2, 2, 4, 5], 1.0, 3, &device);
    for kernel in [3, 5] {
        for padding in [Padding::Edge, Padding::Zero] {
            let conv = random_conv(kernel, padding);
            let edge = conv.edge_weight.as_ref().map(|e| e.val());
            assert_eq!(edge.is_some(), padding == Padding::Edge, "{padding:?}");
            let bias = to_f64_vec(conv.bias.as_ref().expect("a bias").val());
            assert!(bias.iter().all(|b| b.abs() > 1e-6), "a non-zero bias");
            let expected = padded_conv_by_hand(&x, &conv.weight.val(), edge.as_ref(), &bias);
            let worst = max_abs_gap(&to_f64_vec(conv.forward(x.clone())), &expected);
            println!("k = {kernel}, {padding:?}: max |Δ| {worst:.3e}");
            assert!(
                worst < 1e-12,
                "k = {kernel}, {padding:?}: off by {worst:.3e}"
            );
        }
        // The border channel matters: edge padding differs from zero padding at the border
        // (and only there) when both use the same main kernel.
        let edge_conv = random_conv(kernel, Padding::Edge);
        let bias = to_f64_vec(edge_conv.bias.as_ref().expect("a bias").val());
        let zero_padded = padded_conv_by_hand(&x, &edge_conv.weight.val(), None, &bias);
        let got = to_f64_vec(edge_conv.forward(x.clone()));
        let (pad, [_, _, h, w]) = (kernel / 2, x.dims());
        for (index, (a, b)) in got.iter().zip(&zero_padded).enumerate() {
            let (i, j) = ((index / w) % h, index % w);
            let near_border = i < pad || j < pad || i + pad >= h || j + pad >= w;
            assert_eq!(
                (a - b).abs() > 1e-9,
                near_border,
                "k = {kernel}: pixel ({i}, {j}) differs by {:.3e}",
                (a - b).abs()
            );
        }
    }
}

#[test]
fn a_1x1_conv_has_no_border_channel() {
    let conv = random_conv(1, Padding::Edge);
    assert!(
        conv.edge_weight.is_none(),
        "a 1x1 kernel never sees padding"
    );
    let x = normal([2, 2, 3, 3], 1.0, 4, &f64_device());
    let bias = to_f64_vec(conv.bias.as_ref().expect("a bias").val());
    let expected = padded_conv_by_hand(&x, &conv.weight.val(), None, &bias);
    let worst = max_abs_gap(&to_f64_vec(conv.forward(x)), &expected);
    assert!(worst < 1e-12, "off by {worst:.3e}");
}

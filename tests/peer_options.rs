//! The layer options the PyTorch imports added, against oracles of their own in f64: padding
//! with ones (rosinality's zero convolutions) against an explicitly padded convolution, and the
//! linear ActNorm (rosinality's `scale · (x + loc)`) against its defining properties and a
//! brute-force Jacobian; and the imported models in f64 against the peers' own float64 outputs.
//! tests/import.rs checks the imported models in f32 against the peers.

mod common;

use burn::module::Param;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::Tensor;
use common::fixtures::{import, Reference};
use common::{brute_force_log_det, f64_device, max_abs_diff, normal, perturb, values};
use glowflow::flow::actnorm::{ActNorm, ActNormScale};
use glowflow::flow::conv::SameConv2d;
use glowflow::flow::InvertibleMap;
use glowflow::io::import::Peer;
use glowflow::tensor_ops::to_f64_vec;
use glowflow::Padding;
use rand::SeedableRng;

#[test]
fn ones_padded_conv_equals_the_conv_of_the_input_padded_with_ones() {
    let device = f64_device();
    let x = normal([2, 2, 4, 5], 1.0, 3, &device);
    for kernel in [1, 3, 5] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(kernel as u64);
        let conv = SameConv2d::normal([2, 3], kernel, 0.5, Padding::Ones, true, &mut rng, &device);
        let conv = perturb(conv, 0.5, 7);
        assert!(conv.edge_weight.is_none(), "no free border kernel");
        let pad = kernel / 2;
        let padded = x
            .clone()
            .pad([(pad, pad), (pad, pad)], PadMode::Constant(1.0));
        let bias = conv.bias.as_ref().map(Param::val);
        let valid = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let expected = conv2d(padded, conv.weight.val(), bias, valid);
        let worst = max_abs_diff(conv.forward(x.clone()), expected);
        assert!(worst < 1e-12, "k = {kernel}: off by {worst:.3e}");
    }
}

/// Data with per-channel means and scales far from 0 and 1.
fn shifted_scaled(device: &burn::tensor::Device) -> Tensor<4> {
    let x = normal([8, 4, 4, 4], 1.0, 11, device);
    let scale = Tensor::<1>::from_floats([0.1, 2.0, 5.0, 0.5], device).reshape([1, 4, 1, 1]);
    let shift = Tensor::<1>::from_floats([3.0, -1.0, 0.0, 10.0], device).reshape([1, 4, 1, 1]);
    x * scale + shift
}

#[test]
fn linear_actnorm_initialises_to_unit_variance_and_is_an_exact_bijection() {
    let device = f64_device();
    let layer = ActNorm::with_scale(4, ActNormScale::Linear, 1.0, &device);
    let x = normal([1, 4, 3, 3], 1.0, 5, &device);
    assert!(
        max_abs_diff(layer.forward(x.clone(), None).0, x) < 1e-15,
        "identity before init"
    );
    let (layer, y) = layer.data_init(shifted_scaled(&device), None);
    let mean = values(y.clone().mean_dims(&[0, 2, 3]).reshape([4]));
    let var = values(y.square().mean_dims(&[0, 2, 3]).reshape([4]));
    for c in 0..4 {
        assert!(mean[c].abs() < 1e-10, "channel {c} mean {}", mean[c]);
        assert!(
            (var[c] - 1.0).abs() < 1e-4,
            "channel {c} variance {}",
            var[c]
        );
    }
    // The stored parameter is the scale itself; a negative one is a valid bijection too.
    let scales = to_f64_vec(layer.logs.val());
    assert!(
        (scales[1] - 0.5).abs() < 1e-2,
        "1 / std of channel 1: {}",
        scales[1]
    );
    let flipped = ActNorm {
        logs: glowflow::tensor_ops::replace_value(layer.logs.clone(), layer.logs.val() * -1.5),
        ..layer.clone()
    };
    for layer in [layer, flipped] {
        let x = normal([2, 4, 3, 3], 1.0, 6, &device);
        let (y, ld) = layer.forward(x.clone(), None);
        let (back, ld_inverse) = layer.inverse(y, None);
        assert!(max_abs_diff(back, x.clone()) < 1e-12, "inverse");
        assert!(
            max_abs_diff(ld.clone() + ld_inverse, ld.zeros_like()) < 1e-12,
            "log-dets cancel"
        );
        let one = x.narrow(0, 0, 1);
        let brute = brute_force_log_det(|z| to_f64_vec(layer.forward(z, None).0), &one);
        let ld = values(ld)[0];
        assert!(
            (ld - brute).abs() < 1e-6,
            "log-det {ld} vs brute force {brute}"
        );
    }
}

#[test]
fn imported_models_in_f64_compute_the_peers_float64_function() {
    // The fixtures' float32 weights, run by the peers in float64 and by us on the f64 device:
    // what is left is f64 rounding.
    let device = f64_device();
    for (peer, name, image, n_bits) in [
        (
            Peer::Rosinality,
            "rosinality_affine",
            Some([3, 8, 8]),
            Some(5),
        ),
        (Peer::Y0ast, "y0ast_affine", None, None),
    ] {
        let model = import(peer, name, image, n_bits, &device);
        let r = Reference::load(name);
        let images: Tensor<4> = r.tensor("images", &device);
        let noise: Tensor<4> = r.tensor("noise", &device);
        let bpd = model
            .bits_per_dim(images.clone(), noise.clone(), None)
            .expect("bpd");
        let bpd_gap = max_abs_diff(bpd, r.tensor("bpd_f64", &device));
        let (latents, _) = model
            .encode(model.preprocess(images, noise), None)
            .expect("encode");
        let latent_gap = latents
            .levels
            .iter()
            .enumerate()
            .map(|(l, eps)| max_abs_diff(eps.clone(), r.tensor(&format!("eps_{l}_f64"), &device)))
            .fold(0.0, f64::max);
        println!("{name} in f64: bits/dim {bpd_gap:.2e}, latents {latent_gap:.2e}");
        assert!(bpd_gap < 1e-9, "{name}: bits/dim differ by {bpd_gap:.3e}");
        assert!(
            latent_gap < 1e-9,
            "{name}: latents differ by {latent_gap:.3e}"
        );
    }
}

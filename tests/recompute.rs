//! Constant-memory gradients: recomputing every step's input from its output and
//! differentiating step by step gives the gradients of ordinary backpropagation, for every
//! layer option, with class conditioning, and at depth in f32.

mod common;

use burn::tensor::Device;
use common::*;
use glowflow::train::gradients::loss_and_gradients;
use glowflow::{CouplingKind, GlowConfig, ImageShape, PermutationKind};

fn compare(config: GlowConfig, device: &Device, n: usize, what: &str) -> f64 {
    let image = config.image;
    let shape = [n, image.channels, image.height, image.width];
    let ad = device.clone().autodiff();
    let (images, noise) = random_batch(shape, 3, &ad);
    let model = trained_like(config.clone(), device, &images, &noise);
    let classes = (config.n_classes > 0).then(|| {
        model
            .one_hot(
                &(0..n)
                    .map(|i| (i + 1) % config.n_classes)
                    .collect::<Vec<_>>(),
                &ad,
            )
            .expect("labels")
    });
    let (loss_bp, grads_bp) = loss_and_gradients(
        &model,
        images.clone(),
        noise.clone(),
        classes.as_ref(),
        false,
    )
    .expect("backprop");
    let (loss_rc, grads_rc) =
        loss_and_gradients(&model, images, noise, classes.as_ref(), true).expect("recompute");
    let (loss_bp, loss_rc) = (loss_bp.into_scalar::<f64>(), loss_rc.into_scalar::<f64>());
    assert!(
        (loss_bp - loss_rc).abs() <= 1e-6 * loss_bp.abs(),
        "{what}: loss {loss_bp} vs {loss_rc}"
    );
    let trained = grads_bp.iter().filter(|g| g.is_some()).count();
    assert!(trained > 10, "{what}: only {trained} trained parameters");
    worst_relative_error(&grads_rc, &grads_bp)
}

#[test]
fn recomputed_gradients_equal_backprop_for_every_layer_option_in_f64() {
    let device = f64_device();
    let mut cases = Vec::new();
    for coupling in [
        CouplingKind::Additive,
        CouplingKind::Affine,
        CouplingKind::AffineExp,
    ] {
        for (permutation, lu) in [
            (PermutationKind::InvConv, false),
            (PermutationKind::InvConv, true),
            (PermutationKind::Reverse, false),
            (PermutationKind::Shuffle, false),
        ] {
            cases.push(tiny_config(2, coupling, permutation, lu));
        }
    }
    cases.push(GlowConfig {
        n_classes: 3,
        ..tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true)
    });
    cases.push(GlowConfig {
        learn_top: false,
        ..tiny_config(2, CouplingKind::Additive, PermutationKind::InvConv, false)
    });
    for config in cases {
        let what = format!(
            "{:?} {:?} lu={} classes={} learn_top={}",
            config.coupling, config.permutation, config.lu, config.n_classes, config.learn_top
        );
        // Measured: 1.3e-8 for every parameter alike, a uniform factor (a constant of the
        // backprop path's loss rounded once in f32 inside burn's scalar ops), not drift.
        let err = compare(config, &device, 3, &what);
        assert!(err < 1e-7, "{what}: relative gradient error {err:.3e}");
    }
}

#[test]
fn recomputed_gradients_match_backprop_within_1e_4_in_f32_at_depth() {
    let config = GlowConfig {
        image: ImageShape {
            channels: 3,
            height: 16,
            width: 16,
        },
        levels: 3,
        steps: 8,
        width: 32,
        coupling: CouplingKind::Affine,
        lu: true,
        ..GlowConfig::default()
    };
    let err = compare(config, &f32_device(), 4, "f32 L3 K8");
    eprintln!("f32, L = 3, K = 8: worst relative gradient error {err:.3e}");
    assert!(err < 1e-4, "relative gradient error {err:.3e}");
}

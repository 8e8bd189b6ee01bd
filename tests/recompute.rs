//! Constant-memory gradients: recomputing every step's input from its output and
//! differentiating step by step gives the gradients of ordinary backpropagation, for every
//! layer option and with class conditioning (f64; at depth in f32: `recompute_f32.rs`, its own
//! process because the f64 device must be configured before any tensor exists).

mod common;

use common::*;
use glowflow::{CouplingKind, GlowConfig, PermutationKind};

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
        n_classes: 3,
        class_head: true,
        ..tiny_config(2, CouplingKind::Additive, PermutationKind::Reverse, false)
    });
    cases.push(GlowConfig {
        learn_top: false,
        ..tiny_config(2, CouplingKind::Additive, PermutationKind::InvConv, false)
    });
    for config in cases {
        let what = format!(
            "{:?} {:?} lu={} classes={} head={} learn_top={}",
            config.coupling,
            config.permutation,
            config.lu,
            config.n_classes,
            config.class_head,
            config.learn_top
        );
        // Measured: 1.3e-8 for every parameter alike, a uniform factor (a constant of the
        // backprop path's loss rounded once in f32 inside burn's scalar ops), not drift.
        let err = recompute_vs_backprop(config, &device, 3, &what);
        assert!(err < 1e-7, "{what}: relative gradient error {err:.3e}");
    }
}

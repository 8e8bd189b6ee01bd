//! Constant-memory gradients at depth in f32 (its own test process: the other recompute tests
//! configure the device for f64).

mod common;

use common::*;
use glowflow::{CouplingKind, GlowConfig, ImageShape};

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
    let err = recompute_vs_backprop(config, &f32_device(), 4, "f32 L3 K8");
    eprintln!("f32, L = 3, K = 8: worst relative gradient error {err:.3e}");
    assert!(err < 1e-4, "relative gradient error {err:.3e}");
}

//! Invertibility at the paper's depth in f32: L = 3, K = 32, width 512 on 3x32x32 inputs, with
//! every coupling moved away from the identity.

mod common;

use common::*;
use glowflow::{GlowConfig, PermutationKind};

#[test]
fn paper_depth_model_reconstructs_within_1e_3_in_f32() {
    let device = f32_device();
    for lu in [false, true] {
        let config = GlowConfig {
            lu,
            permutation: PermutationKind::InvConv,
            ..GlowConfig::default()
        };
        assert_eq!((config.levels, config.steps, config.width), (3, 32, 512));
        let x = normal([2, 3, 32, 32], 0.25, 1, &device);
        let model = config.init(&device).expect("valid config");
        let model = model.data_init(x.clone(), None).expect("init");
        let model = perturb(model, 0.002, 2);
        let (latents, ld_encode) = model.encode(x.clone(), None).expect("encode");
        let (x_back, ld_decode) = model.decode(&latents, None).expect("decode");
        let err = max_abs_diff(x_back, x.clone());
        let ld_gap: f64 = values(ld_encode.clone() + ld_decode)
            .iter()
            .fold(0.0, |m, v| m.max(v.abs()));
        let scale = values(ld_encode).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        println!("L=3 K=32 width=512 lu={lu}: max |decode(encode(x)) - x| = {err:.3e}, log-det gap {ld_gap:.3e} of {scale:.3e}");
        assert!(
            err < 1e-3,
            "reconstruction error {err:.3e} at paper depth (lu={lu})"
        );
        assert!(
            ld_gap <= 1e-4 * scale.max(1.0),
            "log-dets cancel to f32 precision"
        );
    }
}

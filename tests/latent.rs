//! The latent-space tools, in f64 on a tiny perturbed model: interpolation endpoints are the
//! inputs, temperature sweeps share their noise, top-level reconstructions keep exactly the
//! kept latents, and attribute directions are differences of means.

mod common;

use burn::tensor::Tensor;
use common::*;
use glowflow::latent::{
    attribute_direction, interpolate, move_along, reconstruct_keeping_top, temperature_sweep,
};
use glowflow::tensor_ops::to_f64_vec;
use glowflow::{Glow, GlowConfig, ImageShape};
use rand::SeedableRng;

fn model_and_images() -> (Glow, Tensor<4>) {
    let device = f64_device();
    let config = GlowConfig {
        image: ImageShape {
            channels: 1,
            height: 4,
            width: 4,
        },
        levels: 2,
        steps: 2,
        width: 8,
        ..GlowConfig::default()
    };
    let x = normal([6, 1, 4, 4], 0.3, 1, &device);
    let model = config
        .init(&device)
        .expect("valid")
        .data_init(x.clone(), None)
        .expect("init");
    (perturb(model, 0.02, 2), x)
}

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(3)
}

#[test]
fn interpolation_starts_and_ends_at_the_inputs() {
    let (model, x) = model_and_images();
    let (a, b) = (sample(&x, 0), sample(&x, 1));
    let path = interpolate(&model, a.clone(), b.clone(), 5).expect("interpolate");
    assert_eq!(path.dims(), [5, 1, 4, 4]);
    assert!(max_abs_diff(sample(&path, 0), a.clone()) < 1e-10);
    assert!(max_abs_diff(sample(&path, 4), b.clone()) < 1e-10);
    assert!(
        max_abs_diff(sample(&path, 2), a.clone()) > 1e-3,
        "the middle is neither endpoint"
    );
    assert!(interpolate(&model, a.clone(), b.clone(), 1).is_err());
    let err =
        interpolate(&model, x.clone().narrow(0, 0, 2), b, 3).expect_err("a batch is not one image");
    assert!(err.to_string().contains("one image"), "{err}");
}

#[test]
fn temperature_sweep_scales_one_noise() {
    let (model, _) = model_and_images();
    let grid = temperature_sweep(&model, 2, &[0.0, 0.5, 1.0], &mut rng()).expect("sweep");
    assert_eq!(grid.dims(), [6, 1, 4, 4]);
    let (latents, _) = model.encode(grid, None).expect("encode");
    for eps in &latents.levels {
        let zero = eps.clone().narrow(0, 0, 2);
        let half = eps.clone().narrow(0, 2, 2);
        let full = eps.clone().narrow(0, 4, 2);
        assert!(
            max_abs_diff(zero.clone(), zero.zeros_like()) < 1e-9,
            "T = 0 is the prior mean"
        );
        assert!(
            max_abs_diff(half * 2.0, full) < 1e-9,
            "T = 0.5 is half the T = 1 noise"
        );
    }
    assert!(temperature_sweep(&model, 2, &[-1.0], &mut rng()).is_err());
}

#[test]
fn reconstruction_keeps_exactly_the_top_levels() {
    let (model, x) = model_and_images();
    let all = reconstruct_keeping_top(&model, x.clone(), 2, 1.0, &mut rng()).expect("keep all");
    assert!(
        max_abs_diff(all, x.clone()) < 1e-10,
        "keeping every level is decode(encode(x))"
    );
    let top = reconstruct_keeping_top(&model, x.clone(), 1, 1.0, &mut rng()).expect("keep top");
    let (original, _) = model.encode(x.clone(), None).expect("encode");
    let (rebuilt, _) = model.encode(top, None).expect("encode");
    assert!(
        max_abs_diff(original.levels[1].clone(), rebuilt.levels[1].clone()) < 1e-9,
        "top kept"
    );
    assert!(
        max_abs_diff(original.levels[0].clone(), rebuilt.levels[0].clone()) > 1e-3,
        "lower redrawn"
    );
    assert!(reconstruct_keeping_top(&model, x, 3, 1.0, &mut rng()).is_err());
}

#[test]
fn attribute_direction_is_the_difference_of_class_means() {
    let (model, x) = model_and_images();
    let (latents, _) = model.encode(x, None).expect("encode");
    let flags = [true, false, true, true, false, false];
    let direction = attribute_direction(&latents, &flags).expect("direction");
    for (eps, dir) in latents.levels.iter().zip(&direction.levels) {
        let per_image: Vec<Vec<f64>> = (0..6)
            .map(|i| to_f64_vec(eps.clone().narrow(0, i, 1)))
            .collect();
        let size = per_image[0].len();
        let mean = |want: bool| -> Vec<f64> {
            let chosen: Vec<&Vec<f64>> = per_image
                .iter()
                .zip(flags)
                .filter(|(_, f)| *f == want)
                .map(|(v, _)| v)
                .collect();
            (0..size)
                .map(|k| chosen.iter().map(|v| v[k]).sum::<f64>() / chosen.len() as f64)
                .collect()
        };
        let (with, without) = (mean(true), mean(false));
        let expected: Vec<f64> = with.iter().zip(&without).map(|(a, b)| a - b).collect();
        let got = to_f64_vec(dir.clone());
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-12,
            "direction differs from the independent means by {worst}"
        );
    }
    let moved = move_along(&latents, &direction, 0.0);
    assert!(max_abs_diff(moved.levels[0].clone(), latents.levels[0].clone()) == 0.0);
    let err = attribute_direction(&latents, &[true; 6]).expect_err("no image without");
    assert!(err.to_string().contains("0 without"), "{err}");
}

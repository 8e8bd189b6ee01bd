//! The n-bit reduction, dequantisation and bits per dimension against values worked out by
//! hand, for 8-bit and 5-bit data (celeba64's preset), and a 5-bit model end to end.

mod common;

use common::*;
use glowflow::likelihood::{bits_per_dim, preprocess, to_pixels};
use glowflow::tensor_ops::{from_f64, to_f64_vec};
use glowflow::{CouplingKind, PermutationKind};
use rand::SeedableRng;

/// `preprocess` of one row of `(pixel, noise)` pairs, as host values.
fn preprocessed(pairs: &[(f64, f64)], n_bits: u32) -> Vec<f64> {
    let device = f64_device();
    let shape = [1, 1, 1, pairs.len()];
    let images = from_f64(pairs.iter().map(|p| p.0).collect(), shape, &device);
    let noise = from_f64(pairs.iter().map(|p| p.1).collect(), shape, &device);
    to_f64_vec(preprocess(images, noise, n_bits))
}

/// `to_pixels` of one row of model-space values, as host values.
fn pixels(x: &[f64], n_bits: u32) -> Vec<f64> {
    let device = f64_device();
    to_f64_vec(to_pixels(
        from_f64(x.to_vec(), [1, 1, 1, x.len()], &device),
        n_bits,
    ))
}

#[test]
fn preprocess_reduces_dequantises_and_centres_at_8_and_5_bits() {
    // 8 bits: x = (v + u) / 256 - 0.5.
    let eight = preprocessed(&[(0.0, 0.0), (255.0, 0.5), (128.0, 0.25), (7.0, 0.75)], 8);
    assert_eq!(eight, [-0.5, 0.498046875, 0.0009765625, -0.4697265625]);
    // 5 bits: k = floor(v / 8), x = (k + u) / 32 - 0.5. 7 and 0 share bin 0, 8 is bin 1,
    // 100 is bin 12, 255 is bin 31.
    let five = preprocessed(
        &[
            (0.0, 0.0),
            (7.0, 0.5),
            (8.0, 0.0),
            (100.0, 0.25),
            (255.0, 0.75),
        ],
        5,
    );
    assert_eq!(five, [-0.5, -0.484375, -0.46875, -0.1171875, 0.4921875]);
}

#[test]
fn bits_per_dim_is_n_bits_minus_log_density_in_bits_per_dimension() {
    let device = f64_device();
    // bits/dim = -(log p - D log 2^n) / (D log 2) = n - log p / (D log 2).
    let log_p = from_f64(vec![0.0, -100.0, 35.0], [3], &device);
    let at = |n_bits: u32| to_f64_vec(bits_per_dim(log_p.clone(), 10, n_bits));
    // 100 / (10 ln 2) = 14.426950408889634, 35 / (10 ln 2) = 5.049432643111372.
    let expected_8 = [8.0, 22.426950408889634, 2.950567356888628];
    let expected_5 = [5.0, 19.426950408889634, -0.049432643111372];
    for (got, want) in at(8)
        .iter()
        .zip(expected_8)
        .chain(at(5).iter().zip(expected_5))
    {
        assert_rel_close(*got, want, 1e-14, "bits/dim");
    }
}

#[test]
fn to_pixels_finds_the_bin_and_clamps_at_8_and_5_bits() {
    // 8 bits: floor((x + 0.5) · 256), clamped to 0..=255.
    let eight = pixels(&[-0.5, -0.6, 0.0, 0.5, 0.9, -0.5 + 37.9 / 256.0], 8);
    assert_eq!(eight, [0.0, 0.0, 128.0, 255.0, 255.0, 37.0]);
    // 5 bits: 8 · floor((x + 0.5) · 32), bins clamped to 0..=31.
    let five = pixels(&[-0.5, 0.0, -0.5 + 3.5 / 32.0, 0.49, 0.7, -0.51], 5);
    assert_eq!(five, [0.0, 128.0, 24.0, 248.0, 248.0, 0.0]);
}

#[test]
fn every_8_bit_value_survives_preprocess_then_to_pixels_up_to_its_n_bit_bin() {
    for n_bits in [8, 5] {
        let step = f64::from(1u32 << (8 - n_bits));
        for u in [0.0, 0.5, 0.999] {
            let pairs: Vec<(f64, f64)> = (0..256).map(|v| (f64::from(v), u)).collect();
            let back = pixels(&preprocessed(&pairs, n_bits), n_bits);
            for (v, got) in (0..256).zip(back) {
                let want = (f64::from(v) / step).floor() * step;
                assert_eq!(got, want, "{n_bits} bits, v = {v}, u = {u}");
            }
        }
    }
}

#[test]
fn empty_batches_pass_through_the_pixel_maps() {
    let device = f64_device();
    let empty = from_f64(Vec::new(), [0, 1, 4, 4], &device);
    assert_eq!(
        preprocess(empty.clone(), empty.clone(), 5).dims(),
        [0, 1, 4, 4]
    );
    assert_eq!(to_pixels(empty, 5).dims(), [0, 1, 4, 4]);
    let none = from_f64(Vec::new(), [0], &device);
    assert_eq!(bits_per_dim(none, 16, 5).dims(), [0]);
}

#[test]
fn a_5_bit_model_scores_and_reconstructs_5_bit_images() {
    let device = f64_device();
    let mut config = tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, true);
    config.n_bits = 5;
    let (images, noise) = random_batch([3, 1, 4, 4], 8, &device);
    let (pixels_8, u) = (to_f64_vec(images.clone()), to_f64_vec(noise.clone()));
    // x = (floor(v / 8) + u) / 32 - 0.5 on the host.
    let x_host: Vec<f64> = pixels_8
        .iter()
        .zip(&u)
        .map(|(v, u)| ((v / 8.0).floor() + u) / 32.0 - 0.5)
        .collect();
    let x = from_f64(x_host, [3, 1, 4, 4], &device);
    let model = config
        .init(&device)
        .expect("valid")
        .data_init(x.clone(), None)
        .expect("init");
    let model = perturb(model, 0.05, 9);

    // bits/dim = 5 - log p(x) / (16 log 2), with log p of the hand-preprocessed images.
    let log_p = to_f64_vec(model.log_prob(x.clone(), None).expect("log p"));
    let bpd = to_f64_vec(model.bits_per_dim(images, noise, None).expect("bits/dim"));
    for (b, lp) in bpd.iter().zip(&log_p) {
        assert_rel_close(
            *b,
            5.0 - lp / (16.0 * std::f64::consts::LN_2),
            1e-12,
            "5-bit bpd",
        );
    }

    // Decoding the latents gives back each image's 5-bit bin.
    let (latents, _) = model.encode(x, None).expect("encode");
    let (back, _) = model.decode(&latents, None).expect("decode");
    for (got, v) in to_f64_vec(to_pixels(back, 5)).iter().zip(&pixels_8) {
        assert_eq!(*got, (v / 8.0).floor() * 8.0, "5-bit bin of {v}");
    }
    // Samples land on the 32 levels 0, 8, ..., 248.
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let samples = model.sample(4, 0.7, None, &mut rng).expect("sample");
    let levels = to_f64_vec(to_pixels(samples, 5));
    assert!(
        levels
            .iter()
            .all(|p| p % 8.0 == 0.0 && (0.0..=248.0).contains(p)),
        "{levels:?}"
    );
}

#[test]
fn a_tiny_5_bit_run_reports_5_bit_test_bits_per_dim() {
    let dir = TempDir::new("five-bit-run");
    write_idx_dataset(&dir.0, 48, 16, 8);
    let model = glowflow::GlowConfig {
        n_bits: 5,
        ..grey8_config(8)
    };
    let train_config = tiny_train_config(&dir.0);
    let run = dir.path("run");
    let never = std::sync::atomic::AtomicBool::new(false);
    let summary =
        glowflow::train::trainer::train(&run, &model, &train_config, false, &never, &mut |_| {})
            .expect("a 5-bit run trains");
    assert_eq!(summary.step, train_config.steps);
    let reported = summary.test.expect("a final evaluation").bpd;
    let by_hand = test_bpd_by_hand(&run, train_config.seed);
    println!("5-bit run: test {reported:.6} bits/dim reported, {by_hand:.6} computed here");
    assert!(
        (reported - by_hand).abs() < 1e-5,
        "reported {reported} vs {by_hand}"
    );
    let loaded = glowflow::load_model(&run, &f32_device()).expect("the saved model");
    assert_eq!(loaded.config().n_bits, 5, "the run saves its 5-bit config");
}

//! The whole multi-scale model, in f64 on tiny inputs: the log-determinant of x -> ε equals the
//! brute-force Jacobian's, log p(x) is the change of variables, decode inverts encode, and
//! temperature 0 decodes the priors' means.

mod common;

use burn::tensor::{Device, Tensor};
use common::*;
use glowflow::tensor_ops::to_f64_vec;
use glowflow::{CouplingKind, Glow, GlowConfig, Latents, PermutationKind};
use rand::SeedableRng;

/// A tiny model, data-initialised and then perturbed so that no layer is the identity.
fn tiny_model(config: &GlowConfig, device: &Device) -> (Glow, Tensor<4>) {
    perturbed_tiny_model(config, 0.05, device)
}

/// A tiny model whose parameters are moved by `N(0, std²)` after the data-dependent init.
fn perturbed_tiny_model(config: &GlowConfig, std: f64, device: &Device) -> (Glow, Tensor<4>) {
    let shape = [
        3,
        config.image.channels,
        config.image.height,
        config.image.width,
    ];
    let x = normal(shape, 0.3, 1, device);
    let classes = class_rows(config, 3, device);
    let model = config.init(device).expect("valid config");
    let model = model
        .data_init(x.clone(), classes.as_ref())
        .expect("matching shapes");
    (perturb(model, std, 2), x)
}

fn class_rows(config: &GlowConfig, n: usize, device: &Device) -> Option<Tensor<2>> {
    (config.n_classes > 0).then(|| {
        let labels: Vec<usize> = (0..n).map(|i| i % config.n_classes).collect();
        glowflow::flow::prior::one_hot(&labels, config.n_classes, device).expect("valid labels")
    })
}

fn flatten(latents: &Latents) -> Vec<f64> {
    latents
        .levels
        .iter()
        .flat_map(|eps| to_f64_vec(eps.clone()))
        .collect()
}

fn all_variants() -> Vec<GlowConfig> {
    let mut configs = vec![
        tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, false),
        tiny_config(2, CouplingKind::Additive, PermutationKind::InvConv, true),
        tiny_config(2, CouplingKind::AffineExp, PermutationKind::Reverse, false),
        tiny_config(1, CouplingKind::Additive, PermutationKind::Shuffle, false),
    ];
    let mut conditional = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    conditional.n_classes = 3;
    configs.push(conditional);
    let mut floored = tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, true);
    floored.scale_floor = 0.2;
    configs.push(floored);
    configs
}

#[test]
fn whole_model_log_det_matches_brute_force_jacobian_and_log_prob_is_change_of_variables() {
    let device = f64_device();
    for config in all_variants() {
        let (model, x) = tiny_model(&config, &device);
        let classes = class_rows(&config, 3, &device);
        let (_, log_det) = model.encode(x.clone(), classes.as_ref()).expect("encode");
        let log_det = values(log_det);
        let log_prob = values(
            model
                .log_prob(x.clone(), classes.as_ref())
                .expect("log_prob"),
        );
        for i in 0..3 {
            let class_i = classes.as_ref().map(|c| c.clone().narrow(0, i, 1));
            let encode_one =
                |t: Tensor<4>| flatten(&model.encode(t, class_i.as_ref()).expect("encode").0);
            let brute = brute_force_log_det(encode_one, &sample(&x, i));
            let what = format!("{config:?} sample {i}");
            assert_rel_close(log_det[i], brute, 1e-6, &format!("log|det dε/dx|, {what}"));
            let eps = encode_one(sample(&x, i));
            let log_normal: f64 = eps
                .iter()
                .map(|e| -0.5 * e * e - 0.5 * (2.0 * std::f64::consts::PI).ln())
                .sum();
            assert_rel_close(
                log_prob[i],
                log_normal + brute,
                1e-6,
                &format!("log p(x), {what}"),
            );
        }
    }
}

#[test]
fn decode_inverts_encode_and_log_dets_cancel() {
    let device = f64_device();
    for config in all_variants() {
        let (model, x) = tiny_model(&config, &device);
        let classes = class_rows(&config, 3, &device);
        let (latents, ld_encode) = model.encode(x.clone(), classes.as_ref()).expect("encode");
        let shapes: Vec<_> = latents.levels.iter().map(|t| t.dims()).collect();
        let expected: Vec<_> = model
            .latent_shapes()
            .iter()
            .map(|[c, h, w]| [3, *c, *h, *w])
            .collect();
        assert_eq!(shapes, expected);
        let (x_back, ld_decode) = model.decode(&latents, classes.as_ref()).expect("decode");
        let err = max_abs_diff(x_back, x);
        assert!(
            err < 1e-10,
            "{config:?}: decode(encode(x)) differs by {err:.3e}"
        );
        for (a, b) in values(ld_encode).iter().zip(values(ld_decode)) {
            assert_rel_close(a + b, 0.0, 1e-10, "encode and decode log-dets cancel");
        }
    }
}

#[test]
fn temperature_zero_decodes_the_prior_means() {
    let device = f64_device();
    for config in all_variants() {
        // A smaller perturbation: decoding the means of a random model with the paper's exp
        // coupling otherwise leaves the range where f64 can invert it (|x| ~ 1e25).
        let (model, _) = perturbed_tiny_model(&config, 0.01, &device);
        let classes = class_rows(&config, 2, &device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let x = model
            .sample(2, 0.0, classes.as_ref(), &mut rng)
            .expect("sample");
        // At T = 0 every latent sits at its prior's mean, so ε = 0 at every level.
        let (latents, _) = model.encode(x.clone(), classes.as_ref()).expect("encode");
        let largest = flatten(&latents).iter().fold(0.0f64, |m, e| m.max(e.abs()));
        assert!(
            largest < 1e-9,
            "{config:?}: largest |ε| at T = 0 is {largest:.3e}"
        );
        // The top latent is the top prior's (learned, non-zero) mean.
        let (mean, _) = model.top.mean_log_std(2, classes.as_ref(), &device);
        assert!(
            max_abs_diff(mean.clone(), mean.zeros_like()) > 1e-3,
            "the learned prior mean is not trivially 0"
        );
        // The input of the top prior: the last level output of the walk.
        let walked = model
            .encode_in_shards(x, classes.as_ref(), 1)
            .expect("encode");
        let z = walked.level_outputs.last().expect("levels").clone();
        assert!(
            max_abs_diff(z, mean) < 1e-9,
            "{config:?}: top latent is the prior mean"
        );
    }
}

#[test]
fn sampling_is_seeded_decodes_the_drawn_latents_and_scales_them_with_temperature() {
    let device = f64_device();
    let config = tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, false);
    // 0.02: with the usual 0.05, some of 64 draws decode to |x| = inf (the random couplings
    // divide by scales near 0), and those samples cannot be encoded back.
    let (model, _) = perturbed_tiny_model(&config, 0.02, &device);
    let rng = |seed: u64| rand::rngs::StdRng::seed_from_u64(seed);
    let sample = |seed: u64, t: f64| {
        let images = model.sample(64, t, None, &mut rng(seed)).expect("sample");
        assert_eq!(images.dims(), [64, 1, 4, 4]);
        images
    };
    let seeded = to_f64_vec(sample(4, 0.7));
    assert_eq!(seeded, to_f64_vec(sample(4, 0.7)), "same seed: same images");
    let other_seed = sample(5, 0.7);
    let moved = max_abs_diff(other_seed, sample(4, 0.7));
    assert!(
        moved > 0.1,
        "another seed draws other images (max |Δ| {moved:.3e})"
    );

    // A sample is the decoding of latents drawn from the same generator, and encoding it gives
    // those latents back: `sample` is the model's inverse at ε ~ N(0, T² I).
    let drawn = model.random_latents(64, 0.7, &mut rng(4), &device);
    let (decoded, _) = model.decode(&drawn, None).expect("decode");
    assert_eq!(
        seeded,
        to_f64_vec(decoded),
        "sample = decode(drawn latents)"
    );
    let (encoded, _) = model.encode(sample(4, 0.7), None).expect("encode");
    let gap = max_abs_gap(&flatten(&encoded), &flatten(&drawn));
    assert!(
        gap < 1e-9,
        "encode(sample) = drawn latents (max |Δ| {gap:.3e})"
    );

    // The latents of samples, recovered by encoding, have standard deviation T (64 x 16 values:
    // the estimate's standard error is T / sqrt(2 · 1024) ≈ 0.02 T), and the same seed at two
    // temperatures gives latents in the ratio of the temperatures.
    let latent_rms = |t: f64| {
        let (latents, _) = model.encode(sample(4, t), None).expect("encode");
        let v = flatten(&latents);
        (v.iter().map(|e| e * e).sum::<f64>() / v.len() as f64).sqrt()
    };
    let (half, one) = (latent_rms(0.5), latent_rms(1.0));
    assert!((one - 1.0).abs() < 0.1, "rms of ε at T = 1 is {one}");
    assert!(
        (half / one - 0.5).abs() < 1e-9,
        "same noise, scaled by T: ratio {}",
        half / one
    );
}

#[test]
fn data_init_on_an_autodiff_device_matches_the_plain_one_and_keeps_parameters_trainable() {
    let device = f64_device();
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    let x = normal([3, 2, 4, 4], 0.3, 1, &device);
    let plain = config
        .init(&device)
        .expect("valid")
        .data_init(x.clone(), None)
        .expect("init");
    let tracked = config
        .init(&device.clone().autodiff())
        .expect("valid")
        .data_init(x.clone().autodiff(), None)
        .expect("init");
    assert!(tracked.is_initialized());
    let values = |m: &Glow| -> Vec<f64> {
        glowflow::model::params::flat_params(m)
            .into_iter()
            .flat_map(to_f64_vec)
            .collect()
    };
    assert_eq!(values(&plain), values(&tracked), "the same initialisation");
    let loss = tracked.log_prob(x.autodiff(), None).expect("log p").sum();
    let grads = loss.backward();
    let trained = glowflow::model::params::flat_grads(&tracked, &grads)
        .iter()
        .filter(|g| g.is_some())
        .count();
    assert!(trained > 10, "parameters still get gradients ({trained})");
}

#[test]
fn class_scores_are_log_prob_given_each_label() {
    let device = f64_device();
    for levels in [1, 2] {
        let mut config = tiny_config(levels, CouplingKind::Affine, PermutationKind::InvConv, true);
        config.n_classes = 3;
        let (model, x) = tiny_model(&config, &device);
        let scores = model.class_scores(x.clone()).expect("per class");
        assert!(scores.head_logits.is_none(), "no head, no logits");
        let per_class = scores.log_prob;
        let mut columns = Vec::new();
        for k in 0..3 {
            let y = glowflow::flow::prior::one_hot(&[k; 3], 3, &device).expect("labels");
            let given_k = values(model.log_prob(x.clone(), Some(&y)).expect("log_prob"));
            for (i, expected) in given_k.iter().enumerate() {
                let what = format!("L = {levels}, image {i}, class {k}");
                assert_rel_close(per_class[i * 3 + k], *expected, 1e-12, &what);
            }
            columns.push(given_k);
        }
        // The perturbed class bias makes the labels matter, so the columns must differ.
        assert!(max_abs_gap(&columns[0], &columns[1]) > 1e-3, "{columns:?}");
    }
    let unconditional = tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, true);
    let (model, x) = tiny_model(&unconditional, &device);
    let error = model.class_scores(x).expect_err("no classes");
    assert!(error.to_string().contains("unconditional"), "{error}");
}

#[test]
fn predicted_classes_are_bayes_rule_and_the_heads_largest_logit() {
    let device = f64_device();
    let config = GlowConfig {
        n_classes: 3,
        class_head: true,
        ..tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true)
    };
    let (model, x) = tiny_model(&config, &device);
    let predicted = model.predicted_classes(x.clone()).expect("classes");
    let argmax = |row: &[f64]| {
        (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .expect("a class")
    };
    // Bayes' rule from `log_prob` under each label.
    let given: Vec<Vec<f64>> = (0..3)
        .map(|k| {
            let y = glowflow::flow::prior::one_hot(&[k; 3], 3, &device).expect("labels");
            values(model.log_prob(x.clone(), Some(&y)).expect("log_prob"))
        })
        .collect();
    let bayes: Vec<usize> = (0..3)
        .map(|i| argmax(&[given[0][i], given[1][i], given[2][i]]))
        .collect();
    assert_eq!(predicted.bayes, bayes);
    // The head by hand, from the encoding under label 0 (the head does not see the label).
    let y0 = glowflow::flow::prior::one_hot(&[0; 3], 3, &device).expect("labels");
    let by_hand = head_logits_of(&model, x.clone(), Some(&y0));
    let logits = to_f64_vec(
        model
            .class_scores(x)
            .expect("scores")
            .head_logits
            .expect("logits"),
    );
    for (row, expected) in logits.chunks(3).zip(&by_hand) {
        for (got, want) in row.iter().zip(expected) {
            assert_rel_close(*got, *want, 1e-10, "head logit");
        }
        assert!(expected.iter().any(|l| l.abs() > 1e-3), "{expected:?}");
    }
    let head: Vec<usize> = by_hand.iter().map(|row| argmax(row)).collect();
    assert_eq!(predicted.head, Some(head));
}

//! The latent-space tools, in f64 on a tiny perturbed model: interpolation endpoints are the
//! inputs, temperature sweeps share their noise, top-level reconstructions keep exactly the
//! kept latents, and attribute directions are differences of means.

mod common;

use burn::tensor::Tensor;
use common::*;
use std::collections::BTreeMap;

use glowflow::data::dataset::ImageDataset;
use glowflow::io::latent_file::{load_latents, model_fingerprint, save_latents};
use glowflow::latent::attribute::{cached_direction, class_flags, DirectionSums};
use glowflow::latent::{
    attribute_direction, dataset_direction, images_at_bin_centres, interpolate, move_along,
    reconstruct_keeping_top, temperature_sweep,
};
use glowflow::tensor_ops::to_f64_vec;
use glowflow::{CouplingKind, Glow, GlowConfig, Latents, PermutationKind};
use rand::{Rng, SeedableRng};

/// A 1x4x4 model with the default layers.
fn tiny_grey_config() -> GlowConfig {
    tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, false)
}

fn model_and_images() -> (Glow, Tensor<4>) {
    let device = f64_device();
    let x = normal([6, 1, 4, 4], 0.3, 1, &device);
    let model = tiny_grey_config()
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
    let path = interpolate(&model, a.clone(), b.clone(), None, 5).expect("interpolate");
    assert_eq!(path.dims(), [5, 1, 4, 4]);
    assert!(max_abs_diff(sample(&path, 0), a.clone()) < 1e-10);
    assert!(max_abs_diff(sample(&path, 4), b.clone()) < 1e-10);
    assert!(
        max_abs_diff(sample(&path, 2), a.clone()) > 1e-3,
        "the middle is neither endpoint"
    );
    assert!(interpolate(&model, a.clone(), b.clone(), None, 1).is_err());
    let err = interpolate(&model, x.clone().narrow(0, 0, 2), b, None, 3)
        .expect_err("a batch is not one image");
    assert!(err.to_string().contains("one image"), "{err}");
}

/// Asserts that the latents of a sweep over T = 0, 0.5, 1 (two images each) are 0, 0.5 and 1
/// times one noise.
fn assert_scales_one_noise(latents: &Latents, what: &str) {
    for eps in &latents.levels {
        let zero = eps.clone().narrow(0, 0, 2);
        let half = eps.clone().narrow(0, 2, 2);
        let full = eps.clone().narrow(0, 4, 2);
        assert!(
            max_abs_diff(zero.clone(), zero.zeros_like()) < 1e-9,
            "T = 0 is the prior mean ({what})"
        );
        assert!(
            max_abs_diff(half * 2.0, full) < 1e-9,
            "T = 0.5 is half the T = 1 noise ({what})"
        );
    }
}

#[test]
fn temperature_sweep_scales_one_noise() {
    let (model, _) = model_and_images();
    let grid = temperature_sweep(&model, 2, &[0.0, 0.5, 1.0], None, &mut rng()).expect("sweep");
    assert_eq!(grid.dims(), [6, 1, 4, 4]);
    let (latents, _) = model.encode(grid, None).expect("encode");
    assert_scales_one_noise(&latents, "unconditional");
    assert!(temperature_sweep(&model, 2, &[-1.0], None, &mut rng()).is_err());
    let err = temperature_sweep(&model, 2, &[1.0], Some(0), &mut rng()).expect_err("no classes");
    assert!(err.to_string().contains("unconditional"), "{err}");
}

/// One-hot rows of `labels` among 3 classes.
fn three_classes(labels: &[usize]) -> Tensor<2> {
    glowflow::flow::prior::one_hot(labels, 3, &f64_device()).expect("labels")
}

/// [`model_and_images`] for a model conditioned on 3 classes; the images' labels are 0, 1, 2,
/// 0, 1, 2.
fn conditional_model_and_images() -> (Glow, Tensor<4>, Tensor<2>) {
    let device = f64_device();
    let mut config = tiny_grey_config();
    config.n_classes = 3;
    let x = normal([6, 1, 4, 4], 0.3, 1, &device);
    let labels = three_classes(&[0, 1, 2, 0, 1, 2]);
    let model = config
        .init(&device)
        .expect("valid")
        .data_init(x.clone(), Some(&labels))
        .expect("init");
    (perturb(model, 0.02, 2), x, labels)
}

#[test]
fn class_conditional_interpolation_and_reconstruction_keep_each_image_under_its_label() {
    let (model, x, labels) = conditional_model_and_images();
    let (a, b) = (sample(&x, 0), sample(&x, 1));
    let (ya, yb) = (three_classes(&[0]), three_classes(&[1]));
    let path = interpolate(&model, a.clone(), b.clone(), Some((&ya, &yb)), 5).expect("path");
    assert!(
        max_abs_diff(sample(&path, 0), a.clone()) < 1e-10,
        "starts at a"
    );
    assert!(
        max_abs_diff(sample(&path, 4), b.clone()) < 1e-10,
        "ends at b"
    );
    // The middle decodes the mean of the two ends' latents under the mean of their labels.
    let (za, _) = model.encode(a.clone(), Some(&ya)).expect("encode a");
    let (zb, _) = model.encode(b.clone(), Some(&yb)).expect("encode b");
    let middle = Latents {
        levels: za
            .levels
            .iter()
            .zip(&zb.levels)
            .map(|(p, q)| (p.clone() + q.clone()) * 0.5)
            .collect(),
    };
    let half = (ya.clone() + yb.clone()) * 0.5;
    let (expected, _) = model.decode(&middle, Some(&half)).expect("decode");
    assert!(
        max_abs_diff(sample(&path, 2), expected) < 1e-10,
        "the middle"
    );
    let err = interpolate(&model, a, b, None, 5).expect_err("labels are needed");
    assert!(err.to_string().contains("class-conditional"), "{err}");

    let all = reconstruct_keeping_top(&model, x.clone(), Some(&labels), 2, 1.0, &mut rng())
        .expect("keep all");
    assert!(
        max_abs_diff(all, x.clone()) < 1e-10,
        "decode(encode(x)) under the labels"
    );
    let top = reconstruct_keeping_top(&model, x.clone(), Some(&labels), 1, 1.0, &mut rng())
        .expect("keep top");
    let (original, _) = model.encode(x, Some(&labels)).expect("encode");
    let (rebuilt, _) = model.encode(top, Some(&labels)).expect("encode");
    assert!(
        max_abs_diff(original.levels[1].clone(), rebuilt.levels[1].clone()) < 1e-9,
        "top kept under the labels"
    );
}

#[test]
fn a_class_conditional_sweep_samples_the_class_from_one_noise() {
    let (model, _, _) = conditional_model_and_images();
    let sweep = |class| temperature_sweep(&model, 2, &[0.0, 0.5, 1.0], class, &mut rng());
    let err = sweep(None).expect_err("a class-conditional model needs the class");
    assert!(err.to_string().contains("--class"), "{err}");
    let mut at_zero = Vec::new();
    for class in 0..3 {
        let grid = sweep(Some(class)).expect("sweep");
        // Encoded under the class's prior, the images give back 0, 0.5 and 1 times one noise.
        let classes = three_classes(&[class; 6]);
        let (latents, _) = model.encode(grid.clone(), Some(&classes)).expect("encode");
        assert_scales_one_noise(&latents, &format!("class {class}"));
        at_zero.push(grid.narrow(0, 0, 1));
    }
    // The classes' priors differ (perturbed), so their means decode to different images.
    assert!(max_abs_diff(at_zero[0].clone(), at_zero[1].clone()) > 1e-4);
}

#[test]
fn reconstruction_keeps_exactly_the_top_levels() {
    let (model, x) = model_and_images();
    let all =
        reconstruct_keeping_top(&model, x.clone(), None, 2, 1.0, &mut rng()).expect("keep all");
    assert!(
        max_abs_diff(all, x.clone()) < 1e-10,
        "keeping every level is decode(encode(x))"
    );
    let top =
        reconstruct_keeping_top(&model, x.clone(), None, 1, 1.0, &mut rng()).expect("keep top");
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
    assert!(reconstruct_keeping_top(&model, x, None, 3, 1.0, &mut rng()).is_err());
}

/// Which of the six images of [`model_and_images`] have the attribute.
const FLAGS: [bool; 6] = [true, false, true, true, false, false];

/// The model, the latents of its six images and their attribute direction for [`FLAGS`].
fn latents_and_direction() -> (Glow, Latents, Latents) {
    let (model, x) = model_and_images();
    let (latents, _) = model.encode(x, None).expect("encode");
    let direction = attribute_direction(&latents, &FLAGS).expect("direction");
    (model, latents, direction)
}

#[test]
fn attribute_direction_is_the_difference_of_class_means() {
    let (_, latents, direction) = latents_and_direction();
    for (eps, dir) in latents.levels.iter().zip(&direction.levels) {
        let per_image: Vec<Vec<f64>> = (0..6)
            .map(|i| to_f64_vec(eps.clone().narrow(0, i, 1)))
            .collect();
        let size = per_image[0].len();
        let mean = |want: bool| -> Vec<f64> {
            let chosen: Vec<&Vec<f64>> = per_image
                .iter()
                .zip(FLAGS)
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
        let worst = max_abs_gap(&got, &expected);
        assert!(
            worst < 1e-12,
            "direction differs from the independent means by {worst}"
        );
    }
    let err = attribute_direction(&latents, &[true; 6]).expect_err("no image without");
    assert!(err.to_string().contains("0 without"), "{err}");
}

#[test]
fn moving_along_a_direction_adds_alpha_times_it_to_every_image_latent() {
    let (model, latents, direction) = latents_and_direction();
    let host =
        |l: &Latents| -> Vec<Vec<f64>> { l.levels.iter().map(|t| to_f64_vec(t.clone())).collect() };
    let (eps, dir) = (host(&latents), host(&direction));
    for alpha in [-1.5, -0.5, 0.0, 0.25, 1.0, 2.0] {
        // ε + α·d by hand: the direction is one image's worth of values, repeated per image.
        let expected: Vec<Vec<f64>> = eps
            .iter()
            .zip(&dir)
            .map(|(e, d)| {
                e.iter()
                    .enumerate()
                    .map(|(i, v)| v + alpha * d[i % d.len()])
                    .collect()
            })
            .collect();
        let moved = move_along(&latents, &direction, alpha);
        for (got, want) in host(&moved).iter().zip(&expected) {
            let worst = max_abs_gap(got, want);
            assert!(worst < 1e-12, "α = {alpha}: latents off by {worst:.3e}");
        }
        // The moved images are the decoding of the hand-moved latents.
        let by_hand = Latents {
            levels: expected
                .iter()
                .zip(&latents.levels)
                .map(|(v, t)| glowflow::tensor_ops::from_f64(v.clone(), t.dims(), &t.device()))
                .collect(),
        };
        let (want, _) = model.decode(&by_hand, None).expect("decode");
        let (got, _) = model.decode(&moved, None).expect("decode");
        let (original, _) = model.decode(&latents, None).expect("decode");
        assert!(
            max_abs_diff(got.clone(), want) < 1e-10,
            "α = {alpha}: images"
        );
        let shift = max_abs_diff(got, original);
        assert_eq!(
            alpha == 0.0,
            shift < 1e-12,
            "α = {alpha} moves images by {shift:.3e}"
        );
    }
    // Linear in α: two moves add up to one.
    let twice = move_along(&move_along(&latents, &direction, 0.75), &direction, -2.0);
    let once = move_along(&latents, &direction, -1.25);
    for (a, b) in twice.levels.iter().zip(&once.levels) {
        assert!(max_abs_diff(a.clone(), b.clone()) < 1e-12, "α adds up");
    }
}

/// Ten random labelled 1x4x4 images, labels 0, 1, 2, 0, 1, ...
fn labelled_images() -> ImageDataset {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    ImageDataset {
        shape: [1, 4, 4],
        pixels: (0..10 * 16).map(|_| rng.random::<u8>()).collect(),
        labels: Some((0..10).map(|i| i % 3).collect()),
        n_classes: 3,
    }
}

#[test]
fn latents_round_trip_through_a_file_and_decode_to_the_images() {
    let (model, x) = model_and_images();
    let dir = TempDir::new("latent-file");
    let path = dir.path("z.safetensors");
    let (latents, _) = model.encode(x.clone(), None).expect("encode");
    let mut meta = BTreeMap::new();
    meta.insert("inputs".to_string(), "six images".to_string());
    save_latents(&path, &model, &latents, &meta).expect("save");
    let (read, read_meta) = load_latents(&path, &model, &f64_device()).expect("load");
    for (a, b) in latents.levels.iter().zip(&read.levels) {
        assert_eq!(to_f64_vec(a.clone()), to_f64_vec(b.clone()), "bit-exact");
    }
    assert_eq!(
        read_meta.get("inputs").map(String::as_str),
        Some("six images")
    );
    assert_eq!(
        read_meta.get("fingerprint"),
        Some(&model_fingerprint(&model))
    );
    let (decoded, _) = model.decode(&read, None).expect("decode");
    assert!(max_abs_diff(decoded, x) < 1e-10);

    // Another architecture, a truncated file and a file of another kind are clear errors.
    let other = GlowConfig {
        steps: 3,
        ..tiny_grey_config()
    }
    .init(&f64_device())
    .expect("valid");
    let err = load_latents(&path, &other, &f64_device()).expect_err("other architecture");
    assert_error_mentions(err, &path, &["another architecture", "K = 2"]);
    let bytes = std::fs::read(&path).expect("read");
    let cut = dir.write("cut.safetensors", &bytes[..bytes.len() - 9]);
    let err = load_latents(&cut, &model, &f64_device()).expect_err("truncated");
    assert_error_mentions(err, &cut, &["not a glowflow latent file"]);
    let weights = dir.path("model");
    glowflow::save_model(&model, &weights).expect("save model");
    let not_latents = weights.join("model.safetensors");
    let err = load_latents(&not_latents, &model, &f64_device()).expect_err("weights file");
    assert_error_mentions(
        err,
        &not_latents,
        &["not a glowflow latent file", "glowflow encode"],
    );
}

#[test]
fn dataset_direction_over_uneven_batches_equals_the_one_batch_direction_of_a_class() {
    let (model, _) = model_and_images();
    let data = labelled_images();
    let names: Vec<String> = ["zero", "one", "two"].map(String::from).to_vec();
    let labels = data.labels.clone().expect("labelled");
    let flags = class_flags(&labels, &names, "TWO").expect("class by name, any case");
    assert_eq!(flags, labels.iter().map(|&l| l == 2).collect::<Vec<_>>());
    assert_eq!(class_flags(&labels, &names, "2").expect("by number"), flags);
    let err = class_flags(&labels, &names, "three").expect_err("no such class");
    assert!(err.to_string().contains("zero, one, two"), "{err}");

    let (batched, sums) = dataset_direction(&model, &data, &flags, 3).expect("direction");
    assert_eq!((sums.n_with, sums.n_without), (3, 7));
    let all: Vec<usize> = (0..10).collect();
    let x = images_at_bin_centres(&model, &data, &all).expect("images");
    let (latents, _) = model.encode(x, None).expect("encode");
    let whole = attribute_direction(&latents, &flags).expect("one batch");
    for (a, b) in batched.levels.iter().zip(&whole.levels) {
        assert_eq!(a.dims()[0], 1);
        assert!(max_abs_diff(a.clone(), b.clone()) < 1e-12);
    }
    let mut empty = DirectionSums::default();
    empty.add(&latents, &[false; 10]).expect("add");
    assert!(empty.direction().is_err(), "no image with the attribute");
}

#[test]
fn directions_are_cached_per_model_and_key_and_recomputed_when_either_changes() {
    let (model, _) = model_and_images();
    let data = labelled_images();
    let flags: Vec<bool> = (0..10).map(|i| i % 3 == 1).collect();
    let dir = TempDir::new("direction-cache");
    let path = dir.path("directions/one.safetensors");
    let mut key = BTreeMap::new();
    key.insert("attribute".to_string(), "one".to_string());
    let computed = std::cell::Cell::new(0);
    let compute = |m: &Glow| {
        computed.set(computed.get() + 1);
        dataset_direction(m, &data, &flags, 4)
    };
    let first = cached_direction(&path, &model, &key, || compute(&model)).expect("computed");
    assert!(!first.from_cache && path.is_file());
    let second = cached_direction(&path, &model, &key, || compute(&model)).expect("cached");
    assert!(second.from_cache);
    assert_eq!((second.n_with, second.n_without), (3, 7));
    for (a, b) in first.direction.levels.iter().zip(&second.direction.levels) {
        assert_eq!(to_f64_vec(a.clone()), to_f64_vec(b.clone()));
    }
    assert_eq!(computed.get(), 1);

    key.insert("images".to_string(), "10".to_string());
    let rekeyed = cached_direction(&path, &model, &key, || compute(&model)).expect("new key");
    assert!(!rekeyed.from_cache, "a different key is recomputed");
    let retrained = perturb(model, 0.01, 9);
    let fresh =
        cached_direction(&path, &retrained, &key, || compute(&retrained)).expect("new weights");
    assert!(!fresh.from_cache, "other weights are recomputed");
    assert_eq!(computed.get(), 3);
    std::fs::write(&path, b"garbage").expect("corrupt the cache");
    let repaired =
        cached_direction(&path, &retrained, &key, || compute(&retrained)).expect("repaired");
    assert!(!repaired.from_cache && computed.get() == 4);
}

#[test]
fn celeba_flags_look_images_up_by_file_name() {
    use glowflow::data::celeba::Attributes;
    use glowflow::latent::attribute::celeba_flags;
    let table = Attributes {
        names: vec!["Eyeglasses".into(), "Smiling".into()],
        files: vec![
            "000001.jpg".into(),
            "000002.jpg".into(),
            "000003.jpg".into(),
        ],
        values: vec![vec![false, true], vec![true, false], vec![false, true]],
    };
    let files: Vec<std::path::PathBuf> = ["000003.jpg", "000001.jpg", "000002.jpg"]
        .iter()
        .map(|f| std::path::Path::new("celeba/train").join(f))
        .collect();
    let flags = celeba_flags(&table, &files, "Smiling").expect("flags");
    assert_eq!(flags, [true, true, false]);
    let err = celeba_flags(&table, &files, "Hat").expect_err("no such attribute");
    assert!(err.to_string().contains("Eyeglasses, Smiling"), "{err}");
    let missing = [std::path::PathBuf::from("celeba/train/999999.jpg")];
    let err = celeba_flags(&table, &missing, "Smiling").expect_err("not in the file");
    assert!(err.to_string().contains("999999.jpg"), "{err}");
}

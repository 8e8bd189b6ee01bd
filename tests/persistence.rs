//! Saving and loading: a reloaded model gives bit-identical bits/dim and keeps its
//! data-dependent init; bad configs and bad files get errors that say what to fix.

mod common;

use std::path::Path;

use burn::tensor::{Device, Tensor};
use common::*;
use glowflow::likelihood::uniform_noise;
use glowflow::tensor_ops::to_f64_vec;
use glowflow::{load_model, save_model, CouplingKind, Glow, GlowConfig, GlowError, ImageShape};
use rand::SeedableRng;

fn small_config() -> GlowConfig {
    grey8_config(16)
}

fn images(n: usize, seed: u64, device: &Device) -> Tensor<4> {
    // 8-bit pixel values as floats.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let values: Vec<f64> = (0..n * 64)
        .map(|_| f64::from(rand::Rng::random_range(&mut rng, 0u8..=255)))
        .collect();
    glowflow::tensor_ops::from_f64(values, [n, 1, 8, 8], device)
}

fn trained_like_model(device: &Device) -> Glow {
    let config = small_config();
    let model = config.init(device).expect("valid config");
    let x = glowflow::likelihood::preprocess(
        images(16, 1, device),
        uniform_noise(
            [16, 1, 8, 8],
            &mut rand::rngs::StdRng::seed_from_u64(2),
            device,
        ),
        8,
    );
    let model = model.data_init(x, None).expect("matching shapes");
    perturb(model, 0.02, 3)
}

fn bpd(model: &Glow, device: &Device) -> Vec<f64> {
    let noise = uniform_noise(
        [4, 1, 8, 8],
        &mut rand::rngs::StdRng::seed_from_u64(7),
        device,
    );
    to_f64_vec(
        model
            .bits_per_dim(images(4, 6, device), noise, None)
            .expect("bits/dim"),
    )
}

#[test]
fn reload_gives_bit_identical_bits_per_dim_and_never_reinitialises() {
    let device = f32_device();
    let model = trained_like_model(&device);
    let dir = scratch_dir("roundtrip");
    save_model(&model, &dir).expect("save");
    let loaded = load_model(&dir, &device).expect("load");
    assert!(
        loaded.is_initialized(),
        "the init flag is saved with the weights"
    );
    let before = bpd(&model, &device);
    assert!(
        before.iter().all(|b| b.is_finite() && *b > 0.0),
        "{before:?}"
    );
    assert_eq!(before, bpd(&loaded, &device), "bits/dim after reload");
    // Another data-dependent init on different data must leave the loaded model unchanged.
    let other = glowflow::likelihood::preprocess(
        images(16, 9, &device),
        Tensor::zeros([16, 1, 8, 8], &device),
        8,
    );
    let again = loaded.data_init(other, None).expect("init");
    assert_eq!(
        before,
        bpd(&again, &device),
        "a loaded model does not re-run its init"
    );
}

/// The same weights are saved to the same bytes, however often and from wherever (the writers'
/// metadata maps come in any order; the header is written in key order), and a model loaded and
/// saved again gives the file it was loaded from: `cmp` or a checksum can tell that two runs
/// ended alike. Latent files likewise.
#[test]
fn the_same_weights_and_latents_are_saved_to_the_same_bytes() {
    let device = f32_device();
    let model = trained_like_model(&device);
    let dir = scratch_dir("same-bytes");
    let saved: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let to = dir.join(format!("model-{i}"));
            save_model(&model, &to).expect("save");
            std::fs::read(to.join("model.safetensors")).expect("read")
        })
        .collect();
    assert!(saved.iter().all(|bytes| *bytes == saved[0]));
    let reloaded = load_model(&dir.join("model-0"), &device).expect("load");
    save_model(&reloaded, &dir.join("again")).expect("save");
    assert!(std::fs::read(dir.join("again/model.safetensors")).expect("read") == saved[0]);
    let length = u64::from_le_bytes(saved[0][..8].try_into().expect("8 bytes")) as usize;
    let header = std::str::from_utf8(&saved[0][8..8 + length]).expect("utf-8");
    let at = |key: &str| header.find(key).expect(key);
    assert!(at("\"format\"") < at("\"producer\"") && at("\"producer\"") < at("\"version\""));
    assert!(
        serde_json::from_str::<serde_json::Value>(header).is_ok(),
        "{header}"
    );

    let latents = model
        .encode(
            glowflow::likelihood::preprocess(
                images(2, 4, &device),
                Tensor::zeros([2, 1, 8, 8], &device),
                8,
            ),
            None,
        )
        .expect("encode")
        .0;
    let extra = [("a", "1"), ("b", "2"), ("c", "3")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into_iter()
        .collect();
    let files: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let path = dir.join(format!("latents-{i}.safetensors"));
            glowflow::io::latent_file::save_latents(&path, &model, &latents, &extra).expect("save");
            std::fs::read(path).expect("read")
        })
        .collect();
    assert!(files.iter().all(|bytes| *bytes == files[0]));
}

fn assert_file_error(result: Result<Glow, GlowError>, path: &Path, fragment: &str) {
    let err = result.expect_err("loading must fail");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "error names the file: {text}"
    );
    assert!(text.contains(fragment), "error says `{fragment}`: {text}");
}

#[test]
fn truncated_weights_file_is_a_clear_error() {
    let device = f32_device();
    let dir = scratch_dir("truncated");
    save_model(&trained_like_model(&device), &dir).expect("save");
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).expect("read");
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).expect("truncate");
    assert_file_error(load_model(&dir, &device), &weights, "truncated or corrupt");
}

#[test]
fn weights_of_another_architecture_are_a_clear_error() {
    let device = f32_device();
    let dir = scratch_dir("other-arch");
    save_model(&trained_like_model(&device), &dir).expect("save");
    let weights = dir.join("model.safetensors");
    for change in [
        |c: &mut GlowConfig| c.steps = 3,
        |c: &mut GlowConfig| c.width = 8,
        |c: &mut GlowConfig| c.lu = false,
    ] {
        let mut config = small_config();
        change(&mut config);
        std::fs::write(dir.join("config.json"), config.to_json()).expect("write config");
        assert_file_error(
            load_model(&dir, &device),
            &weights,
            "do not match the architecture",
        );
    }
}

#[test]
fn bad_or_missing_config_file_is_a_clear_error() {
    let device = f32_device();
    let dir = scratch_dir("bad-config");
    save_model(&trained_like_model(&device), &dir).expect("save");
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, "{ \"levels\": 2, \"stepz\": 3 }").expect("write");
    assert_file_error(load_model(&dir, &device), &config_path, "stepz");
    let mut config = small_config();
    config.levels = 4;
    std::fs::write(&config_path, config.to_json()).expect("write");
    assert_file_error(
        load_model(&dir, &device),
        &config_path,
        "not divisible by 2^L",
    );
    std::fs::remove_file(&config_path).expect("remove");
    assert_file_error(load_model(&dir, &device), &config_path, "No such file");
}

type ConfigChange = fn(&mut GlowConfig);

#[test]
fn invalid_configs_say_what_to_change() {
    let cases: Vec<(ConfigChange, &str)> = vec![
        (
            |c| {
                c.image = ImageShape {
                    channels: 1,
                    height: 28,
                    width: 28,
                }
            },
            "not divisible by 2^L",
        ),
        (|c| c.steps = 0, "steps (K) is 0"),
        (|c| c.levels = 0, "levels (L) is 0"),
        (|c| c.width = 0, "width is 0"),
        (|c| c.n_bits = 9, "n_bits = 9"),
        (|c| c.scale_floor = 1.0, "scale_floor = 1 is outside [0, 1)"),
        (|c| c.scale_floor = f64::NAN, "scale_floor = NaN"),
        (
            |c| {
                c.scale_floor = 0.1;
                c.coupling = CouplingKind::Additive;
            },
            "affine coupling only",
        ),
        (|c| c.image.channels = 0, "zero dimension"),
        (
            |c| c.actnorm_logscale_factor = f64::NAN,
            "not a finite number",
        ),
    ];
    let device = f32_device();
    for (change, fragment) in cases {
        let mut config = GlowConfig::default();
        change(&mut config);
        let err = config.init(&device).expect_err("invalid config");
        assert!(matches!(err, GlowError::Config(_)), "{err}");
        assert!(err.to_string().contains(fragment), "`{fragment}` in: {err}");
    }
    let ok = GlowConfig {
        image: ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        levels: 2,
        ..GlowConfig::default()
    };
    ok.validate().expect("28x28 works with L = 2");
}

#[test]
fn wrong_inputs_to_the_model_are_clear_errors() {
    let device = f32_device();
    let model = trained_like_model(&device);
    let err = model
        .log_prob(Tensor::zeros([2, 1, 16, 16], &device), None)
        .expect_err("wrong size");
    assert!(err.to_string().contains("16x16"), "{err}");
    let classes = Tensor::zeros([2, 3], &device);
    let err = model
        .log_prob(Tensor::zeros([2, 1, 8, 8], &device), Some(&classes))
        .expect_err("unconditional");
    assert!(err.to_string().contains("unconditional"), "{err}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let err = model
        .sample(2, -1.0, None, &mut rng)
        .expect_err("negative temperature");
    assert!(err.to_string().contains("temperature"), "{err}");

    let mut config = small_config();
    config.n_classes = 4;
    let conditional = config.init(&device).expect("valid");
    let err = conditional
        .log_prob(Tensor::zeros([2, 1, 8, 8], &device), None)
        .expect_err("needs labels");
    assert!(err.to_string().contains("class-conditional"), "{err}");
    let err = conditional
        .one_hot(&[1, 4], &device)
        .expect_err("label 4 of 4 classes");
    assert!(err.to_string().contains("label 4"), "{err}");
}

#[test]
fn degenerate_weights_give_non_finite_samples_not_a_panic() {
    use glowflow::flow::permute::Permutation;
    let device = f32_device();
    let config = GlowConfig {
        lu: false,
        ..small_config()
    };
    let mut model = config.init(&device).expect("valid");
    // Make the first 1x1 convolution singular: every weight zero.
    if let Permutation::Conv(conv) = &mut model.levels[0].steps[0].permutation {
        let zeros = conv.weight.val().zeros_like();
        conv.weight = glowflow::tensor_ops::replace_value(conv.weight.clone(), zeros);
    } else {
        panic!("lu = false builds plain 1x1 convolutions");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let x = model
        .sample(2, 0.7, None, &mut rng)
        .expect("sampling does not fail");
    assert_eq!(glowflow::tensor_ops::non_finite_samples(&x), 2);
    let healthy = small_config().init(&device).expect("valid");
    let x = healthy.sample(2, 0.7, None, &mut rng).expect("sample");
    assert_eq!(glowflow::tensor_ops::non_finite_samples(&x), 0);
}

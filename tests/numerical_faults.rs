//! NaN or infinite inputs, labels out of range and latents of the wrong shape are errors at every
//! entry point of the model, never NaN results presented as valid; so are weights files that
//! hold non-finite values.

mod common;

use burn::tensor::Tensor;
use common::*;
use glowflow::{CouplingKind, GlowError, Latents, PermutationKind};

/// `x` with the value of element `index` (in row-major order) replaced by `value`.
fn with_value(x: &Tensor<4>, index: usize, value: f64) -> Tensor<4> {
    let shape = x.dims();
    let mut values = values(x.clone().reshape([-1]));
    values[index] = value;
    glowflow::tensor_ops::from_f64(values, shape, &x.device())
}

fn assert_value_error<T>(result: glowflow::Result<T>, entry: &str, facts: &[&str]) {
    match result {
        Err(err @ GlowError::Value { .. }) => {
            let message = err.to_string();
            for fact in facts {
                assert!(message.contains(fact), "{entry}: {message} lacks {fact:?}");
            }
        }
        Err(other) => panic!("{entry}: expected an invalid-values error, got {other}"),
        Ok(_) => panic!("{entry}: accepted non-finite values"),
    }
}

#[test]
fn non_finite_images_are_refused_by_every_entry_point_that_takes_images() {
    let device = f64_device();
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    let model = config.init(&device).expect("valid");
    let x = normal([3, 2, 4, 4], 0.1, 1, &device);
    let per_sample = 2 * 4 * 4;
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        // Sample 2 is the bad one; the error names it.
        let poisoned = with_value(&x, 2 * per_sample + 5, bad);
        assert_value_error(
            model.encode(poisoned.clone(), None),
            "encode",
            &["samples 2"],
        );
        assert_value_error(
            model.log_prob(poisoned.clone(), None),
            "log_prob",
            &["1 of the 3"],
        );
        assert_value_error(
            model.clone().data_init(poisoned.clone(), None),
            "data_init",
            &["samples 2"],
        );
        let zero_noise = Tensor::<4>::zeros([3, 2, 4, 4], &device);
        let images = with_value(&(x.clone() * 0.0 + 128.0), 2 * per_sample, bad);
        assert_value_error(
            model.bits_per_dim(images, zero_noise, None),
            "bits_per_dim",
            &["samples 2"],
        );
    }
    // The same images without the bad value go through, with finite results.
    let log_p = values(model.log_prob(x, None).expect("finite input"));
    assert!(log_p.iter().all(|v| v.is_finite()), "{log_p:?}");
}

#[test]
fn non_finite_latents_are_refused_by_decode() {
    let device = f64_device();
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    let model = config.init(&device).expect("valid");
    let latents = Latents {
        levels: model
            .latent_shapes()
            .into_iter()
            .enumerate()
            .map(|(l, [c, h, w])| normal([4, c, h, w], 1.0, l as u64, &device))
            .collect(),
    };
    for level in 0..latents.levels.len() {
        let mut poisoned = latents.clone();
        poisoned.levels[level] = with_value(&latents.levels[level], 0, f64::NAN);
        assert_value_error(
            model.decode(&poisoned, None),
            "decode",
            &[&format!("level {level} latents"), "samples 0"],
        );
    }
    assert!(model.decode(&latents, None).is_ok());
}

#[test]
fn labels_out_of_range_or_non_finite_are_refused() {
    let device = f64_device();
    let config = glowflow::GlowConfig {
        n_classes: 3,
        ..tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true)
    };
    let model = config.init(&device).expect("valid");
    match model.one_hot(&[0, 3], &device) {
        Err(err @ GlowError::Label(_)) => {
            assert!(err.to_string().contains("label 3 (sample 1)"), "{err}")
        }
        other => panic!("label 3 of 3 classes: {other:?}"),
    }
    let x = normal([2, 2, 4, 4], 0.1, 2, &device);
    let mut rows = values(
        model
            .one_hot(&[0, 2], &device)
            .expect("in range")
            .reshape([-1]),
    );
    rows[4] = f64::NAN;
    let rows = glowflow::tensor_ops::from_f64(rows, [2, 3], &device);
    assert_value_error(
        model.log_prob(x.clone(), Some(&rows)),
        "log_prob with a NaN label row",
        &["class labels", "samples 1"],
    );
    let wrong_width = Tensor::<2>::zeros([2, 4], &device);
    assert!(matches!(
        model.log_prob(x, Some(&wrong_width)),
        Err(GlowError::Shape { .. })
    ));
}

#[test]
fn latents_of_the_wrong_shape_or_count_are_refused_by_decode() {
    let device = f64_device();
    let config = tiny_config(2, CouplingKind::Additive, PermutationKind::Reverse, false);
    let model = config.init(&device).expect("valid");
    let shapes = model.latent_shapes();
    let good: Vec<Tensor<4>> = shapes
        .iter()
        .map(|&[c, h, w]| Tensor::zeros([2, c, h, w], &device))
        .collect();
    let cases: Vec<(&str, Vec<Tensor<4>>)> = vec![
        ("one level missing", good[..1].to_vec()),
        (
            "one level too many",
            [good.clone(), good[..1].to_vec()].concat(),
        ),
        ("a wrong channel count", {
            let mut levels = good.clone();
            let [c, h, w] = shapes[0];
            levels[0] = Tensor::zeros([2, c + 1, h, w], &device);
            levels
        }),
        ("levels of different batch sizes", {
            let mut levels = good.clone();
            let [c, h, w] = shapes[1];
            levels[1] = Tensor::zeros([3, c, h, w], &device);
            levels
        }),
    ];
    for (what, levels) in cases {
        match model.decode(&Latents { levels }, None) {
            Err(GlowError::Shape { .. }) => {}
            other => panic!(
                "{what}: expected a shape error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}

#[test]
fn a_weights_file_with_a_non_finite_value_is_refused_naming_the_tensor() {
    let device = f64_device();
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    let model = config.init(&device).expect("valid");
    let dir = TempDir::new("non-finite-weights");
    glowflow::io::model_dir::save_model(&model, &dir.0).expect("save");
    let weights = dir.0.join(glowflow::io::model_dir::WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).expect("read");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    // Poison the first value of the first floating-point tensor, found through the format itself:
    // the header's length, then the tensor's offsets in the data section.
    let (name, view) = tensors
        .iter()
        .find(|(_, v)| matches!(v.dtype(), safetensors::Dtype::F32 | safetensors::Dtype::F64))
        .expect("a float tensor");
    let width = if view.dtype() == safetensors::Dtype::F32 {
        4
    } else {
        8
    };
    let offset = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
    let mut poisoned = bytes.clone();
    let nan: Vec<u8> = if width == 4 {
        f32::NAN.to_le_bytes().to_vec()
    } else {
        f64::NAN.to_le_bytes().to_vec()
    };
    poisoned[offset..offset + width].copy_from_slice(&nan);
    std::fs::write(&weights, &poisoned).expect("write");
    let err = glowflow::io::model_dir::load_model(&dir.0, &device).expect_err("NaN weight");
    assert_error_mentions(err, &weights, &[name, "NaN or infinite"]);
}

//! A batch of 0 images is an error at every entry point of the model, never a panic or a NaN.

mod common;

use burn::tensor::Tensor;
use common::*;
use glowflow::{CouplingKind, GlowError, Latents, PermutationKind};
use rand::SeedableRng;

fn assert_empty_batch_error<T>(result: glowflow::Result<T>, entry: &str) {
    match result {
        Err(err @ GlowError::Shape { .. }) => {
            assert!(err.to_string().contains("0 images"), "{entry}: {err}")
        }
        Err(other) => panic!("{entry}: expected a shape error, got {other}"),
        Ok(_) => panic!("{entry}: accepted an empty batch"),
    }
}

#[test]
fn every_entry_point_rejects_an_empty_batch() {
    let device = f64_device();
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    let model = config.init(&device).expect("valid");
    let empty = Tensor::<4>::zeros([0, 2, 4, 4], &device);
    assert_empty_batch_error(model.encode(empty.clone(), None), "encode");
    assert_empty_batch_error(model.log_prob(empty.clone(), None), "log_prob");
    assert_empty_batch_error(
        model.bits_per_dim(empty.clone(), empty.clone(), None),
        "bits_per_dim",
    );
    assert_empty_batch_error(model.clone().data_init(empty, None), "data_init");
    let latents = Latents {
        levels: model
            .latent_shapes()
            .into_iter()
            .map(|[c, h, w]| Tensor::<4>::zeros([0, c, h, w], &device))
            .collect(),
    };
    assert_empty_batch_error(model.decode(&latents, None), "decode");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    assert_empty_batch_error(model.sample(0, 0.7, None, &mut rng), "sample");
}

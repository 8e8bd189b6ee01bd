//! The one walk over the model: the maps come in the documented order, their parameters line up
//! with the model's flat list, and the composition helpers compose.

mod common;

use common::*;
use glowflow::flow::{forward_chain, inverse_chain, InvertibleMap};
use glowflow::model::params::flat_params;
use glowflow::model::walk::{GlowMap, Leaves};
use glowflow::tensor_ops::to_f64_vec;
use glowflow::{CouplingKind, GlowConfig, PermutationKind};

/// A short name for each map of the walk.
fn kind(map: &GlowMap) -> &'static str {
    match map {
        GlowMap::Squeeze(_) => "squeeze",
        GlowMap::Step(_) => "step",
        GlowMap::Split(_) => "split",
        GlowMap::Top(_) => "top",
    }
}

#[test]
fn the_walk_lists_squeeze_steps_and_split_per_level_then_the_top_prior() {
    let device = f64_device();
    let config = GlowConfig {
        levels: 3,
        steps: 2,
        image: glowflow::ImageShape {
            channels: 1,
            height: 8,
            width: 8,
        },
        ..tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, true)
    };
    let model = config.init(&device).expect("valid");
    let kinds: Vec<&str> = model.maps().iter().map(kind).collect();
    let level = ["squeeze", "step", "step"];
    let expected: Vec<&str> =
        [&level[..], &["split"], &level, &["split"], &level, &["top"]].concat();
    assert_eq!(kinds, expected);
    let leaves: Vec<Leaves> = model.maps().iter().map(GlowMap::leaves).collect();
    assert_eq!(
        leaves.iter().filter(|l| **l == Leaves::SecondHalf).count(),
        2,
        "one latent leaves at each split"
    );
    assert_eq!(
        leaves.last(),
        Some(&Leaves::All),
        "the walk ends at the top"
    );
}

#[test]
fn the_maps_parameters_in_walk_order_are_the_models_flat_parameters() {
    let device = f64_device();
    for n_classes in [0, 3] {
        let config = GlowConfig {
            n_classes,
            ..tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true)
        };
        let model = perturb(config.init(&device).expect("valid"), 0.1, 3);
        let mut concatenated = Vec::new();
        for map in model.maps() {
            match map {
                GlowMap::Squeeze(_) => {}
                GlowMap::Step(step) => concatenated.extend(flat_params(step)),
                GlowMap::Split(split) => concatenated.extend(flat_params(split)),
                GlowMap::Top(top) => concatenated.extend(flat_params(top)),
            }
        }
        let whole = flat_params(&model);
        assert_eq!(concatenated.len(), whole.len(), "one entry per parameter");
        for (i, (a, b)) in concatenated.into_iter().zip(whole).enumerate() {
            assert_eq!(to_f64_vec(a), to_f64_vec(b), "parameter {i}");
        }
    }
}

#[test]
fn a_chain_is_the_maps_applied_one_after_the_other_and_its_inverse_undoes_it() {
    let device = f64_device();
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    let model = perturb(config.init(&device).expect("valid"), 0.1, 4);
    let steps: Vec<&dyn InvertibleMap> = model.levels[0]
        .steps
        .iter()
        .map(|s| s as &dyn InvertibleMap)
        .collect();
    let x = normal([3, 8, 2, 2], 1.0, 5, &device);
    // By hand: each step in turn, log-dets summed.
    let (h, ld_first) = steps[0].forward(x.clone(), None);
    let (y_hand, ld_second) = steps[1].forward(h, None);
    let (y, log_det) = forward_chain(&steps, x.clone(), None);
    assert_eq!(to_f64_vec(y.clone()), to_f64_vec(y_hand));
    assert_eq!(values(log_det.clone()), values(ld_first + ld_second));
    let (x_back, inverse_log_det) = inverse_chain(&steps, y, None);
    assert!(
        max_abs_diff(x_back, x) < 1e-12,
        "inverse_chain undoes forward_chain"
    );
    for (a, b) in values(log_det).iter().zip(values(inverse_log_det)) {
        assert_rel_close(a + b, 0.0, 1e-12, "chain log-dets cancel");
    }
}

#[test]
fn parting_a_maps_output_and_joining_it_again_is_the_identity() {
    let device = f64_device();
    let y = normal([2, 4, 2, 2], 1.0, 6, &device);
    for leaves in [Leaves::Nothing, Leaves::SecondHalf, Leaves::All] {
        let (kept, latent) = leaves.part(y.clone());
        let channels = |t: &Option<burn::tensor::Tensor<4>>| t.as_ref().map(|t| t.dims()[1]);
        let expected = match leaves {
            Leaves::Nothing => (Some(4), None),
            Leaves::SecondHalf => (Some(2), Some(2)),
            Leaves::All => (None, Some(4)),
        };
        assert_eq!((channels(&kept), channels(&latent)), expected, "{leaves:?}");
        let joined = leaves.join(kept, latent);
        assert_eq!(to_f64_vec(joined), to_f64_vec(y.clone()), "{leaves:?}");
    }
}

//! The PyTorch Glows' checkpoints in and out (src/io/import/), against the peers' own outputs.
//!
//! tests/fixtures/make_rosinality.py and make_y0ast.py ran the peers' code once and wrote, per
//! model, the state_dict (NAME.pt) and NAME.safetensors: 8 images, their dequantisation noise,
//! the peer's log p(x) and bits/dim per image, its standardised latents per level and samples it
//! decoded from stored noise. No Python or torch runs here.

mod common;

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::Tensor;
use common::fixtures::{self, fixtures, Reference};
use common::{assert_error_mentions, fails, max_abs_diff, scratch_dir, succeeds};
use glowflow::cluster::Cluster;
use glowflow::io::import::glow_state::glow_state;
use glowflow::io::import::torch_file::{read_state_dict, write_state_dict, HostTensor, StateDict};
use glowflow::io::import::{export_checkpoint, import_checkpoint, ImportOptions, Peer};
use glowflow::model::params::with_flat_params;
use glowflow::train::gradients::{loss_and_gradients, GradientPass};
use glowflow::{Glow, ImageShape, Latents};

/// The tolerances of the issue: bits/dim per image and latents, in f32.
const BPD_TOLERANCE: f64 = 1e-4;
const LATENT_TOLERANCE: f64 = 1e-4;

fn import(peer: Peer, name: &str, image: Option<[usize; 3]>, n_bits: Option<u32>) -> Glow {
    fixtures::import(peer, name, image, n_bits, &common::f32_device())
}

/// What one fixture measures, printed so the README can quote it.
#[derive(Debug)]
struct Gaps {
    bpd: f64,
    log_p: f64,
    latents: f64,
    decoded: f64,
    samples: f64,
}

/// Compares `model` with the peer's outputs in fixture `name`. `samples_from` gives the
/// latents whose decode the peer's `samples` are.
fn compare(model: &Glow, name: &str, samples_from: impl Fn(&Reference, &Glow) -> Latents) -> Gaps {
    let device = common::f32_device();
    let r = Reference::load(name);
    let classes = r
        .labels()
        .map(|labels| model.one_hot(&labels, &device).expect("labels"));
    let images: Tensor<4> = r.tensor("images", &device);
    let noise: Tensor<4> = r.tensor("noise", &device);
    let bpd = model
        .bits_per_dim(images.clone(), noise.clone(), classes.as_ref())
        .expect("bpd");
    let x = model.preprocess(images, noise);
    let log_p = model.log_prob(x, classes.as_ref()).expect("log p");
    let (latents, _) = model
        .encode(r.tensor("x", &device), classes.as_ref())
        .expect("encode");
    let latent_gap = latents
        .levels
        .iter()
        .enumerate()
        .map(|(l, eps)| max_abs_diff(eps.clone(), r.tensor(&format!("eps_{l}"), &device)))
        .fold(0.0, f64::max);
    let peer_latents = Latents {
        levels: (0..latents.levels.len())
            .map(|l| r.tensor(&format!("eps_{l}"), &device))
            .collect(),
    };
    let (decoded, _) = model
        .decode(&peer_latents, classes.as_ref())
        .expect("decode");
    let (samples, _) = model
        .decode(&samples_from(&r, model), classes.as_ref())
        .expect("decode samples");
    let gaps = Gaps {
        bpd: max_abs_diff(bpd, r.tensor("bpd", &device)),
        log_p: max_abs_diff(log_p, r.tensor("log_p", &device)),
        latents: latent_gap,
        decoded: max_abs_diff(decoded, r.tensor("x", &device)),
        samples: max_abs_diff(samples, r.tensor("samples", &device)),
    };
    println!("{name}: {gaps:?}");
    assert!(
        gaps.bpd < BPD_TOLERANCE,
        "{name}: bits/dim differ: {gaps:?}"
    );
    assert!(
        gaps.log_p < BPD_TOLERANCE * 64.0,
        "{name}: log p(x) differs: {gaps:?}"
    );
    assert!(
        gaps.latents < LATENT_TOLERANCE,
        "{name}: latents differ: {gaps:?}"
    );
    assert!(
        gaps.decoded < LATENT_TOLERANCE,
        "{name}: decoding the peer's latents: {gaps:?}"
    );
    assert!(
        gaps.samples < LATENT_TOLERANCE,
        "{name}: samples from the same noise: {gaps:?}"
    );
    gaps
}

/// rosinality samples: its Block.reverse decodes stored eps at every level.
fn rosinality_sample_eps(r: &Reference, model: &Glow) -> Latents {
    let device = common::f32_device();
    Latents {
        levels: (0..model.latent_shapes().len())
            .map(|l| r.tensor(&format!("sample_eps_{l}"), &device))
            .collect(),
    }
}

/// y0ast samples: decoded at temperature 0 (every split at its mean, eps = 0) from a stored top
/// latent.
fn y0ast_sample_eps(r: &Reference, model: &Glow) -> Latents {
    let device = common::f32_device();
    let shapes = model.latent_shapes();
    let top: Tensor<4> = r.tensor("sample_eps_top", &device);
    let n = top.dims()[0];
    let mut levels: Vec<Tensor<4>> = shapes[..shapes.len() - 1]
        .iter()
        .map(|&[c, h, w]| Tensor::zeros([n, c, h, w], &device))
        .collect();
    levels.push(top);
    Latents { levels }
}

#[test]
fn rosinality_affine_lu_computes_the_peers_function() {
    let model = import(
        Peer::Rosinality,
        "rosinality_affine",
        Some([3, 8, 8]),
        Some(5),
    );
    assert_eq!(model.config().n_bits, 5);
    compare(&model, "rosinality_affine", rosinality_sample_eps);
}

#[test]
fn rosinality_trained_on_fashion_mnist_computes_the_peers_function() {
    // 300 of the peer's Adam steps: its test bits/dim are a trained model's, not a random one's.
    let model = import(
        Peer::Rosinality,
        "rosinality_fashion_mnist",
        Some([1, 28, 28]),
        None,
    );
    assert_eq!(model.config().n_bits, 5, "rosinality's default bits");
    let peer_bpd = common::values(
        Reference::load("rosinality_fashion_mnist").tensor("bpd", &common::f32_device()),
    );
    let mean = peer_bpd.iter().sum::<f64>() / peer_bpd.len() as f64;
    assert!(mean < 3.5, "the peer's model is trained: {mean} bits/dim");
    compare(&model, "rosinality_fashion_mnist", rosinality_sample_eps);
}

#[test]
fn rosinality_additive_without_lu_from_the_legacy_format_computes_the_peers_function() {
    // Saved with _use_new_zipfile_serialization=False; --no_lu, whose last block is LU anyway.
    let model = import(
        Peer::Rosinality,
        "rosinality_additive_nolu",
        Some([3, 8, 8]),
        Some(8),
    );
    assert!(!model.config().lu);
    compare(&model, "rosinality_additive_nolu", rosinality_sample_eps);
}

#[test]
fn y0ast_affine_lu_computes_the_peers_function() {
    // The image shape and the bits come from the checkpoint and y0ast's fixed 8 bits.
    let model = import(Peer::Y0ast, "y0ast_affine", None, None);
    assert_eq!(model.config().image.dims(), 3 * 8 * 8);
    compare(&model, "y0ast_affine", y0ast_sample_eps);
}

#[test]
fn y0ast_class_conditional_additive_computes_the_peers_function() {
    let model = import(Peer::Y0ast, "y0ast_additive_cond", Some([1, 8, 8]), None);
    assert_eq!(model.config().n_classes, 3);
    assert!(
        model.config().class_head,
        "y0ast's project_class is the head"
    );
    compare(&model, "y0ast_additive_cond", y0ast_sample_eps);
    // Its classifier head: the peer's logits, and their cross-entropy as torch computes it.
    let device = common::f32_device();
    let r = Reference::load("y0ast_additive_cond");
    let scores = model
        .class_scores(r.tensor("x", &device))
        .expect("class scores");
    let logits = scores.head_logits.expect("the model has a head");
    let gap = max_abs_diff(logits.clone(), r.tensor("y_logits", &device));
    println!("y0ast_additive_cond: head logits {gap:.2e}");
    assert!(gap < 1e-5, "classifier logits differ by {gap:e}");
    let labels = r.labels().expect("labels");
    let classes = model.one_hot(&labels, &device).expect("labels");
    let bits = common::values(glowflow::likelihood::cross_entropy_bits(logits, classes));
    for (i, (bits, nats)) in bits.iter().zip(r.values("class_nats")).enumerate() {
        let gap = (bits * std::f64::consts::LN_2 - nats).abs();
        assert!(
            gap < 1e-5,
            "image {i}: {bits} bits against torch's {nats} nats"
        );
    }
}

/// The gradient of every parameter of y0ast's training loss (train.py: mean bits/dim, plus
/// `y_weight` times the classifier's mean cross-entropy in nats), which
/// tests/fixtures/make_y0ast.py took with torch's autograd, against glowflow's gradients of the
/// same loss (`weight_y = y_weight · ln 2`, as glowflow weighs bits) in both gradient modes,
/// carried to the peer's names by the export's key map.
#[test]
fn training_gradients_of_imported_models_equal_the_peers_autograd() {
    /// train.py's default --y_weight, with which the fixture's gradients were taken.
    const Y_WEIGHT: f64 = 0.01;
    let device = common::f32_device().autodiff();
    for name in ["y0ast_affine", "y0ast_additive_cond"] {
        let r = Reference::load(name);
        let model = fixtures::import(Peer::Y0ast, name, None, None, &device);
        let classes = r
            .labels()
            .map(|labels| model.one_hot(&labels, &device).expect("labels"));
        let names = r.names_under("grad.");
        assert!(names.len() > 50, "{name}: {} gradients", names.len());
        for recompute in [false, true] {
            let pass = GradientPass {
                recompute,
                shards: 1,
                weight_y: Y_WEIGHT * std::f64::consts::LN_2,
            };
            let (_, grads) = loss_and_gradients(
                &model,
                r.tensor("images", &device),
                r.tensor("noise", &device),
                classes.as_ref(),
                pass,
                &Cluster::single(),
            )
            .expect("gradients");
            let plain_grads = grads.into_iter().map(|g| g.map(|g| g.inner())).collect();
            let as_weights = with_flat_params(model.valid(), plain_grads);
            let theirs = glowflow::io::import::y0ast::from_glow(
                model.config(),
                &glow_state(&as_weights).expect("weights"),
            )
            .expect("the peer's names");
            let mut worst = (0.0f64, String::new());
            for key in &names {
                let ours = theirs[key].to_f32();
                let peer = r.values(&format!("grad.{key}"));
                let off = ours
                    .iter()
                    .zip(peer)
                    .map(|(a, b)| (f64::from(*a) - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm = peer.iter().map(|b| b * b).sum::<f64>().sqrt();
                let relative = off / norm.max(1e-6);
                if relative > worst.0 {
                    worst = (relative, key.clone());
                }
            }
            println!("{name} (recompute {recompute}): worst relative gradient gap {worst:?}");
            assert!(
                worst.0 < 1e-5,
                "{name} (recompute {recompute}): gradient of {} off by {:.2e} relative",
                worst.1,
                worst.0
            );
        }
    }
}

/// `state` without the keys for which `skip` holds.
fn without(state: &StateDict, skip: impl Fn(&str) -> bool) -> StateDict {
    state
        .iter()
        .filter(|(k, _)| !skip(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn export_gives_back_the_peers_checkpoint_and_import_is_its_inverse() {
    let dir = scratch_dir("import-roundtrip");
    let cases = [
        (
            Peer::Rosinality,
            "rosinality_affine",
            Some([3, 8, 8]),
            Some(5),
        ),
        (Peer::Y0ast, "y0ast_affine", None, None),
        (Peer::Y0ast, "y0ast_additive_cond", None, None),
    ];
    for (peer, name, image, n_bits) in cases {
        let model = import(peer, name, image, n_bits);
        let exported = dir.join(format!("{name}.pt"));
        export_checkpoint(peer, &model, &exported).expect("export");
        // Their weights come back bit for bit, y0ast's classifier head included.
        let original = read_state_dict(&fixtures().join(format!("{name}.pt"))).expect("fixture");
        let back = read_state_dict(&exported).expect("our file reads");
        assert_eq!(back, original, "{name}: exported weights");
        // And export then import is the identity on our weights.
        let options = ImportOptions {
            image: Some(model.config().image),
            n_bits: Some(model.config().n_bits),
        };
        let again = import_checkpoint(peer, &exported, &options, &common::f32_device())
            .expect("the export imports");
        assert_eq!(again.config(), model.config(), "{name}: config");
        assert_eq!(
            glow_state(&again).expect("weights"),
            glow_state(&model).expect("weights"),
            "{name}: weights after export and import"
        );
    }
}

#[test]
fn a_model_without_lu_exports_to_rosinality_with_its_last_block_factored() {
    let model = import(
        Peer::Rosinality,
        "rosinality_additive_nolu",
        Some([3, 8, 8]),
        Some(8),
    );
    let path = scratch_dir("import-nolu").join("nolu.pt");
    export_checkpoint(Peer::Rosinality, &model, &path).expect("export");
    let back = read_state_dict(&path).expect("reads");
    assert!(back.contains_key("blocks.0.flows.0.invconv.weight"));
    assert!(back.contains_key("blocks.1.flows.0.invconv.w_p"));
    let again = import_checkpoint(
        Peer::Rosinality,
        &path,
        &ImportOptions {
            image: Some(model.config().image),
            n_bits: Some(8),
        },
        &common::f32_device(),
    )
    .expect("imports");
    compare(&again, "rosinality_additive_nolu", rosinality_sample_eps);
}

#[test]
fn wrapper_prefixes_are_dropped() {
    // nn.DataParallel's `module.` (rosinality's train.py), and a state_dict saved inside a
    // dictionary under "model".
    let dir = scratch_dir("import-prefix");
    for (peer, name, image, prefix) in [
        (
            Peer::Rosinality,
            "rosinality_affine",
            Some([3, 8, 8]),
            "module.",
        ),
        (Peer::Y0ast, "y0ast_affine", None, "model."),
    ] {
        let original = read_state_dict(&fixtures().join(format!("{name}.pt"))).expect("fixture");
        let prefixed: StateDict = original
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
            .collect();
        let path = dir.join(format!("{name}.pt"));
        write_state_dict(&path, &prefixed).expect("write");
        let options = ImportOptions {
            image: image.map(|[channels, height, width]| ImageShape {
                channels,
                height,
                width,
            }),
            n_bits: None,
        };
        let model = import_checkpoint(peer, &path, &options, &common::f32_device())
            .expect("a prefixed checkpoint imports");
        let sample_eps = match peer {
            Peer::Rosinality => rosinality_sample_eps,
            Peer::Y0ast => y0ast_sample_eps,
        };
        compare(&model, name, sample_eps);
    }
}

/// The error of importing `state` (written to a scratch file) as `peer`'s, with `options`.
fn import_error(
    peer: Peer,
    state: &StateDict,
    options: &ImportOptions,
    name: &str,
) -> (PathBuf, glowflow::GlowError) {
    let path = scratch_dir(&format!("import-bad-{name}")).join(format!("{name}.pt"));
    write_state_dict(&path, state).expect("write");
    let err = import_checkpoint(peer, &path, options, &common::f32_device())
        .err()
        .unwrap_or_else(|| panic!("{name}: a bad checkpoint must not import"));
    (path, err)
}

fn rosinality_options() -> ImportOptions {
    ImportOptions {
        image: Some(ImageShape {
            channels: 3,
            height: 8,
            width: 8,
        }),
        n_bits: Some(5),
    }
}

#[test]
fn bad_checkpoints_are_errors_that_name_the_key_and_the_fix() {
    let ros = read_state_dict(&fixtures().join("rosinality_affine.pt")).expect("fixture");
    let y0 = read_state_dict(&fixtures().join("y0ast_affine.pt")).expect("fixture");
    let opts = rosinality_options();

    let (path, err) = import_error(Peer::Rosinality, &y0, &opts, "other-peer");
    assert_error_mentions(
        err,
        &path,
        &["blocks.0.flows.0.actnorm.loc", "--from y0ast"],
    );
    let (path, err) = import_error(Peer::Y0ast, &ros, &ImportOptions::default(), "other-peer-2");
    assert_error_mentions(
        err,
        &path,
        &["flow.layers.1.actnorm.bias", "--from rosinality"],
    );

    let missing = "blocks.1.flows.1.coupling.net.2.bias";
    let (path, err) = import_error(
        Peer::Rosinality,
        &without(&ros, |k| k == missing),
        &opts,
        "missing",
    );
    assert_error_mentions(err, &path, &[missing, "missing", "state_dict"]);

    let mut extra = ros.clone();
    extra.insert(
        "blocks.0.flows.0.coupling.dropout.p".into(),
        HostTensor::f32(vec![1], vec![0.5]),
    );
    let (path, err) = import_error(Peer::Rosinality, &extra, &opts, "extra");
    assert_error_mentions(
        err,
        &path,
        &[
            "blocks.0.flows.0.coupling.dropout.p",
            "not part of",
            "remove them",
        ],
    );

    let key = "blocks.0.prior.conv.bias";
    let mut misshapen = ros.clone();
    misshapen.insert(key.into(), HostTensor::f32(vec![13], vec![0.0; 13]));
    let (path, err) = import_error(Peer::Rosinality, &misshapen, &opts, "shape");
    assert_error_mentions(err, &path, &[key, "[13]", "[12]"]);

    let mut masked = ros.clone();
    masked.insert(
        "blocks.0.flows.0.invconv.u_mask".into(),
        HostTensor::f32(vec![12, 12], vec![1.0; 144]),
    );
    let (path, err) = import_error(Peer::Rosinality, &masked, &opts, "mask");
    assert_error_mentions(
        err,
        &path,
        &["blocks.0.flows.0.invconv.u_mask", "fixed buffer"],
    );

    let (path, err) = import_error(
        Peer::Rosinality,
        &ros,
        &ImportOptions::default(),
        "no-image",
    );
    assert_error_mentions(err, &path, &["--image 3xHxW"]);

    let wrong_size = ImportOptions {
        image: Some(ImageShape {
            channels: 3,
            height: 16,
            width: 16,
        }),
        n_bits: None,
    };
    let (path, err) = import_error(Peer::Y0ast, &y0, &wrong_size, "y0ast-size");
    assert_error_mentions(err, &path, &["3x8x8", "--image 3x8x8"]);

    let levels_too_many = ImportOptions {
        image: Some(ImageShape {
            channels: 3,
            height: 6,
            width: 6,
        }),
        n_bits: None,
    };
    let (path, err) = import_error(Peer::Rosinality, &ros, &levels_too_many, "size");
    assert_error_mentions(err, &path, &["not divisible by 2^L", "--image"]);
}

#[test]
fn truncated_and_foreign_files_are_errors_that_name_the_file() {
    let dir = scratch_dir("import-truncated");
    let bytes = std::fs::read(fixtures().join("rosinality_affine.pt")).expect("fixture");
    let opts = rosinality_options();
    for (name, content) in [
        ("truncated.pt", bytes[..bytes.len() / 2].to_vec()),
        ("tail-cut.pt", bytes[..bytes.len() - 100].to_vec()),
        ("not-torch.pt", b"{\"hello\": 1}".to_vec()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        let err = import_checkpoint(Peer::Rosinality, &path, &opts, &common::f32_device())
            .err()
            .unwrap_or_else(|| panic!("{name} must not import"));
        assert_error_mentions(err, &path, &["PyTorch checkpoint"]);
    }
}

#[test]
fn a_conditional_model_without_a_head_exports_the_heads_zero_initialisation_to_y0ast() {
    // The conditional fixture without its head: y0ast's conditional model always has one, so the
    // export writes project_class as y0ast initialises it and every other tensor as before.
    let model = import(Peer::Y0ast, "y0ast_additive_cond", None, None);
    let mut config = model.config().clone();
    config.class_head = false;
    let state = without(&glow_state(&model).expect("weights"), |k| {
        k.starts_with("top.classifier.")
    });
    let headless = glowflow::io::import::glow_state::glow_from_state(
        &config,
        &state,
        std::path::Path::new("headless"),
        &common::f32_device(),
    )
    .expect("the model without its head");
    let path = scratch_dir("import-headless").join("headless.pt");
    export_checkpoint(Peer::Y0ast, &headless, &path).expect("export");
    let back = read_state_dict(&path).expect("our file reads");
    let original =
        read_state_dict(&fixtures().join("y0ast_additive_cond.pt")).expect("the fixture");
    let head = |k: &str| k.starts_with("project_class.");
    assert_eq!(without(&back, head), without(&original, head));
    for key in [
        "project_class.linear.weight",
        "project_class.linear.bias",
        "project_class.logs",
    ] {
        assert_eq!(back[key].shape, original[key].shape, "{key}");
        assert!(
            back[key].to_f32().iter().all(|&v| v == 0.0),
            "{key} is zero"
        );
    }
}

#[test]
fn models_a_peer_cannot_represent_are_export_errors_naming_the_option() {
    let device = common::f32_device();
    let path = scratch_dir("import-unsupported").join("x.pt");
    let openai = common::tiny_config(
        1,
        glowflow::CouplingKind::Affine,
        glowflow::PermutationKind::InvConv,
        true,
    )
    .init(&device)
    .expect("model");
    let err = export_checkpoint(Peer::Rosinality, &openai, &path).expect_err("edge padding");
    assert!(err.to_string().contains("padding = Edge"), "{err}");
    let err = export_checkpoint(Peer::Y0ast, &openai, &path).expect_err("edge padding");
    assert!(err.to_string().contains("padding"), "{err}");
    let ros = import(
        Peer::Rosinality,
        "rosinality_affine",
        Some([3, 8, 8]),
        Some(5),
    );
    let err = export_checkpoint(Peer::Y0ast, &ros, &path).expect_err("rosinality's options");
    assert!(err.to_string().contains("zero_conv_padding"), "{err}");
    // Neither peer's affine coupling has a scale floor: a floored model of each peer's own
    // options is refused, naming the floor.
    for (peer, peers_own) in [
        (Peer::Rosinality, ros),
        (Peer::Y0ast, import(Peer::Y0ast, "y0ast_affine", None, None)),
    ] {
        let floored = glowflow::GlowConfig {
            scale_floor: 0.2,
            ..peers_own.config().clone()
        }
        .init(&device)
        .expect("model");
        let err = export_checkpoint(peer, &floored, &path).expect_err("a scale floor");
        assert!(err.to_string().contains("scale_floor"), "{peer:?}: {err}");
    }
    assert!(
        !path.exists(),
        "no file is written for a model that cannot be exported"
    );
}

#[test]
fn the_command_line_imports_a_model_every_command_accepts_and_exports_it() {
    let dir = scratch_dir("import-cli");
    let model = dir.join("model");
    let ckpt = fixtures().join("rosinality_affine.pt");
    let (out, _) = succeeds(&[
        "import",
        "--from",
        "rosinality",
        ckpt.to_str().unwrap(),
        "--image",
        "3x8x8",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(out.contains("5 bits"), "{out}");
    succeeds(&[
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--n",
        "4",
        "--out",
        dir.join("s.png").to_str().unwrap(),
    ]);
    let exported = dir.join("back.pt");
    succeeds(&[
        "export",
        "--to",
        "rosinality",
        model.to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(
        read_state_dict(&exported).expect("reads"),
        read_state_dict(&ckpt).expect("fixture")
    );
    let err = fails(&[
        "import",
        "--from",
        "rosinality",
        ckpt.to_str().unwrap(),
        "--out",
        dir.join("m2").to_str().unwrap(),
    ]);
    assert!(err.contains("--image"), "{err}");
    let err = fails(&[
        "export",
        "--to",
        "y0ast",
        model.to_str().unwrap(),
        "--out",
        dir.join("y.pt").to_str().unwrap(),
    ]);
    assert!(err.contains("zero_conv_padding"), "{err}");
}

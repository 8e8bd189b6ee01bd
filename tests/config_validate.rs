//! `TrainConfig::validate`, table-driven: every preset is valid, each invalid value of a field
//! is a config error that names the field (and the value where there is one to show), and the
//! boundary values that are allowed stay allowed.

use glowflow::data::source::DataSource;
use glowflow::train::config::TrainConfig;
use glowflow::train::presets::{preset, PRESETS};
use glowflow::train::schedule::LrDecay;
use glowflow::GlowError;

/// A change to a valid config.
type Edit = fn(&mut TrainConfig);

/// The fashion-mnist preset's training config with `edit` applied.
fn edited(edit: Edit) -> TrainConfig {
    let (_, mut train) = preset("fashion-mnist").expect("preset");
    edit(&mut train);
    train
}

/// The lsun64 preset's image folders, with random crops from `size`.
fn lsun_data(size: Option<usize>) -> DataSource {
    match preset("lsun64").expect("preset").1.data {
        DataSource::Folder {
            train,
            test,
            skip_bad_images,
            ..
        } => DataSource::Folder {
            train,
            test,
            skip_bad_images,
            random_crop_from: size,
        },
        other => panic!("lsun64 reads image folders, not {other:?}"),
    }
}

#[test]
fn every_preset_is_valid() {
    for name in PRESETS {
        let (_, train) = preset(name).expect("preset");
        train
            .validate()
            .unwrap_or_else(|e| panic!("preset {name}: {e}"));
    }
}

/// The paper's presets train as openai/glow's README commands do on the paper's GPUs, with what
/// its train.py and optim.py derive from them worked out here by hand, as one global batch:
/// `local_batch_train = 64·32²/size²` per GPU; the warm-up over `n_train·epochs_warmup =
/// 500 000` images counted as `64·gpus` per step; Adamax's β₂ and the Polyak decay `1 −
/// 1/train_its`, `train_its = ⌈50 000/(64·gpus)⌉`; `local_batch_test` from its table; the init on
/// one GPU's `256·32²/size²` images; no clipping (openai/glow has none).
#[test]
fn the_paper_presets_are_openai_glows_recipe_on_its_gpus() {
    use glowflow::train::optimizer::OptimizerKind;
    use glowflow::CouplingKind;
    // (preset, batch, warm-up steps, train_its, init images, test batch)
    let cases = [
        ("cifar10", 8 * 64, 977, 98, 256, 8 * 50),
        ("cifar10-ycond", 8 * 64, 977, 98, 256, 8 * 50),
        ("imagenet32", 8 * 64, 977, 98, 256, 8 * 50),
        ("imagenet32-ycond", 8 * 64, 977, 98, 256, 8 * 50),
        ("imagenet64", 8 * 16, 977, 98, 64, 8 * 10),
        ("lsun64", 8 * 16, 977, 98, 64, 8 * 10),
        ("celebahq256", 40, 196, 20, 4, 40),
        // 64·32²/128² = 4 per GPU, its test batch 2.
        ("lsun128", 40 * 4, 196, 20, 16, 40 * 2),
    ];
    for (name, batch, warmup, its, init, test_batch) in cases {
        let (_, train) = preset(name).expect("preset");
        let decay = 1.0 - 1.0 / f64::from(its);
        assert_eq!(
            (
                train.batch_size,
                train.warmup_steps,
                train.init_images,
                train.eval_batch_size
            ),
            (batch, warmup, init, test_batch),
            "{name}"
        );
        assert_eq!(train.optimizer.kind, OptimizerKind::Adamax, "{name}");
        assert_eq!(
            (
                train.optimizer.beta1,
                train.optimizer.beta2,
                train.ema_decay
            ),
            (0.9, decay, decay),
            "{name}"
        );
        assert_eq!(
            (train.lr, train.lr_decay, train.grad_clip_norm),
            (1e-3, LrDecay::Constant, 0.0)
        );
    }
    let (model, train) = preset("cifar10-ycond").expect("preset");
    assert_eq!(
        (
            model.coupling,
            model.n_bits,
            model.n_classes,
            model.class_head,
            train.weight_y
        ),
        (CouplingKind::Additive, 5, 10, true, 0.01)
    );
    // (preset, image, L, K, classes, classifier head, weight_y): all width 512, additive, 5
    // bits, learned top prior.
    let sample_models = [
        ("celebahq256", [3, 256, 256], 6, 32, 0, false, 0.0),
        ("lsun128", [3, 128, 128], 5, 64, 0, false, 0.0),
        ("imagenet32-ycond", [3, 32, 32], 3, 48, 1000, true, 0.01),
    ];
    for (name, image, levels, steps, classes, head, weight_y) in sample_models {
        let (model, train) = preset(name).expect("preset");
        assert_eq!(
            (model.image.chw(), model.levels, model.steps, model.width),
            (image, levels, steps, 512),
            "{name}"
        );
        assert_eq!(
            (model.coupling, model.n_bits, model.learn_top),
            (CouplingKind::Additive, 5, true),
            "{name}"
        );
        assert_eq!(
            (model.n_classes, model.class_head, train.weight_y),
            (classes, head, weight_y),
            "{name}"
        );
    }
    let (_, train) = preset("imagenet32-ycond").expect("preset");
    assert_eq!(
        serde_json::to_value(&train.data).expect("json"),
        serde_json::json!({"format": "downsampled-imagenet", "dir": "data/imagenet32-npz"})
    );
}

#[test]
fn each_invalid_field_is_an_error_that_names_it() {
    // (what is wrong, the edit, what the message must contain)
    let cases: [(&str, Edit, &[&str]); 28] = [
        (
            "batch_size 0",
            |t| t.batch_size = 0,
            &["batch_size", "at least 1"],
        ),
        (
            "eval_batch_size 0",
            |t| t.eval_batch_size = 0,
            &["eval_batch_size"],
        ),
        ("lr 0", |t| t.lr = 0.0, &["lr = 0", "positive"]),
        ("lr < 0", |t| t.lr = -1e-3, &["lr = -0.001"]),
        ("lr NaN", |t| t.lr = f64::NAN, &["lr = NaN"]),
        ("lr infinite", |t| t.lr = f64::INFINITY, &["lr = inf"]),
        (
            "ema_decay 1",
            |t| t.ema_decay = 1.0,
            &["ema_decay = 1", "[0, 1)"],
        ),
        (
            "ema_decay < 0",
            |t| t.ema_decay = -0.5,
            &["ema_decay = -0.5"],
        ),
        (
            "ema_decay NaN",
            |t| t.ema_decay = f64::NAN,
            &["ema_decay = NaN"],
        ),
        ("beta1 1", |t| t.optimizer.beta1 = 1.0, &["beta", "[0, 1)"]),
        ("beta2 < 0", |t| t.optimizer.beta2 = -0.1, &["beta"]),
        ("epsilon 0", |t| t.optimizer.epsilon = 0.0, &["epsilon"]),
        (
            "epsilon NaN",
            |t| t.optimizer.epsilon = f64::NAN,
            &["epsilon"],
        ),
        (
            "grad_clip_norm < 0",
            |t| t.grad_clip_norm = -1.0,
            &["grad_clip_norm = -1"],
        ),
        (
            "grad_clip_norm NaN",
            |t| t.grad_clip_norm = f64::NAN,
            &["grad_clip_norm = NaN"],
        ),
        (
            "grad_clip_norm inf",
            |t| t.grad_clip_norm = f64::INFINITY,
            &["grad_clip_norm = inf"],
        ),
        ("init_images 0", |t| t.init_images = 0, &["init_images"]),
        (
            "checkpoint_every 0",
            |t| t.checkpoint_every = 0,
            &["checkpoint_every"],
        ),
        ("log_every 0", |t| t.log_every = 0, &["log_every"]),
        (
            "keep_checkpoints 0",
            |t| t.keep_checkpoints = 0,
            &["keep_checkpoints"],
        ),
        (
            "time budget < 0",
            |t| t.time_budget_minutes = -1.0,
            &["time_budget_minutes = -1"],
        ),
        (
            "time budget NaN",
            |t| t.time_budget_minutes = f64::NAN,
            &["time_budget_minutes = NaN"],
        ),
        (
            "time budget huge",
            |t| t.time_budget_minutes = 1e300,
            &["time_budget_minutes", "1e7"],
        ),
        (
            "weight_y < 0",
            |t| t.weight_y = -0.01,
            &["weight_y = -0.01", ">= 0"],
        ),
        (
            "weight_y NaN",
            |t| t.weight_y = f64::NAN,
            &["weight_y = NaN"],
        ),
        (
            "steps past the cosine decay's end",
            |t| (t.lr_decay, t.decay_steps, t.steps) = (LrDecay::Cosine, 100, 101),
            &["steps = 101", "decay_steps = 100", "at most 100"],
        ),
        (
            "random crops from size 0",
            |t| t.data = lsun_data(Some(0)),
            &["random_crop_from = 0"],
        ),
        (
            "random crops and padding",
            |t| (t.data, t.pad_to) = (lsun_data(Some(96)), 128),
            &[
                "pad_to = 128",
                "random_crop_from = 96",
                "exclude each other",
            ],
        ),
    ];
    for (what, edit, facts) in cases {
        match edited(edit).validate() {
            Err(err @ GlowError::Config(_)) => {
                let msg = err.to_string();
                for fact in facts {
                    assert!(msg.contains(fact), "{what}: no {fact:?} in {msg:?}");
                }
            }
            Err(other) => panic!("{what}: expected a config error, got {other}"),
            Ok(()) => panic!("{what}: accepted"),
        }
    }
}

#[test]
fn boundary_values_that_make_sense_are_accepted() {
    let cases: [(&str, Edit); 11] = [
        ("batches of 1", |t| {
            (t.batch_size, t.eval_batch_size) = (1, 1)
        }),
        ("no EMA", |t| t.ema_decay = 0.0),
        ("EMA just below 1", |t| t.ema_decay = 0.999_999),
        ("no clipping", |t| t.grad_clip_norm = 0.0),
        ("no classifier loss", |t| t.weight_y = 0.0),
        ("beta1 0 (no momentum)", |t| t.optimizer.beta1 = 0.0),
        ("a tiny learning rate", |t| t.lr = 1e-12),
        ("the longest time budget", |t| t.time_budget_minutes = 1e7),
        ("a cosine ending at the last step", |t| {
            (t.lr_decay, t.decay_steps, t.steps) = (LrDecay::Cosine, 100, 100)
        }),
        ("a constant rate ignores decay_steps", |t| {
            (t.lr_decay, t.decay_steps, t.steps) = (LrDecay::Constant, 100, 500)
        }),
        ("one of everything", |t| {
            (
                t.init_images,
                t.checkpoint_every,
                t.log_every,
                t.keep_checkpoints,
            ) = (1, 1, 1, 1)
        }),
    ];
    for (what, edit) in cases {
        edited(edit)
            .validate()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

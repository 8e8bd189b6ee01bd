//! Training end to end on a small synthetic IDX dataset: exact resume, the non-finite guard,
//! checkpoints and run files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use glowflow::data::source::DataSource;
use glowflow::model::params::flat_params;
use glowflow::train::checkpoint::list_checkpoints;
use glowflow::train::config::TrainConfig;
use glowflow::train::metrics::MetricsFile;
use glowflow::train::trainer::{train, TrainEvent};
use glowflow::{load_model, GlowConfig, ImageShape};

fn configs(data: &Path) -> (GlowConfig, TrainConfig) {
    (grey8_config(8), tiny_train_config(data))
}

/// Every parameter value of a saved model, in one list.
fn flat_values(model: &glowflow::Glow) -> Vec<f64> {
    flat_params(model).into_iter().flat_map(values).collect()
}

/// The EMA weights a run saved as its model.
fn ema_weights(run: &Path) -> Vec<f64> {
    flat_values(&load_model(run, &f32_device()).expect("run holds a model"))
}

/// The training weights of a run's last checkpoint.
fn last_checkpoint_weights(run: &Path, config: &GlowConfig) -> Vec<f64> {
    let last = list_checkpoints(run)
        .expect("list")
        .pop()
        .expect("a checkpoint");
    let path = last.join("model.safetensors");
    flat_values(
        &glowflow::io::model_dir::load_weights(config, &path, &f32_device()).expect("weights"),
    )
}

/// Trains a new run in `run`, stops it after step `stop_after` as Ctrl-C would, then resumes it
/// to the end, checking that each part ends where it should.
fn stop_then_resume(run: &Path, model: &GlowConfig, train_config: &TrainConfig, stop_after: u64) {
    let stop = AtomicBool::new(false);
    let summary = train(run, model, train_config, false, &stop, &mut |event| {
        if let TrainEvent::Metrics(row) = event {
            if row.step == stop_after {
                stop.store(true, Ordering::SeqCst);
            }
        }
    })
    .expect("train until stopped");
    assert_eq!((summary.step, summary.interrupted), (stop_after, true));
    let never = AtomicBool::new(false);
    let summary = train(run, model, train_config, true, &never, &mut |_| {}).expect("resume");
    assert_eq!(
        (summary.step, summary.interrupted),
        (train_config.steps, false)
    );
}

/// Asserts two weight lists are bit-identical, reporting only the largest difference.
fn assert_identical(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: parameter count");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
    assert!(
        differing == 0,
        "{what}: {differing} of {} values differ, by up to {worst:.3e}",
        a.len()
    );
}

/// Trains the 6 steps of `train_config` straight through in `root/straight`, and in
/// `root/resumed` stopped after step 3 (mid-way between checkpoints, as Ctrl-C would) and
/// resumed; asserts that both end with the same training and EMA weights, bit for bit, and
/// returns the two run directories.
fn straight_and_resumed(
    root: &Path,
    model: &GlowConfig,
    train_config: &TrainConfig,
) -> (PathBuf, PathBuf) {
    let straight = root.join("straight");
    let never = AtomicBool::new(false);
    let summary = train(&straight, model, train_config, false, &never, &mut |_| {}).expect("train");
    assert_eq!((summary.step, summary.interrupted), (6, false));
    assert!(summary.test.is_some_and(|t| t.bpd.is_finite()));
    let resumed = root.join("resumed");
    stop_then_resume(&resumed, model, train_config, 3);
    assert_identical(
        &last_checkpoint_weights(&straight, model),
        &last_checkpoint_weights(&resumed, model),
        "training weights",
    );
    assert_identical(
        &ema_weights(&straight),
        &ema_weights(&resumed),
        "EMA weights",
    );
    (straight, resumed)
}

#[test]
fn interrupted_and_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one() {
    let root = scratch_dir("resume");
    write_idx_dataset(&root, 64, 16, 8);
    let (model, train_config) = configs(&root);

    let (straight, resumed) = straight_and_resumed(&root, &model, &train_config);
    let rows = |run: &Path| MetricsFile::read(&run.join("metrics.csv")).expect("metrics");
    let strip = |rows: Vec<glowflow::train::metrics::MetricsRow>| -> Vec<_> {
        rows.into_iter()
            .map(|r| (r.step, r.train_bpd, r.test_bpd, r.lr))
            .collect()
    };
    assert_eq!(strip(rows(&straight)), strip(rows(&resumed)), "metrics.csv");
    assert!(root.join("straight/curves.png").is_file());
}

/// Training on random 8x8 windows of 12x12 images (a folder source with `random_crop_from`),
/// shifted and mirrored at random: the augmentations are functions of (seed, step) like the
/// rest of a batch, so a stopped and resumed run ends with the uninterrupted run's weights, bit
/// for bit.
#[test]
fn a_run_on_random_crops_shifts_and_flips_resumes_to_the_uninterrupted_weights() {
    let root = scratch_dir("random-crops");
    for (split, n) in [("train", 24u32), ("test", 8)] {
        let dir = root.join(split);
        std::fs::create_dir_all(&dir).expect("dir");
        for i in 0..n {
            image::GrayImage::from_fn(12, 12, |x, y| {
                image::Luma([((x * 37 + y * 91 + i * 53) % 256) as u8])
            })
            .save(dir.join(format!("{i:02}.png")))
            .expect("write png");
        }
    }
    let (model, mut train_config) = configs(&root);
    train_config.data = DataSource::Folder {
        train: root.join("train"),
        test: root.join("test"),
        skip_bad_images: false,
        random_crop_from: Some(12),
    };
    (train_config.random_flip, train_config.random_translate) = (true, 2);
    straight_and_resumed(&root, &model, &train_config);
}

#[test]
fn a_run_that_keeps_producing_non_finite_steps_rolls_back_then_stops_with_an_error() {
    let root = scratch_dir("diverge");
    write_idx_dataset(&root, 64, 16, 8);
    let (model, mut train_config) = configs(&root);
    // An absurd learning rate: the first applied update sends the weights far enough that every
    // later loss is non-finite.
    train_config.lr = 1e30;
    train_config.warmup_steps = 0;
    train_config.max_bad_steps = 2;
    train_config.max_rollbacks = 2;
    train_config.steps = 40;
    let run = root.join("run");
    let mut notes = Vec::new();
    let never = AtomicBool::new(false);
    let err = train(&run, &model, &train_config, false, &never, &mut |event| {
        if let TrainEvent::Note(note) = event {
            notes.push(note);
        }
    })
    .expect_err("training cannot recover");
    assert!(err.to_string().contains("training diverged"), "{err}");
    let skipped = notes.iter().filter(|n| n.contains("step skipped")).count();
    let rollbacks = notes.iter().filter(|n| n.contains("rolled back")).count();
    assert_eq!(rollbacks, 2, "{notes:#?}");
    assert_eq!(
        skipped,
        3 * 3,
        "3 bad steps before each of 2 roll-backs and the final error"
    );
    // Nothing non-finite ever reached a checkpoint.
    for checkpoint in list_checkpoints(&run).expect("list") {
        let config = model.clone();
        let loaded = glowflow::io::model_dir::load_weights(
            &config,
            &checkpoint.join("model.safetensors"),
            &f32_device(),
        )
        .expect("load");
        assert!(flat_params(&loaded)
            .into_iter()
            .flat_map(values)
            .all(f64::is_finite));
    }
}

#[test]
fn a_new_run_refuses_a_directory_that_already_holds_one() {
    let root = scratch_dir("exists");
    write_idx_dataset(&root, 32, 8, 8);
    let (model, mut train_config) = configs(&root);
    train_config.steps = 1;
    let run = root.join("run");
    let never = AtomicBool::new(false);
    train(&run, &model, &train_config, false, &never, &mut |_| {}).expect("first run");
    let err = train(&run, &model, &train_config, false, &never, &mut |_| {}).expect_err("second");
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn dataset_and_model_shape_mismatch_is_a_clear_error() {
    let root = scratch_dir("mismatch");
    write_idx_dataset(&root, 32, 8, 8);
    let (mut model, train_config) = configs(&root);
    model.image.height = 16;
    model.image.width = 16;
    let never = AtomicBool::new(false);
    let err = train(
        &root.join("run"),
        &model,
        &train_config,
        false,
        &never,
        &mut |_| {},
    )
    .expect_err("8x8 data");
    assert!(err.to_string().contains("1x8x8"), "{err}");
}

#[test]
fn folder_data_is_resized_to_the_model_image_and_bad_files_are_skipped_when_asked() {
    use glowflow::data::dataset::Split;
    let root = scratch_dir("folders");
    for split in ["train", "test"] {
        let dir = root.join(split);
        std::fs::create_dir_all(&dir).expect("dir");
        for i in 0..3u8 {
            let img =
                image::RgbImage::from_fn(16, 12, |x, _| image::Rgb([x as u8 * 10, i * 50, 90]));
            img.save(dir.join(format!("{i}.png"))).expect("write png");
        }
        std::fs::write(dir.join("broken.jpg"), b"not a jpeg").expect("write");
    }
    let image = ImageShape {
        channels: 3,
        height: 8,
        width: 8,
    };
    let strict = DataSource::Folder {
        train: root.join("train"),
        test: root.join("test"),
        skip_bad_images: false,
        random_crop_from: None,
    };
    let err = strict
        .load(Split::Train, &image, &mut |_| {})
        .expect_err("broken.jpg");
    assert!(err.to_string().contains("broken.jpg"), "{err}");
    let lenient = DataSource::Folder {
        train: root.join("train"),
        test: root.join("test"),
        skip_bad_images: true,
        random_crop_from: None,
    };
    let mut warnings = Vec::new();
    let data = lenient
        .load(Split::Test, &image, &mut |w| warnings.push(w))
        .expect("skips");
    assert_eq!((data.shape, data.len()), ([3, 8, 8], 3));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("broken.jpg"), "{warnings:?}");
}

#[test]
fn recomputing_activations_trains_to_the_same_weights_as_backprop() {
    let root = scratch_dir("recompute-run");
    write_idx_dataset(&root, 64, 16, 8);
    let (model, mut train_config) = configs(&root);
    train_config.steps = 4;
    let never = AtomicBool::new(false);
    let stored = root.join("stored");
    train(&stored, &model, &train_config, false, &never, &mut |_| {}).expect("backprop run");
    train_config.recompute_activations = true;
    let recomputed = root.join("recomputed");
    train(
        &recomputed,
        &model,
        &train_config,
        false,
        &never,
        &mut |_| {},
    )
    .expect("recompute run");
    for (a, b, what) in [
        (
            last_checkpoint_weights(&stored, &model),
            last_checkpoint_weights(&recomputed, &model),
            "training weights",
        ),
        (
            ema_weights(&stored),
            ema_weights(&recomputed),
            "EMA weights",
        ),
    ] {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-5,
            "{what} differ by up to {worst:.3e} (relative)"
        );
    }
    let json = std::fs::read_to_string(recomputed.join("train.json")).expect("train.json");
    assert!(json.contains("\"recompute_activations\": true"), "{json}");
    // The shard count of the gradient pass is fixed when the run starts (one per worker thread).
    let shards = format!("\"batch_shards\": {}", rayon::current_num_threads().min(8));
    assert!(json.contains(&shards), "{json}");

    // Stopped after step 2 and resumed, the recomputing run ends where it did uninterrupted.
    let resumed = root.join("recomputed-resumed");
    stop_then_resume(&resumed, &model, &train_config, 2);
    assert_identical(
        &last_checkpoint_weights(&recomputed, &model),
        &last_checkpoint_weights(&resumed, &model),
        "recomputing run, resumed",
    );
}

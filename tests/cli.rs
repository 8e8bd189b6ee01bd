//! The `glowflow` binary end to end: build or train a model, sample a PNG grid and evaluate it,
//! and fail clearly on bad arguments.

mod common;

use std::path::{Path, PathBuf};

use common::{glowflow, scratch_dir, TINY_RUN};

/// Width, height and colour type from a PNG's IHDR chunk.
fn png_header(bytes: &[u8]) -> (u32, u32, u8) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20), bytes[25])
}

/// The number that follows the first `label` in `text` (after optional spaces), e.g. `3.25` in
/// `"test bits/dim: 3.25 (16 images)"` for the label `"test bits/dim:"`.
fn number_after(text: &str, label: &str) -> f64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    let rest = text[at + label.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e')))
        .unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("no number after {label:?} in {text}"))
}

/// Sets `eval_batch_size` in the run's train.json (what `glowflow eval` batches by).
fn set_eval_batch_size(run: &Path, size: usize) {
    let path = run.join("train.json");
    let mut train: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("train.json")).expect("json");
    train["eval_batch_size"] = size.into();
    std::fs::write(&path, train.to_string()).expect("write train.json");
}

#[test]
fn new_then_sample_writes_a_png_grid() {
    let dir = scratch_dir("sample");
    let model = dir.join("model");
    let out = glowflow(&[
        "new",
        "--image",
        "1x8x8",
        "--levels",
        "2",
        "--depth",
        "2",
        "--width",
        "8",
        "--out",
        model.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(model.join("config.json").exists() && model.join("model.safetensors").exists());
    let grid = dir.join("grid.png");
    let out = glowflow(&[
        "sample",
        "--model",
        model.to_str().expect("utf-8"),
        "--n",
        "6",
        "--columns",
        "3",
        "--temperature",
        "0.7",
        "--out",
        grid.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 3 columns x 2 rows of 8x8 images with 1-pixel gaps, greyscale.
    let bytes = std::fs::read(&grid).expect("grid written");
    assert_eq!(png_header(&bytes), (3 * 9 + 1, 2 * 9 + 1, 0));
}

#[test]
fn bad_arguments_fail_with_a_message_and_no_output() {
    let dir = scratch_dir("bad");
    let model = dir.join("model");
    let out = glowflow(&[
        "new",
        "--image",
        "1x28x28",
        "--levels",
        "3",
        "--out",
        model.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not divisible by 2^L"), "{stderr}");
    assert!(!model.exists(), "nothing is written for an invalid config");

    let out = glowflow(&[
        "sample",
        "--model",
        model.to_str().expect("utf-8"),
        "--out",
        "x.png",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.json"),
        "names the missing file: {stderr}"
    );

    let out = glowflow(&[
        "new",
        "--coupling",
        "cubic",
        "--out",
        model.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cubic"));
}

#[test]
fn train_then_sample_and_eval_from_the_run_directory() {
    let dir = scratch_dir("train");
    common::write_idx_dataset(&dir, 48, 16, 8);
    let run = dir.join("run");
    let run_arg = run.to_str().expect("utf-8");
    let out = glowflow(
        &[
            "train",
            "--data",
            dir.to_str().expect("utf-8"),
            "--out",
            run_arg,
            "--steps",
            "3",
            "--checkpoint-every",
            "2",
        ]
        .into_iter()
        .chain(TINY_RUN)
        .collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3 steps") && stdout.contains("test "),
        "{stdout}"
    );
    assert!(
        stderr.contains("step 1: train"),
        "plain log lines when not on a terminal: {stderr}"
    );
    for file in [
        "config.json",
        "model.safetensors",
        "train.json",
        "metrics.csv",
        "curves.png",
    ] {
        assert!(run.join(file).is_file(), "{file} in the run directory");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    assert_eq!(
        metrics.lines().next(),
        Some(
            "step,train_bpd,test_bpd,lr,grad_norm,images_per_s,train_class_bits,\
             train_class_error,test_marginal_bpd,test_bayes_error,test_class_bits,test_class_error"
        )
    );
    assert!(run.join("samples/step-00000003-t0.7.png").is_file());

    let grid = dir.join("grid.png");
    let out = glowflow(&[
        "sample",
        "--model",
        run_arg,
        "--n",
        "4",
        "--columns",
        "2",
        "--out",
        grid.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        png_header(&std::fs::read(&grid).expect("grid")),
        (2 * 9 + 1, 2 * 9 + 1, 0)
    );

    // `eval` prints the library's figure: the mean over the test images, batch by batch, of
    // -(log p(x) - D·log 256) / (D·log 2) with the seeded noise of each batch. Checked with the
    // run's batch of 500 (one batch) and again with batches of 6 (6 + 6 + 4 images).
    let train_test_bpd = number_after(&stdout, ", test ");
    for eval_batch in [None, Some(6)] {
        if let Some(size) = eval_batch {
            set_eval_batch_size(&run, size);
        }
        let out = glowflow(&["eval", "--model", run_arg]);
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bpd = number_after(&printed, "test bits/dim:");
        assert_eq!(number_after(&printed, "("), 16.0, "images: {printed}");
        assert_eq!(number_after(&printed, "noise seed"), 0.0, "{printed}");
        let expected = common::test_bpd_by_hand(&run, 0);
        println!("eval batch {eval_batch:?}: CLI {bpd}, library {expected}");
        assert!(
            (bpd - expected).abs() < 2e-5,
            "`glowflow eval` printed {bpd}, the library computes {expected:.6}"
        );
        if eval_batch.is_none() {
            assert!(
                (train_test_bpd - expected).abs() < 1e-4,
                "train's final test {train_test_bpd} vs {expected:.6}"
            );
        }
    }
    // The first 11 images in batches of 5 (5 + 5 + 1), from the command line.
    let (printed, _) = common::succeeds(&[
        "eval",
        "--model",
        run_arg,
        "--images",
        "11",
        "--batch-size",
        "5",
    ]);
    assert!(printed.contains("(11 images in batches of 5,"), "{printed}");
    let (log_probs, _, to_bits) = common::test_log_probs_by_hand(&run, 0, Some((11, 5)));
    let expected = log_probs.iter().map(|&lp| to_bits(lp)).sum::<f64>() / 11.0;
    let bpd = number_after(&printed, "test bits/dim:");
    assert!(
        (bpd - expected).abs() < 2e-5,
        "`glowflow eval --images 11 --batch-size 5` printed {bpd}, by hand {expected:.6}"
    );

    // The latent-space tools read the run and its test images.
    let png = |name: &str| dir.join(name).to_str().expect("utf-8").to_string();
    latent_tools_write_their_grids(run_arg, &dir, &["--temperatures", "0,0.7,1"], 3);
    let out = glowflow(&[
        "interpolate",
        "0",
        "99",
        "--model",
        run_arg,
        "--out",
        &png("x.png"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("index 99 is out of range"));

    let out = glowflow(&[
        "train",
        "--data",
        dir.join("missing").to_str().expect("utf-8"),
        "--out",
        dir.join("r2").to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing") && stderr.contains("dataset-fashion-mnist"),
        "{stderr}"
    );
    assert!(
        !dir.join("r2").exists(),
        "a run without data writes nothing"
    );
}

/// `log Σ_k exp(row_k)`, and whether the largest of the other entries beats `row[label]`
/// (`None` where the two are within `tie`, which f32 rounding may decide either way).
fn scored_by_hand(row: &[f64], label: usize, tie: f64) -> (f64, Option<bool>) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_sum_exp = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    let rival = (0..row.len())
        .filter(|&k| k != label)
        .map(|k| row[k])
        .fold(f64::NEG_INFINITY, f64::max);
    let wrong = ((rival - row[label]).abs() >= tie).then_some(rival > row[label]);
    (log_sum_exp, wrong)
}

/// A class-conditional model's test figures by hand ([`class_figures_by_hand`]).
struct ClassFiguresByHand {
    /// Mean bits/dim given each image's label.
    conditional: f64,
    /// Mean bits/dim of `(1/K) Σ_k p(x | k)`.
    marginal: f64,
    /// Images Bayes' rule puts in another class.
    errors: usize,
    /// Images whose label and best rival are within 1e-3 nats (f32 rounding may decide them
    /// either way).
    ambiguous: usize,
}

impl ClassFiguresByHand {
    /// Asserts that figures shown by glowflow (the bits/dim within `tolerance`, `wrong` images)
    /// are these.
    fn assert_close(&self, conditional: f64, marginal: f64, wrong: f64, tolerance: f64) {
        for (what, shown, expected) in [
            ("bits/dim", conditional, self.conditional),
            ("marginal bits/dim", marginal, self.marginal),
        ] {
            println!("{what}: shown {shown}, by hand {expected}");
            assert!(
                (shown - expected).abs() < tolerance,
                "{what}: glowflow shows {shown}, by hand {expected:.6}"
            );
        }
        assert!(
            (self.errors as f64 - 1e-9..=(self.errors + self.ambiguous) as f64 + 1e-9)
                .contains(&wrong),
            "{wrong} errors shown, {} by hand and {} near ties",
            self.errors,
            self.ambiguous
        );
    }
}

/// The test figures of the class-conditional model of `run` by hand: `log p(x | k)` of every test
/// image under every class `k` of the model's from its `log_prob` with the one-hot label `k`, the
/// uniform class prior, and eval's noise (`sizes` as [`common::test_log_probs_by_hand`] takes
/// them).
fn class_figures_by_hand(run: &Path, sizes: Option<(usize, usize)>) -> ClassFiguresByHand {
    let (own, labels, to_bits) = common::test_log_probs_by_hand(run, 0, sizes);
    let (by_class, _, _) = common::test_log_probs_by_class(run, 0, sizes);
    let n = own.len() as f64;
    let mut marginal = 0.0;
    let (mut errors, mut ambiguous) = (0, 0);
    for (i, (&label, row)) in labels.iter().zip(&by_class).enumerate() {
        assert_eq!(row[label], own[i], "the own label's column, image {i}");
        // Bayes' rule errs where another class has the higher likelihood.
        let (log_sum_exp, wrong) = scored_by_hand(row, label, 1e-3);
        marginal += to_bits(log_sum_exp - (row.len() as f64).ln()) / n;
        match wrong {
            None => ambiguous += 1,
            Some(wrong) => errors += usize::from(wrong),
        }
    }
    assert!(2 * ambiguous < labels.len(), "{ambiguous} near ties");
    ClassFiguresByHand {
        conditional: own.iter().map(|&lp| to_bits(lp)).sum::<f64>() / n,
        marginal,
        errors,
        ambiguous,
    }
}

/// The class-conditional ImageNet preset trains on the downsampled ImageNet's archives as numpy
/// wrote them (tests/fixtures/make_downsampled_imagenet.py): the run records their source and a
/// model of 1000 classes with a classifier head, `eval` prints the bits/dim given the labels, the
/// marginal over all 1000 classes and Bayes' error as computed here by hand, and `sample --class
/// 999` draws from the last class (the files' label 1000).
#[test]
fn imagenet32_ycond_trains_on_the_downsampled_imagenets_archives_over_1000_classes() {
    let dir = scratch_dir("cli-imagenet-ycond");
    let run = dir.join("run");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downsampled-imagenet");
    let mut command = common::glowflow_command();
    command
        .args(["train", "--preset", "imagenet32-ycond", "--data"])
        .arg(&fixture)
        .arg("--out")
        .arg(&run)
        .args([
            "--image", "3x8x8", "--levels", "2", "--depth", "1", "--width", "8",
        ])
        .args(["--steps", "20", "--batch-size", "5", "--init-images", "5"])
        .args(["--warmup-steps", "1", "--lr", "0.01", "--eval-every", "0"])
        .args(["--sample-every", "0", "--log-every", "5"]);
    common::succeeded(&mut command);
    let (model, train) = glowflow::train::config::read_run_configs(&run).expect("run configs");
    assert_eq!((model.n_classes, model.class_head), (1000, true));
    assert_eq!(
        train.data,
        glowflow::data::source::DataSource::DownsampledImagenet {
            dir: fixture.clone()
        }
    );
    let run_arg = run.to_str().expect("utf-8");
    let (printed, _) = common::succeeds(&["eval", "--model", run_arg]);
    assert!(printed.contains("mean over the 1000 classes"), "{printed}");
    class_figures_by_hand(&run, None).assert_close(
        number_after(&printed, "test bits/dim:"),
        number_after(&printed, "marginal test bits/dim:"),
        number_after(&printed, "classification error:") / 100.0 * 2.0,
        2e-5,
    );
    let grid = dir.join("class-999.png");
    let grid_arg = grid.to_str().expect("utf-8");
    common::succeeds(&[
        "sample", "--model", run_arg, "--class", "999", "--n", "2", "--out", grid_arg,
    ]);
    assert!(grid.is_file());
    // Each split went through the tests' image cache, which lists it by its archives.
    let (listed, _) = common::succeeds(&["image-cache"]);
    let fixture = fixture
        .canonicalize()
        .expect("fixture")
        .display()
        .to_string();
    for entry in [
        "(train_data_batch_1.npz, train_data_batch_2.npz): 5 images of 3x8x8",
        "(val_data.npz): 2 images of 3x8x8",
    ] {
        assert!(listed.contains(&format!("{fixture} {entry}")), "{listed}");
    }
}

#[test]
fn a_classifier_head_trains_on_its_loss_and_evaluates_as_computed_by_hand() {
    let dir = scratch_dir("class-head");
    // Four classes of images; IDX labels are read as ten classes.
    common::write_idx_dataset(&dir, 64, 16, 8);
    let data = dir.to_str().expect("utf-8").to_string();
    let train_args = |run: &Path, extra: &[&str]| -> Vec<String> {
        [
            "train",
            "--data",
            &data,
            "--out",
            run.to_str().expect("utf-8"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .chain(TINY_RUN)
        .map(String::from)
        .collect()
    };

    // A head needs classes, and a loss weight needs a head.
    let refused = dir.join("refused");
    let stderr = common::fails(&common::as_strs(&train_args(
        &refused,
        &["--class-head", "true"],
    )));
    assert!(stderr.contains("n_classes"), "{stderr}");
    let no_head = ["--n-classes", "10", "--weight-y", "0.5"];
    let stderr = common::fails(&common::as_strs(&train_args(&refused, &no_head)));
    assert!(stderr.contains("--class-head"), "{stderr}");

    let run = dir.join("run");
    let run_arg = run.to_str().expect("utf-8");
    let head = [
        "--steps",
        "40",
        "--n-classes",
        "10",
        "--class-head",
        "true",
        "--weight-y",
        "0.5",
    ];
    common::succeeds(&common::as_strs(&train_args(&run, &head)));
    let (model, train) = glowflow::train::config::read_run_configs(&run).expect("configs");
    assert!(model.class_head);
    assert_eq!(train.weight_y, 0.5);
    // Every training row logs the head's figures, and the head learns: at its zero
    // initialisation every logit is equal, log2(10) bits.
    let rows = glowflow::train::metrics::MetricsFile::read(&run.join("metrics.csv")).expect("rows");
    let training = rows.iter().filter(|r| r.train_bpd.is_some()).count();
    let bits: Vec<f64> = rows.iter().filter_map(|r| r.train_class_bits).collect();
    let errors: Vec<f64> = rows.iter().filter_map(|r| r.train_class_error).collect();
    assert_eq!((bits.len(), errors.len()), (40, 40), "{rows:?}");
    assert_eq!(training, 40, "{rows:?}");
    assert!(errors.iter().all(|e| (0.0..=1.0).contains(e)), "{errors:?}");
    assert!(
        (bits[0] - 10f64.log2()).abs() < 1e-5,
        "first step: {}",
        bits[0]
    );
    assert!(bits[39] < bits[0] - 0.02, "{bits:?}");

    // eval prints the head's mean cross-entropy and error over the test set, as computed here
    // from the model's parameters.
    let (printed, _) = common::succeeds(&["eval", "--model", run_arg]);
    let (logits, labels) = common::head_logits_by_hand(&run, 0);
    let n = labels.len() as f64;
    let (mut cross_entropy, mut errors, mut ambiguous) = (0.0, 0, 0);
    for (row, &label) in logits.iter().zip(&labels) {
        let (log_sum_exp, wrong) = scored_by_hand(row, label, 1e-5);
        cross_entropy += (log_sum_exp - row[label]) / std::f64::consts::LN_2 / n;
        match wrong {
            None => ambiguous += 1,
            Some(wrong) => errors += usize::from(wrong),
        }
    }
    // So does training's final evaluation, over the same batches, into metrics.csv.
    let last = rows.last().expect("a final row");
    let logged = last
        .test_head
        .expect("the head's test figures in the final row");
    assert!(last.test_classes.is_some(), "{last:?}");
    for (shown, wrong, tolerance) in [
        (
            number_after(&printed, "cross-entropy"),
            number_after(&printed, "classifier head:") / 100.0 * n,
            1e-3,
        ),
        (logged.bits, logged.error * n, 1e-5),
    ] {
        assert!(
            (shown - cross_entropy).abs() < tolerance,
            "shown {shown} bits, by hand {cross_entropy}: {printed}"
        );
        assert!(
            (errors as f64 - 1e-9..=(errors + ambiguous) as f64 + 1e-9).contains(&wrong),
            "{wrong} errors shown, {errors} by hand and {ambiguous} near ties: {printed}"
        );
    }

    // The weight is fixed for the run: a resume may not change it.
    let stderr = common::fails(&["train", "--resume", run_arg, "--weight-y", "0.1"]);
    assert!(stderr.contains("weight_y"), "{stderr}");
    // Without --weight-y a head gets openai/glow's 0.01.
    let default = dir.join("default");
    let args = ["--steps", "1", "--n-classes", "10", "--class-head", "true"];
    common::succeeds(&common::as_strs(&train_args(&default, &args)));
    let (_, train) = glowflow::train::config::read_run_configs(&default).expect("configs");
    assert_eq!(train.weight_y, 0.01);
}

#[test]
fn a_class_conditional_run_evaluates_with_the_marginal_bpd_and_bayes_error_and_its_latent_tools_take_labels(
) {
    let dir = scratch_dir("eval-classes");
    // Four classes of images; IDX labels are read as ten classes.
    common::write_idx_dataset(&dir, 64, 16, 8);
    let run = dir.join("run");
    let run_arg = run.to_str().expect("utf-8");
    let args: Vec<&str> = [
        "train",
        "--data",
        dir.to_str().expect("utf-8"),
        "--out",
        run_arg,
    ]
    .into_iter()
    .chain(["--steps", "40", "--n-classes", "10"])
    .chain(TINY_RUN)
    .collect();
    let (summary, _) = common::succeeds(&args);
    // The run's sample grids show one class per column: 10 columns, 7 rows (70 samples).
    let grid = std::fs::read(run.join("samples/step-00000040-t0.7.png")).expect("grid");
    let (width, height, _) = png_header(&grid);
    assert_eq!((width, height), (10 * 9 + 1, 7 * 9 + 1));

    // The run's final evaluation logs the class figures, computed here by hand over its batches
    // (one of all 16 test images), and its summary line shows them.
    let rows = glowflow::train::metrics::MetricsFile::read(&run.join("metrics.csv")).expect("rows");
    let last = rows.last().expect("a final row");
    assert_eq!(last.step, 40);
    let classes = last.test_classes.expect("class figures in the final row");
    let test_bpd = last.test_bpd.expect("a test figure");
    assert!(
        rows.iter().all(|r| r.test_head.is_none()),
        "no head, no head figures"
    );
    let trained = class_figures_by_hand(&run, Some((16, 500)));
    trained.assert_close(test_bpd, classes.marginal_bpd, classes.error * 16.0, 1e-5);
    assert!(
        summary.contains("given the label; marginal")
            && (number_after(&summary, "marginal") - classes.marginal_bpd).abs() < 1e-4,
        "{summary}"
    );

    // eval with batches of 6 (6 + 6 + 4 images), so that the figures add up over batches.
    set_eval_batch_size(&run, 6);
    let (printed, _) = common::succeeds(&["eval", "--model", run_arg]);
    class_figures_by_hand(&run, None).assert_close(
        number_after(&printed, "test bits/dim:"),
        number_after(&printed, "marginal test bits/dim:"),
        number_after(&printed, "classification error:") / 100.0 * 16.0,
        2e-5,
    );

    // The latent tools sample a given class, and encode test images under their own labels.
    latent_tools_write_their_grids(run_arg, &dir, &["--temperatures", "0,1", "--class", "2"], 2);
    let png = |name: &str| dir.join(name).to_str().expect("utf-8").to_string();
    let stderr = common::fails(&[
        "temperature-sweep",
        "--model",
        run_arg,
        "--out",
        &png("x.png"),
    ]);
    assert!(stderr.contains("--class"), "{stderr}");
    let out = png("x.png");
    let stderr = common::fails(&[
        "temperature-sweep",
        "--model",
        run_arg,
        "--class",
        "10",
        "--out",
        &out,
    ]);
    assert!(
        stderr.contains("label 10") && stderr.contains("0..10"),
        "{stderr}"
    );

    // More images than the test set holds is all of them; none, or batches of none, are refused.
    let (printed, _) = common::succeeds(&["eval", "--model", run_arg, "--images", "1000000"]);
    assert!(printed.contains("(16 images in batches of 6,"), "{printed}");
    for option in ["--images", "--batch-size"] {
        let stderr = common::fails(&["eval", "--model", run_arg, option, "0"]);
        assert!(
            stderr.contains(option) && stderr.contains("not in 1.."),
            "{stderr}"
        );
    }
}

/// Runs `temperature-sweep` (2 samples, `sweep` its temperatures in `columns` columns and any
/// class), `interpolate` (test images 0 and 5, 4 steps) and `reconstruct` (test images 0 and 1)
/// on the run `run_arg` of 8x8 images, each writing its grid into `dir`, and checks the grids'
/// sizes.
fn latent_tools_write_their_grids(run_arg: &str, dir: &Path, sweep: &[&str], columns: u32) {
    let mut sweep_args = vec!["temperature-sweep", "--n", "2"];
    sweep_args.extend(sweep);
    let cases = [
        (sweep_args, "sweep.png", (columns * 9 + 1, 2 * 9 + 1)),
        (
            vec!["interpolate", "0", "5", "--steps", "4"],
            "line.png",
            (4 * 9 + 1, 9 + 1),
        ),
        (
            vec!["reconstruct", "--index", "0", "1"],
            "levels.png",
            (3 * 9 + 1, 2 * 9 + 1),
        ),
    ];
    for (args, name, size) in cases {
        let out_path = dir.join(name);
        let out_arg = out_path.to_str().expect("utf-8");
        let mut all = args.clone();
        all.extend(["--model", run_arg, "--out", out_arg]);
        common::succeeds(&all);
        let (w, h, _) = png_header(&std::fs::read(&out_path).expect("grid"));
        assert_eq!((w, h), size, "{args:?}");
    }
}

/// Starts `glowflow train --steps 100000 ARGS` on a new synthetic dataset of `size`x`size`
/// images (in the scratch directory `name`), with its output piped, and returns it and its run
/// directory once training is under way (a few metrics rows written).
fn training_under_way(name: &str, size: usize, args: &[&str]) -> (std::process::Child, PathBuf) {
    let dir = scratch_dir(name);
    common::write_idx_dataset(&dir, 64, 16, size);
    let run = dir.join("run");
    let child = common::glowflow_command()
        .args(["train", "--steps", "100000"])
        .arg("--data")
        .arg(&dir)
        .arg("--out")
        .arg(&run)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let metrics = run.join("metrics.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics)
        .map(|m| m.lines().count())
        .unwrap_or(0)
        < 4
    {
        assert!(started.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, run)
}

/// Resumes `run` to `target` steps, asserting that it gets there.
fn resumes_to(run: &Path, target: u64) {
    let target = target.to_string();
    let out = glowflow(&[
        "train",
        "--resume",
        run.to_str().expect("utf-8"),
        "--steps",
        &target,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("{target} steps")),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends SIGTERM to `child`, and returns once the signal has reached it (is no longer pending in
/// /proc/PID/status), so that a second one is a second signal, not merged with the first.
fn deliver_sigterm(child: &std::process::Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: sends SIGTERM to the child this test spawned and has not yet waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
    let bit = 1u64 << (libc::SIGTERM - 1);
    let started = std::time::Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let pending = status
            .lines()
            .filter_map(|line| line.strip_prefix("ShdPnd:"))
            .map(|mask| u64::from_str_radix(mask.trim(), 16).expect("a hex mask"))
            .next()
            .unwrap_or(0);
        if pending & bit == 0 {
            return;
        }
        assert!(started.elapsed().as_secs() < 30, "SIGTERM stayed pending");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn sigterm_writes_a_checkpoint_and_the_run_resumes_to_the_end() {
    let args: Vec<_> = TINY_RUN
        .into_iter()
        .chain(["--checkpoint-every", "100000"])
        .collect();
    let (child, run) = training_under_way("sigterm", 8, &args);
    deliver_sigterm(&child);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a stopped run exits cleanly: {stderr}"
    );
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(
        stderr.contains("stopping at the end of this step")
            && stderr.contains("Ctrl-C again stops at once"),
        "the signal is acknowledged: {stderr}"
    );
    let checkpoints = std::fs::read_dir(run.join("checkpoints"))
        .expect("checkpoints")
        .count();
    assert!(
        checkpoints >= 2,
        "the initial checkpoint and the one written on SIGTERM"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let run_label = format!("run {}:", run.display());
    let stopped_at = number_after(&stdout, &run_label) as u64;
    assert!(
        stdout.contains(&format!("{run_label} {stopped_at} steps")),
        "{stdout}"
    );
    assert!((3..100000).contains(&stopped_at), "{stopped_at}");
    resumes_to(&run, stopped_at + 2);
}

#[test]
fn a_second_sigterm_ends_training_at_once_and_the_run_resumes() {
    // A model wide enough (about 5 million parameters) that finishing the step and writing the
    // checkpoint the first signal asks for take far longer than sending the second one; a
    // checkpoint every 2 steps to resume from.
    let args: Vec<_> = "--image 1x16x16 --levels 2 --depth 8 --width 512 --batch-size 32 \
         --init-images 32 --eval-every 0 --sample-every 0 --log-every 1 --checkpoint-every 2"
        .split_whitespace()
        .collect();
    let (child, run) = training_under_way("sigterm-twice", 16, &args);
    deliver_sigterm(&child);
    deliver_sigterm(&child);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGTERM),
        "ended by the second SIGTERM, not at the end of the step: {:?} {stderr}",
        out.status
    );
    assert!(!stderr.contains("--resume"), "no clean stop: {stderr}");
    // Past every step it logged (and so every checkpoint it wrote) before it was ended.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    resumes_to(&run, metrics.lines().count() as u64 + 2);
}

/// Without the `mpi` feature, a launch of several processes (as mpirun or srun would start) is
/// refused instead of training the same run once per process.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_train_as_several_processes() {
    let dir = scratch_dir("no-mpi");
    common::write_idx_dataset(&dir, 16, 8, 8);
    let run = dir.join("run");
    let out = common::glowflow_command()
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .args(["train", "--data", dir.to_str().expect("utf-8")])
        .args(["--out", run.to_str().expect("utf-8")])
        .args(TINY_RUN)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("launched as 2 processes") && stderr.contains("--features mpi"),
        "{stderr}"
    );
    assert!(!run.exists(), "nothing written");
}

/// The program restarts itself once with glibc's huge-page tunable where the kernel gives
/// transparent huge pages only on request (`[madvise]`), and keeps what its caller set: its
/// tunable goes after the caller's, and a caller's own `glibc.malloc.hugetlb` stands. `bench`
/// records the tunables the measuring process ran with.
#[test]
fn bench_runs_on_huge_page_heaps_where_the_kernel_gives_them_on_request() {
    let on_request = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|modes| modes.contains("[madvise]"));
    let dir = scratch_dir("cli_huge_page_heaps");
    let out = dir.join("bench.json");
    let ran_with = |preset: Option<&str>| -> Option<String> {
        let mut command = common::glowflow_command();
        command.args([
            "bench",
            "--image",
            "1x8x8",
            "--levels",
            "1",
            "--depth",
            "1",
            "--width",
            "8",
            "--batch-size",
            "2",
            "--phases",
            "eval",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--out",
        ]);
        command.arg(&out);
        match preset {
            Some(tunables) => command.env("GLIBC_TUNABLES", tunables),
            None => command.env_remove("GLIBC_TUNABLES"),
        };
        let status = command.output().expect("the glowflow binary runs");
        assert!(status.status.success(), "{status:?}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("bench.json"))
                .expect("json");
        json["glibc_tunables"].as_str().map(str::to_string)
    };
    let huge = "glibc.malloc.hugetlb=1";
    let callers = "glibc.malloc.perturb=0";
    if on_request {
        assert_eq!(ran_with(None).as_deref(), Some(huge));
        assert_eq!(ran_with(Some(callers)), Some(format!("{callers}:{huge}")));
    } else {
        assert_eq!(ran_with(None), None);
        assert_eq!(ran_with(Some(callers)).as_deref(), Some(callers));
    }
    let opted_out = "glibc.malloc.hugetlb=0";
    assert_eq!(ran_with(Some(opted_out)).as_deref(), Some(opted_out));
}

/// Writes `n` colour images of `width x height` into each `(folder, n)` of `dir`, image `i` named
/// `name(i)` (its extension picks the format): red and green ramps across and down, and a blue
/// level of its own.
fn write_colour_folders(
    dir: &Path,
    folders: &[(&str, u32)],
    (width, height): (u32, u32),
    name: impl Fn(u32) -> String,
) {
    for &(folder, n) in folders {
        std::fs::create_dir_all(dir.join(folder)).expect("folder");
        for i in 0..n {
            image::RgbImage::from_fn(width, height, |x, y| {
                let ramp = |v: u32, side: u32| (v * 255 / side.max(2).saturating_sub(1)) as u8;
                image::Rgb([ramp(x, width), ramp(y, height), (i * 37 % 256) as u8])
            })
            .save(dir.join(folder).join(name(i)))
            .expect("save");
        }
    }
}

/// A run on image folders trains the same through the image cache as without it: the first
/// run decodes each folder into an entry (a note says so), a later run maps the entries without
/// decoding, and both end with the weights, byte for byte, and the figures of a run that
/// decodes the folders into memory (`GLOWFLOW_IMAGE_CACHE=off`), which writes no entry.
/// `glowflow image-cache` lists the entries (and an older glowflow's) and removes them, by folder
/// (also one deleted since) or all.
#[test]
fn training_on_folders_through_the_image_cache_is_training_without_it() {
    let dir = scratch_dir("cli-image-cache");
    write_colour_folders(&dir, &[("train", 10), ("test", 4)], (10, 9), |i| {
        format!("{i}.png")
    });
    let cache = dir.join("cache");
    let train = |run: &str, cache: &Path| -> String {
        let mut command = common::glowflow_command();
        command
            .env(glowflow::data::image_cache::CACHE_ENV, cache)
            .args(["train", "--preset", "celeba64", "--data"])
            .arg(&dir)
            .arg("--out")
            .arg(dir.join(run))
            .args([
                "--image", "3x8x8", "--levels", "2", "--depth", "1", "--width", "8",
            ])
            .args(["--n-classes", "0", "--steps", "3", "--batch-size", "4"])
            .args(["--init-images", "8", "--eval-every", "2"]);
        let (stdout, stderr) = common::succeeded(&mut command);
        stderr + &stdout
    };
    let first = train("first", &cache);
    assert!(
        first.contains("decoded the 10 images") && first.contains("decoded the 4 images"),
        "{first}"
    );
    let entries = std::fs::read_dir(&cache).expect("cache written").count();
    assert_eq!(entries, 3, "two entries and the lock");
    let again = train("again", &cache);
    assert!(!again.contains("decoded the"), "{again}");
    let off = train("off", Path::new("off"));
    assert!(!off.contains("image cache"), "{off}");
    assert_eq!(std::fs::read_dir(&cache).expect("cache").count(), entries);
    let weights =
        |run: &str| std::fs::read(dir.join(run).join("model.safetensors")).expect("weights");
    let figures = |run: &str| -> Vec<(u64, Option<f64>, Option<f64>)> {
        glowflow::train::metrics::MetricsFile::read(&dir.join(run).join("metrics.csv"))
            .expect("metrics")
            .into_iter()
            .map(|row| (row.step, row.train_bpd, row.test_bpd))
            .collect()
    };
    for run in ["again", "off"] {
        assert!(weights(run) == weights("first"), "{run}: other weights");
        assert_eq!(figures(run), figures("first"), "{run}");
    }

    // `glowflow image-cache` lists both folders; --clear --folder removes one, --clear the rest.
    let image_cache = |args: &[&str]| -> String {
        let mut command = common::glowflow_command();
        command.env(glowflow::data::image_cache::CACHE_ENV, &cache);
        common::succeeded(command.arg("image-cache").args(args)).0
    };
    let folder = |name: &str| dir.join(name).canonicalize().expect("folder");
    // An older format version's copy of the training folder's entry (an older glowflow's):
    // listed as such, with its size, and cleared with the folder's entries.
    let train_entry = glowflow::data::image_cache::contents(&cache)
        .expect("contents")
        .entries
        .into_iter()
        .find(|entry| entry.folder == folder("train"))
        .expect("the training folder's entry")
        .file;
    let mut older = std::fs::read(train_entry).expect("entry");
    let version = glowflow::data::image_cache::VERSION - 1;
    older[8..12].copy_from_slice(&version.to_le_bytes());
    let older_file = cache.join("0000000000000000-older.images");
    std::fs::write(&older_file, &older).expect("older entry");
    let listed = image_cache(&[]);
    let older_line = format!(
        "{}: an older glowflow's entry, unused, {:.2} GB",
        older_file.display(),
        older.len() as f64 / 1e9
    );
    assert!(listed.contains(&older_line), "{listed}");
    for (name, line) in [
        ("train", "10 images of 3x8x8"),
        ("test", "4 images of 3x8x8"),
    ] {
        let entry = format!("{}: {line}", folder(name).display());
        assert!(listed.contains(&entry), "{listed}");
    }
    assert!(listed.contains("\n2 entries, "), "{listed}");
    let train = dir.join("train");
    let cleared = image_cache(&["--clear", "--folder", train.to_str().expect("utf-8")]);
    assert!(cleared.contains("removed 2 files"), "{cleared}");
    assert!(!older_file.exists());
    assert!(
        !cleared.contains(&format!("{}:", folder("train").display())),
        "{cleared}"
    );
    assert!(cleared.contains("\n1 entries, "), "{cleared}");
    // A folder deleted since: listed as gone, and its entry removed by its old name.
    let test = dir.join("test");
    let test_entry = format!("{}: 4 images", folder("test").display());
    std::fs::remove_dir_all(&test).expect("remove the test folder");
    let listed = image_cache(&[]);
    assert!(
        listed.contains(&test_entry) && listed.contains("its folder is gone"),
        "{listed}"
    );
    let cleared = image_cache(&["--clear", "--folder", test.to_str().expect("utf-8")]);
    assert!(
        cleared.contains("removed 1 files") && cleared.contains("\n0 entries, "),
        "{cleared}"
    );
    let cleared = image_cache(&["--clear"]);
    assert!(
        cleared.contains("removed 0 files") && cleared.contains("\n0 entries, "),
        "{cleared}"
    );
    let off = common::glowflow_command()
        .env(glowflow::data::image_cache::CACHE_ENV, "off")
        .arg("image-cache")
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&off.stdout).contains("is off"));
}

/// `--preset imagenet32 --data DIR` trains the paper's ImageNet 32×32 recipe on PixelRNN's
/// downsampled ImageNet as its archives unpack, `DIR/train_32x32/` and `DIR/valid_32x32/` of PNG
/// files (the model made small here), and `eval` reads the validation folder; `imagenet64` is
/// the paper's 64×64 model in `train_64x64/` and `valid_64x64/`.
#[test]
fn the_imagenet_presets_read_the_downsampled_imagenet_folders() {
    use glowflow::data::source::DataSource;
    use glowflow::train::optimizer::OptimizerKind;
    let dir = scratch_dir("imagenet32");
    let folders = [("train_32x32", 8), ("valid_32x32", 3)];
    write_colour_folders(&dir, &folders, (32, 32), |i| format!("{i}.png"));
    let run = dir.join("run");
    let run_arg = run.to_str().expect("utf-8");
    let (stdout, _) = common::succeeds(&[
        "train",
        "--preset",
        "imagenet32",
        "--data",
        dir.to_str().expect("utf-8"),
        "--out",
        run_arg,
        "--depth",
        "1",
        "--width",
        "8",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--init-images",
        "8",
    ]);
    assert!(number_after(&stdout, ", test ").is_finite(), "{stdout}");
    let (model, train) = glowflow::train::config::read_run_configs(&run).expect("configs");
    assert_eq!(
        (
            model.image.dims(),
            model.levels,
            model.n_bits,
            model.learn_top
        ),
        (3 * 32 * 32, 3, 8, true)
    );
    assert_eq!(
        train.data,
        DataSource::Folder {
            train: dir.join("train_32x32"),
            test: dir.join("valid_32x32"),
            skip_bad_images: false,
            random_crop_from: None,
        }
    );
    assert_eq!(
        (train.optimizer.kind, train.lr),
        (OptimizerKind::Adamax, 1e-3)
    );
    let (printed, _) = common::succeeds(&["eval", "--model", run_arg]);
    assert!(printed.contains("(3 images in batches of 400"), "{printed}");

    let (model, train) = glowflow::train::presets::preset("imagenet64").expect("preset");
    assert_eq!(
        (model.image.dims(), model.levels, model.steps, model.width),
        (3 * 64 * 64, 4, 48, 512)
    );
    let (model32, _) = glowflow::train::presets::preset("imagenet32").expect("preset");
    assert_eq!((model32.levels, model32.steps, model32.width), (3, 48, 512));
    assert_eq!(
        train.data.at(Path::new("/x")),
        DataSource::Folder {
            train: "/x/train_64x64".into(),
            test: "/x/valid_64x64".into(),
            skip_bad_images: false,
            random_crop_from: None,
        }
    );
}

/// `--preset lsun64 --data DIR` reads an LSUN category's `train/` and `val/` folders (PNG, JPEG
/// or WebP, as LSUN's export writes them), resized to `--random-crop-from`'s size, and trains
/// on random model-size windows of them (here also shifted and mirrored at random); `eval`
/// reads the central window of each test image, as computed here pixel by pixel. The crop size,
/// shifts and flips are fixed for the run; the crop must hold the model's images, and is for
/// image folders only; a shift must leave something of the image.
#[test]
fn the_lsun_preset_trains_on_random_crops_and_evaluates_central_windows() {
    let dir = scratch_dir("lsun64");
    write_colour_folders(&dir, &[("val", 3)], (12, 12), |i| format!("{i}.png"));
    // One training image as WebP.
    write_colour_folders(&dir, &[("train", 6)], (12, 12), |i| match i {
        0 => "0.webp".into(),
        i => format!("{i}.png"),
    });
    let run = dir.join("run");
    let run_arg = run.to_str().expect("utf-8");
    let data = dir.to_str().expect("utf-8");
    let train_args = |run: &str, crop: &str| -> Vec<String> {
        [
            "train",
            "--preset",
            "lsun64",
            "--data",
            data,
            "--out",
            run,
            "--random-crop-from",
            crop,
            "--image",
            "3x8x8",
            "--levels",
            "2",
            "--depth",
            "1",
            "--width",
            "8",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--init-images",
            "4",
            "--random-flip",
            "true",
            "--random-translate",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };
    common::succeeds(&common::as_strs(&train_args(run_arg, "12")));
    let (_, train) = glowflow::train::config::read_run_configs(&run).expect("configs");
    assert_eq!((train.random_flip, train.random_translate), (true, 1));
    assert_eq!(
        train.data,
        glowflow::data::source::DataSource::Folder {
            train: dir.join("train"),
            test: dir.join("val"),
            skip_bad_images: false,
            random_crop_from: Some(12),
        }
    );
    let (printed, _) = common::succeeds(&["eval", "--model", run_arg]);
    let (shown, expected) = (
        number_after(&printed, "test bits/dim:"),
        common::test_bpd_by_hand(&run, 0),
    );
    assert!(
        (shown - expected).abs() < 2e-5,
        "eval printed {shown}, by hand {expected}: {printed}"
    );

    let stderr = common::fails(&["train", "--resume", run_arg, "--random-crop-from", "10"]);
    assert!(
        stderr.contains("data.random_crop_from (12 -> 10)"),
        "{stderr}"
    );
    let stderr = common::fails(&["train", "--resume", run_arg, "--random-flip", "false"]);
    assert!(
        stderr.contains("random_flip (--random-flip: true -> false)"),
        "{stderr}"
    );
    let stderr = common::fails(&["train", "--resume", run_arg, "--random-translate", "2"]);
    assert!(
        stderr.contains("random_translate (--random-translate: 1 -> 2)"),
        "{stderr}"
    );
    let small = dir.join("small");
    let args = train_args(small.to_str().expect("utf-8"), "6");
    let stderr = common::fails(&common::as_strs(&args));
    assert!(
        stderr.contains("random_crop_from = 6") && stderr.contains("at least 8"),
        "{stderr}"
    );
    let mut args = train_args(small.to_str().expect("utf-8"), "12");
    let at = args
        .iter()
        .position(|a| a == "--random-translate")
        .expect("given")
        + 1;
    args[at] = "8".into();
    let stderr = common::fails(&common::as_strs(&args));
    assert!(
        stderr.contains("random_translate = 8") && stderr.contains("less than 8"),
        "{stderr}"
    );
    let stderr = common::fails(&[
        "train",
        "--preset",
        "cifar10",
        "--random-crop-from",
        "40",
        "--out",
        small.to_str().expect("utf-8"),
    ]);
    assert!(stderr.contains("for image folders"), "{stderr}");
    assert!(!small.exists(), "nothing written");
}

//! Command-line values: `--help` lists every value of the enum options, those values are the
//! config files' spellings, and values the commands cannot use fail with a message, not a panic.
//! `glowflow train --resume`: the architecture and the recipe of a run are fixed, the settings
//! that keep it exact may change and are kept in its train.json, and a directory that cannot be
//! resumed fails with a message naming what is wrong.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::ValueEnum;
use common::{fails, glowflow, succeeds, TempDir};
use glowflow::flow::conv::ConvRoute;
use glowflow::train::optimizer::OptimizerKind;
use glowflow::{CouplingKind, HiddenNorm, Padding, PermutationKind};

/// The serde (config-file) name of each command-line value of `T`, beside the value.
fn names<T: ValueEnum + serde::Serialize>() -> Vec<(String, String)> {
    T::value_variants()
        .iter()
        .map(|v| {
            let cli = v
                .to_possible_value()
                .expect("not hidden")
                .get_name()
                .to_string();
            let serde = serde_json::to_value(v).expect("serialises");
            (cli, serde.as_str().expect("a unit variant").to_string())
        })
        .collect()
}

#[test]
fn command_line_values_are_the_config_file_names() {
    let all = [
        names::<CouplingKind>(),
        names::<PermutationKind>(),
        names::<Padding>(),
        names::<HiddenNorm>(),
        names::<OptimizerKind>(),
        names::<ConvRoute>(),
    ];
    for (cli, serde) in all.iter().flatten() {
        assert_eq!(cli, serde);
    }
    // Every config-file value is accepted on the command line (and only those).
    let coupling: Vec<&str> = all[0].iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(coupling, ["additive", "affine", "affine-exp"]);
    let permutation: Vec<&str> = all[1].iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(permutation, ["inv-conv", "reverse", "shuffle"]);
}

#[test]
fn help_lists_the_values_of_every_enum_option() {
    let help = |command: &str| {
        let out = glowflow(&[command, "--help"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let new = help("new");
    for value in [
        "additive",
        "affine",
        "affine-exp",
        "inv-conv",
        "reverse",
        "shuffle",
        "edge",
        "zero",
        "actnorm",
        "bias",
    ] {
        assert!(
            new.contains(&format!("- {value}:")),
            "`new --help` lists {value}:\n{new}"
        );
    }
    let train = help("train");
    for value in ["adam", "adamax", "affine-exp", "inv-conv"] {
        assert!(
            train.contains(&format!("- {value}:")),
            "`train --help` lists {value}"
        );
    }
    let stderr = fails(&["new", "--coupling", "cubic", "--out", "never-written"]);
    assert!(stderr.contains("additive, affine, affine-exp"), "{stderr}");
}

/// The architecture of the tiny models: 1x8x8, L = 2, K = 1, width 8.
const TINY_MODEL: [&str; 8] = [
    "--image", "1x8x8", "--levels", "2", "--depth", "1", "--width", "8",
];

/// `glowflow new`: a tiny 1x8x8 model in `dir/model`.
fn new_model(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    let mut args = vec!["new", "--out", model.to_str().expect("utf-8")];
    args.extend(TINY_MODEL);
    succeeds(&args);
    model
}

#[test]
fn zero_samples_are_refused_before_anything_runs() {
    let dir = TempDir::new("cli-n0");
    let model = new_model(&dir.0);
    let model_arg = model.to_str().expect("utf-8");
    let png = dir.0.join("grid.png");
    let png_arg = png.to_str().expect("utf-8");
    for command in ["sample", "temperature-sweep"] {
        let stderr = fails(&[command, "--model", model_arg, "--n", "0", "--out", png_arg]);
        assert!(
            stderr.contains("--n") && stderr.contains('0'),
            "{command}: {stderr}"
        );
        assert!(!png.exists(), "{command} wrote nothing");
    }
    let stderr = fails(&[
        "temperature-sweep",
        "--model",
        model_arg,
        "--temperatures",
        "0.5,-1",
        "--out",
        png_arg,
    ]);
    assert!(stderr.contains("-1"), "{stderr}");
    // Checked while parsing, before a direction over thousands of images is computed.
    let stderr = fails(&[
        "manipulate",
        "--model",
        model_arg,
        "--attribute",
        "1",
        "--alphas",
        "0,nan",
        "--out",
        png_arg,
    ]);
    assert!(stderr.contains("`nan` is not a finite number"), "{stderr}");
}

#[test]
fn a_rank_timeout_outside_one_second_to_a_week_is_refused() {
    for value in ["0", "604801", "18446744073709551615", "-1", "nan"] {
        let stderr = fails(&["train", &format!("--rank-timeout={value}")]);
        assert!(stderr.contains("--rank-timeout"), "{value}: {stderr}");
    }
}

#[test]
fn a_corrupt_train_json_is_an_error_and_a_missing_one_falls_back_to_the_preset() {
    let dir = TempDir::new("cli-train-json");
    common::write_idx_dataset(&dir.0, 8, 4, 8);
    let data_arg = dir.0.to_str().expect("utf-8");
    let model = new_model(&dir.0);
    let model_arg = model.to_str().expect("utf-8");
    // A model directory without a run: the preset's dataset format, at --data.
    let out = glowflow(&["eval", "--model", model_arg, "--data", data_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 images"));
    // A train.json that is there but not a training config is never replaced by the preset's.
    let train_json = model.join("train.json");
    std::fs::write(&train_json, b"{\"data\": ").expect("write");
    let stderr = fails(&["eval", "--model", model_arg, "--data", data_arg]);
    assert!(
        stderr.contains(&train_json.display().to_string()),
        "{stderr}"
    );
    let stderr = fails(&["reconstruct", "--model", model_arg, "--out", "x.png"]);
    assert!(stderr.contains("train.json"), "{stderr}");
}

#[test]
fn an_unreadable_training_config_file_is_an_io_error_naming_it() {
    let dir = TempDir::new("cli-train-config");
    let missing = dir.0.join("nowhere.json");
    let stderr = fails(&[
        "train",
        "--train-config",
        missing.to_str().expect("utf-8"),
        "--out",
        dir.0.join("run").to_str().expect("utf-8"),
    ]);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(
        !stderr.contains("invalid config"),
        "an I/O error, not a config error: {stderr}"
    );
    assert!(!dir.0.join("run").exists());
}

fn train_json(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("train.json")).expect("train.json");
    serde_json::from_str(&text).expect("JSON")
}

/// A 2-step run of a tiny model on the synthetic 8x8 dataset in `dir`.
fn tiny_run(dir: &Path) -> PathBuf {
    common::write_idx_dataset(dir, 32, 8, 8);
    let run = dir.join("run");
    let mut args = vec![
        "train",
        "--data",
        dir.to_str().expect("utf-8"),
        "--out",
        run.to_str().expect("utf-8"),
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--init-images",
        "8",
        "--log-every",
        "1",
        "--eval-every",
        "0",
        "--sample-every",
        "0",
        "--checkpoint-every",
        "2",
        // A constant rate, so that the resume tests may lengthen the run (a cosine decay ends at
        // the run's last step: tests/schedule.rs).
        "--lr-decay",
        "constant",
    ];
    args.extend(TINY_MODEL);
    succeeds(&args);
    run
}

#[test]
fn resume_fixes_the_architecture_and_recipe_and_keeps_allowed_changes() {
    let dir = TempDir::new("resume-flags");
    let run = tiny_run(&dir.0);
    let run_arg = run.to_str().expect("utf-8");
    let before = train_json(&run);

    let stderr = fails(&["train", "--resume", run_arg, "--levels", "3"]);
    assert!(
        stderr.contains("--levels") && stderr.contains("config.json"),
        "{stderr}"
    );
    let stderr = fails(&["train", "--resume", run_arg, "--lr", "0.1", "--seed", "9"]);
    assert!(
        stderr.contains("--lr") && stderr.contains("--seed"),
        "{stderr}"
    );
    let stderr = fails(&["train", "--resume", run_arg, "--lr-decay", "cosine"]);
    assert!(stderr.contains("--lr-decay"), "{stderr}");
    assert_eq!(
        train_json(&run),
        before,
        "a refused resume leaves train.json alone"
    );

    let (stdout, _) = succeeds(&[
        "train",
        "--resume",
        run_arg,
        "--steps",
        "4",
        "--log-every",
        "2",
    ]);
    assert!(stdout.contains("4 steps"), "{stdout}");
    let after = train_json(&run);
    assert_eq!(
        after["steps"], 4,
        "the longer run is what train.json now says"
    );
    assert_eq!(after["log_every"], 2);
    assert_eq!(after["lr"], before["lr"]);
    assert_eq!(after["batch_shards"], before["batch_shards"]);
    // A later resume without flags keeps the new length: there is nothing left to train.
    let (stdout, _) = succeeds(&["train", "--resume", run_arg]);
    assert!(stdout.contains("4 steps"), "{stdout}");
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("3,") || l.starts_with("4,"))
            .count(),
        1 + 1,
        "steps 3 and 4 logged every 2 steps (row 4), then the final row, once: resuming the \
         finished run again evaluates it again but logs no second final row:\n{metrics}"
    );
}

#[test]
fn directories_that_cannot_resume_fail_naming_the_problem() {
    let dir = TempDir::new("resume-bad");
    let run = tiny_run(&dir.0);

    let empty = dir.0.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let stderr = fails(&["train", "--resume", empty.to_str().expect("utf-8")]);
    assert!(
        stderr.contains("train.json") && stderr.contains("no training run"),
        "{stderr}"
    );

    // The configs of a run, but no checkpoint.
    let fresh = dir.0.join("fresh");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    for file in ["config.json", "train.json"] {
        std::fs::copy(run.join(file), fresh.join(file)).expect("copy");
    }
    let stderr = fails(&["train", "--resume", fresh.to_str().expect("utf-8")]);
    assert!(stderr.contains("no checkpoint"), "{stderr}");

    // A checkpoint whose state file is corrupt.
    let copy = |name: &str| {
        let to = dir.0.join(name);
        let status = Command::new("cp")
            .args(["-r"])
            .arg(&run)
            .arg(&to)
            .status()
            .expect("cp");
        assert!(status.success());
        to
    };
    let bad_state = copy("bad-state");
    let state = bad_state.join("checkpoints/step-00000002/state.json");
    std::fs::write(&state, b"{\"training\": 3").expect("corrupt");
    let stderr = fails(&["train", "--resume", bad_state.to_str().expect("utf-8")]);
    assert!(stderr.contains(&state.display().to_string()), "{stderr}");

    let bad_train = copy("bad-train");
    std::fs::write(bad_train.join("train.json"), b"[]").expect("corrupt");
    let stderr = fails(&["train", "--resume", bad_train.to_str().expect("utf-8")]);
    assert!(
        stderr.contains(&bad_train.join("train.json").display().to_string()),
        "{stderr}"
    );
}

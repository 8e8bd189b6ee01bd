//! Command-line values: `--help` lists every value of the enum options, those values are the
//! config files' spellings, and values the commands cannot use fail with a message, not a panic.

mod common;

use std::process::Command;

use clap::ValueEnum;
use common::TempDir;
use glowflow::train::optimizer::OptimizerKind;
use glowflow::{CouplingKind, HiddenNorm, Padding, PermutationKind};

fn glowflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glowflow"))
        .args(args)
        .output()
        .expect("the glowflow binary runs")
}

/// Runs a command that must fail cleanly (an error message, no panic), and returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = glowflow(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    stderr
}

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

#[test]
fn zero_samples_are_refused_before_anything_runs() {
    let dir = TempDir::new("cli-n0");
    let model = dir.0.join("model");
    let model_arg = model.to_str().expect("utf-8");
    let out = glowflow(&[
        "new", "--image", "1x8x8", "--levels", "2", "--depth", "1", "--width", "8", "--out",
        model_arg,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
}

#[test]
fn a_corrupt_train_json_is_an_error_and_a_missing_one_falls_back_to_the_preset() {
    let dir = TempDir::new("cli-train-json");
    common::write_idx_dataset(&dir.0, 8, 4, 8);
    let data_arg = dir.0.to_str().expect("utf-8");
    let model = dir.0.join("model");
    let model_arg = model.to_str().expect("utf-8");
    let out = glowflow(&[
        "new", "--image", "1x8x8", "--levels", "2", "--depth", "1", "--width", "8", "--out",
        model_arg,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

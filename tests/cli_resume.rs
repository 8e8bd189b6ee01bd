//! `glowflow train --resume`: the architecture and the recipe of a run are fixed, the settings
//! that keep it exact may change and are kept in its train.json, and a directory that cannot be
//! resumed fails with a message naming what is wrong.

mod common;

use std::path::Path;
use std::process::Command;

use common::TempDir;

fn glowflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glowflow"))
        .args(args)
        .output()
        .expect("the glowflow binary runs")
}

fn succeeds(args: &[&str]) -> String {
    let out = glowflow(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail cleanly, and returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = glowflow(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    stderr
}

fn train_json(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("train.json")).expect("train.json");
    serde_json::from_str(&text).expect("JSON")
}

/// A 2-step run of a tiny model on the synthetic 8x8 dataset in `dir`.
fn tiny_run(dir: &Path) -> std::path::PathBuf {
    common::write_idx_dataset(dir, 32, 8, 8);
    let run = dir.join("run");
    succeeds(&[
        "train",
        "--data",
        dir.to_str().expect("utf-8"),
        "--out",
        run.to_str().expect("utf-8"),
        "--steps",
        "2",
        "--image",
        "1x8x8",
        "--levels",
        "2",
        "--depth",
        "1",
        "--width",
        "8",
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
    ]);
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
    assert_eq!(
        train_json(&run),
        before,
        "a refused resume leaves train.json alone"
    );

    let stdout = succeeds(&[
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
    let stdout = succeeds(&["train", "--resume", run_arg]);
    assert!(stdout.contains("4 steps"), "{stdout}");
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    assert_eq!(
        metrics.lines().filter(|l| l.starts_with("3,") || l.starts_with("4,")).count(),
        1 + 1 + 1,
        "steps 3 and 4 logged every 2 steps (row 4), then the final rows of both resumes:\n{metrics}"
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

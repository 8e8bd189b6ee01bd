//! Training on several MPI processes (`mpirun -np N glowflow train`): the weights of any cluster
//! size are those of one process, bit for bit, also when a run stops on one size and resumes on
//! another; bad launches are refused before training; a rank that dies or hangs stops the others
//! with an error naming it. `glowflow eval` on any cluster size prints one process's figures.
//! Needs the `mpi` feature and Open MPI's `mpirun`.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use glowflow::train::checkpoint::list_checkpoints;
use glowflow::train::metrics::MetricsFile;

/// The architecture of every run here (the model of [`grey8_config`] with width 8).
const ARCH: [&str; 8] = [
    "--image", "1x8x8", "--levels", "2", "--depth", "2", "--width", "8",
];

/// A dataset and a training config (4 gradient shards of 2 images, evaluation in batches of 4
/// so that it is shared out) in a new scratch directory.
fn setup(name: &str, recompute: bool) -> (PathBuf, PathBuf) {
    let root = scratch_dir(name);
    write_idx_dataset(&root, 64, 16, 8);
    let mut train = tiny_train_config(&root);
    train.batch_shards = 4;
    train.steps = 6;
    train.checkpoint_every = 3;
    train.eval_every = 3;
    train.eval_images = 12;
    train.eval_batch_size = 4;
    train.recompute_activations = recompute;
    let config = root.join("train.json");
    train.save(&config).expect("write train.json");
    (root, config)
}

/// `mpirun` with `processes` ranks on this machine (as root in CI; more ranks than cores).
fn mpirun(processes: usize) -> Command {
    let mut command = Command::new("mpirun");
    command
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1")
        .env(
            glowflow::data::image_cache::CACHE_ENV,
            common::TEST_IMAGE_CACHE,
        )
        .args(["--oversubscribe", "--mca", "btl", "self,vader"])
        .args(["--mca", "btl_vader_single_copy_mechanism", "none"])
        .args(["-np", &processes.to_string()]);
    command
}

/// `glowflow` on `processes` ranks (1: without mpirun), arguments to follow.
fn glowflow_command_on(processes: usize) -> Command {
    if processes == 1 {
        common::glowflow_command()
    } else {
        let mut command = mpirun(processes);
        command.arg(env!("CARGO_BIN_EXE_glowflow"));
        command
    }
}

/// Runs `glowflow COMMAND ARGS` on `processes` ranks (1: without mpirun).
fn glowflow_on(processes: usize, command_name: &str, args: &[&str]) -> Output {
    glowflow_command_on(processes)
        .arg(command_name)
        .args(args)
        .output()
        .expect("the command runs")
}

/// Runs `glowflow train ARGS` on `processes` ranks (1: without mpirun).
fn train(processes: usize, args: &[&str]) -> Output {
    glowflow_on(processes, "train", args)
}

/// Like [`glowflow_on`], asserting success; returns stdout.
fn succeeds_on(processes: usize, command_name: &str, args: &[&str]) -> String {
    let out = glowflow_on(processes, command_name, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{processes} ranks, {command_name} {args:?}: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`train`], asserting success; returns stdout.
fn trains(processes: usize, args: &[&str]) -> String {
    succeeds_on(processes, "train", args)
}

/// A new run's arguments.
fn new_run<'a>(root: &'a Path, config: &'a Path, run: &'a Path, steps: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "--data",
        root.to_str().expect("utf-8"),
        "--train-config",
        config.to_str().expect("utf-8"),
        "--out",
        run.to_str().expect("utf-8"),
        "--steps",
        steps,
    ];
    args.extend(ARCH);
    args
}

/// A safetensors file's tensors: (name, raw bytes), sorted by name.
type Tensors = Vec<(String, Vec<u8>)>;

/// Every tensor of a safetensors file, by name: name and raw bytes (the header's key order is
/// not part of the comparison).
fn tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let mut all: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    all.sort();
    all
}

/// What a run ended with: the tensors of its EMA model and of its last checkpoint (training
/// weights, EMA and Adam moments), and its metrics without the timings.
fn outcome(run: &Path) -> (Vec<Tensors>, Vec<String>) {
    let last = list_checkpoints(run)
        .expect("list")
        .pop()
        .expect("a checkpoint");
    let files = [
        run.join("model.safetensors"),
        last.join("model.safetensors"),
        last.join("ema.safetensors"),
        last.join("moment1.safetensors"),
        last.join("moment2.safetensors"),
    ];
    let rows = MetricsFile::read(&run.join("metrics.csv"))
        .expect("metrics")
        .into_iter()
        .map(|r| {
            format!(
                "{} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                r.step,
                r.train_bpd,
                r.test_bpd,
                r.lr,
                r.grad_norm,
                r.train_class_bits,
                r.train_class_error,
                r.test_classes,
                r.test_head
            )
        })
        .collect();
    (files.iter().map(|f| tensors(f)).collect(), rows)
}

/// The rows of training steps without their test figures ("step train test lr norm bits error
/// classes head" -> "step train lr norm bits error"), and the last row.
fn training_rows(rows: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = rows
        .iter()
        .map(|row| row.split(' ').collect::<Vec<_>>())
        .filter(|fields| fields[1] != "None")
        .map(|fields| {
            let kept = [0, 1, 3, 4, 5, 6].map(|i| fields[i]);
            kept.join(" ")
        })
        .collect();
    kept.push(rows.last().expect("a row").clone());
    kept
}

/// One process, two, stopped on two and resumed on one, and stopped on one and resumed on four:
/// the same weights, optimiser state and metrics, bit for bit. The recompute runs train a
/// class-conditional model with a classifier head (its loss term and figures cross the ranks too).
fn every_cluster_size_gives_the_weights_of_one_process(recompute: bool) {
    let (root, config) = setup(
        if recompute {
            "mpi-recompute"
        } else {
            "mpi-backprop"
        },
        recompute,
    );
    let run = |name: &str| root.join(name);
    let runs: Vec<PathBuf> = ["one", "two", "two-then-one", "one-then-four"]
        .iter()
        .map(|name| run(name))
        .collect();
    let fresh = |run: &Path, steps: &str| -> Vec<String> {
        let mut args: Vec<String> = new_run(&root, &config, run, steps)
            .into_iter()
            .map(String::from)
            .collect();
        if recompute {
            args.extend(["--n-classes", "10", "--class-head", "true"].map(String::from));
        }
        args
    };

    trains(1, &as_strs(&fresh(&runs[0], "6")));
    let two = train(2, &as_strs(&fresh(&runs[1], "6")));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&two.stdout),
        String::from_utf8_lossy(&two.stderr),
    );
    assert!(two.status.success(), "{stderr}");
    assert_eq!(
        stdout.matches("run ").count(),
        1,
        "rank 0 alone reports: {stdout}"
    );
    // Rank 0 tells where each rank computes: both on this machine, as local ranks 0 and 1 (read
    // from mpirun's variables), on the CPU.
    let hosts: Vec<&str> = (0..2)
        .map(|rank| {
            let line = stderr
                .lines()
                .find(|line| line.starts_with(&format!("rank {rank} on ")))
                .unwrap_or_else(|| panic!("no placement of rank {rank}: {stderr}"));
            let (host, device) = line[format!("rank {rank} on ").len()..]
                .split_once(&format!(" (local rank {rank}): "))
                .unwrap_or_else(|| panic!("rank {rank} is not local rank {rank}: {line}"));
            assert_eq!(device, "Device<Flex(Cpu)>", "{line}");
            host
        })
        .collect();
    assert_eq!(hosts[0], hosts[1], "one machine: {stderr}");
    trains(2, &as_strs(&fresh(&runs[2], "3")));
    trains(
        1,
        &[
            "--resume",
            run("two-then-one").to_str().expect("utf-8"),
            "--steps",
            "6",
        ],
    );
    trains(1, &as_strs(&fresh(&runs[3], "3")));
    trains(
        4,
        &[
            "--resume",
            run("one-then-four").to_str().expect("utf-8"),
            "--steps",
            "6",
        ],
    );

    let reference = outcome(&run("one"));
    assert_eq!(
        reference.1.len(),
        7,
        "six steps and the final evaluation: {:?}",
        reference.1
    );
    let head_rows = MetricsFile::read(&run("one").join("metrics.csv"))
        .expect("metrics")
        .iter()
        .filter(|row| row.train_class_error.is_some())
        .count();
    assert_eq!(head_rows, if recompute { 6 } else { 0 }, "head figures");
    let files = [
        "EMA model",
        "training weights",
        "checkpoint EMA",
        "Adam m",
        "Adam v",
    ];
    for name in ["two", "two-then-one", "one-then-four"] {
        let other = outcome(&run(name));
        for ((mine, theirs), file) in other.0.iter().zip(&reference.0).zip(files) {
            assert!(
                mine == theirs,
                "{name}: the {file} differs from one process's"
            );
        }
        if name == "two" {
            assert_eq!(other.1, reference.1, "{name}: metrics.csv differs");
        } else {
            // A run that stopped at step 3 evaluated the whole test set there instead of the
            // periodic evaluation's 12 images; every training row and the final row agree.
            assert_eq!(
                training_rows(&other.1),
                training_rows(&reference.1),
                "{name}: metrics.csv differs"
            );
        }
    }
}

#[test]
fn every_cluster_size_gives_the_weights_of_one_process_with_backprop() {
    every_cluster_size_gives_the_weights_of_one_process(false);
}

#[test]
fn every_cluster_size_gives_the_weights_of_one_process_when_recomputing() {
    every_cluster_size_gives_the_weights_of_one_process(true);
}

/// Ranks on one machine read an image folder through one image cache: two ranks starting on an
/// empty cache leave one entry per folder (the training and the test images) and nothing else,
/// and train to the weights and figures of one process that decodes the folders into memory.
#[test]
fn ranks_share_the_image_cache_and_train_as_one_process() {
    use glowflow::data::source::DataSource;
    let (root, _) = setup("mpi-folders", false);
    for (folder, n) in [("train", 40u32), ("test", 12)] {
        std::fs::create_dir_all(root.join(folder)).expect("folder");
        for i in 0..n {
            image::GrayImage::from_fn(8, 8, |x, y| {
                image::Luma([((x * 31 + y * 7 + i * 13) % 256) as u8])
            })
            .save(root.join(folder).join(format!("{i:02}.png")))
            .expect("save");
        }
    }
    let config = root.join("folders.json");
    let mut train =
        glowflow::train::config::TrainConfig::load(&root.join("train.json")).expect("config");
    train.data = DataSource::Folder {
        train: root.join("train"),
        test: root.join("test"),
        skip_bad_images: false,
        random_crop_from: None,
    };
    train.save(&config).expect("write the config");
    ranks_through_one_cache_train_as_one_process(&root, &config, "1x8x8");
}

/// Ranks read the downsampled ImageNet's archives through one image cache as they read a
/// folder ([`ranks_share_the_image_cache_and_train_as_one_process`]): one entry per split, and
/// the weights and figures of one process that reads the archives into memory.
#[test]
fn ranks_share_the_archives_cache_and_train_as_one_process() {
    use glowflow::data::source::DataSource;
    let (root, _) = setup("mpi-archives", false);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downsampled-imagenet");
    for name in [
        "Imagenet8_train_npz/train_data_batch_1.npz",
        "Imagenet8_train_npz/train_data_batch_2.npz",
        "Imagenet8_val_npz/val_data.npz",
    ] {
        let to = root.join("archives").join(name);
        std::fs::create_dir_all(to.parent().expect("folder")).expect("folder");
        std::fs::copy(fixture.join(name), to).expect("copy");
    }
    let config = root.join("archives.json");
    let mut train =
        glowflow::train::config::TrainConfig::load(&root.join("train.json")).expect("config");
    train.data = DataSource::DownsampledImagenet {
        dir: root.join("archives"),
    };
    // The fixture's 5 training images and 2 test images: 2 shards of 2, evaluation of both.
    (train.batch_size, train.batch_shards, train.init_images) = (4, 2, 4);
    (train.eval_images, train.eval_batch_size) = (2, 2);
    train.save(&config).expect("write the config");
    ranks_through_one_cache_train_as_one_process(&root.join("archives"), &config, "3x8x8");
}

/// Trains the run of `config` on the data at `data` (images of shape `image`) on one process
/// that reads it into memory (`GLOWFLOW_IMAGE_CACHE=off`) and on two ranks starting on an empty
/// image cache; asserts that the ranks left one entry per split (the training and the test
/// images) and nothing else, and ended with the one process's weights and figures.
fn ranks_through_one_cache_train_as_one_process(data: &Path, config: &Path, image: &str) {
    use glowflow::data::image_cache::CACHE_ENV;
    let root = config.parent().expect("the config's folder");
    let cache = root.join("cache");
    let run = |processes: usize, name: &str, cache: &Path| {
        let out = root.join(name);
        let mut args = new_run(data, config, &out, "6");
        let at = args.iter().position(|a| *a == "--image").expect("--image") + 1;
        args[at] = image;
        let mut command = glowflow_command_on(processes);
        command.env(CACHE_ENV, cache).arg("train");
        succeeded(command.args(args));
    };
    run(1, "one", Path::new("off"));
    run(2, "two", &cache);
    let entries = cache_files(&cache);
    assert!(
        entries.len() == 2 && entries.iter().all(|e| e.ends_with(".images")),
        "{entries:?}"
    );
    assert_eq!(outcome(&root.join("two")), outcome(&root.join("one")));
}

/// Asserts a launch failed with a message containing `expected` and wrote nothing: not even
/// the run directory.
fn refused(out: Output, run: &Path, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the launch should fail: {stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!run.exists(), "nothing written before the error");
}

#[test]
fn a_rank_count_that_does_not_divide_the_shards_is_refused_before_training() {
    let (root, config) = setup("mpi-divide", false);
    let run = root.join("run");
    let mut args = new_run(&root, &config, &run, "6");
    args.extend(["--batch-shards", "3"]);
    refused(train(2, &args), &run, "3 gradient shards");
}

/// Data that cannot be read stops every rank after the launch checks, and the new run's
/// directories (two levels here), made for the check that the ranks share them, are gone.
#[test]
fn a_launch_on_missing_data_leaves_no_run_directory() {
    let (root, config) = setup("mpi-no-data", false);
    let run = root.join("new/run");
    let nowhere = root.join("nowhere");
    let mut args = new_run(&root, &config, &run, "6");
    let data = args.iter().position(|a| *a == "--data").expect("--data") + 1;
    args[data] = nowhere.to_str().expect("utf-8");
    refused(train(2, &args), &root.join("new"), "nowhere");
}

/// `mpirun` running `first` as rank 0 and `second` as rank 1 (MPMD), each `glowflow train`.
fn two_programs(first: (&Path, &[&str]), second: (&Path, &[&str])) -> Output {
    two_commands("train", first, second)
}

/// `mpirun` running `first` as rank 0 and `second` as rank 1 (MPMD), each `glowflow COMMAND`.
fn two_commands(command_name: &str, first: (&Path, &[&str]), second: (&Path, &[&str])) -> Output {
    let mut command = mpirun(1);
    command.arg(first.0).arg(command_name).args(first.1);
    command
        .args([":", "-np", "1"])
        .arg(second.0)
        .arg(command_name)
        .args(second.1);
    command.output().expect("mpirun runs")
}

#[test]
fn evaluation_on_any_cluster_size_prints_the_figures_of_one_process() {
    // A class-conditional run with a classifier head (its evaluation adds the marginal
    // bits/dim, the Bayes error and the head's figures), evaluated in 4 batches of 4: rank 0 of 3
    // takes two of them.
    let (root, config) = setup("mpi-eval", false);
    let run = root.join("run");
    let mut args = new_run(&root, &config, &run, "3");
    args.extend(["--n-classes", "10", "--class-head", "true"]);
    trains(1, &args);
    let model = ["--model", run.to_str().expect("utf-8")];
    let one = succeeds_on(1, "eval", &model);
    assert!(
        one.contains("16 images")
            && one.contains("classification error")
            && one.contains("classifier head"),
        "{one}"
    );
    for processes in [2, 3] {
        let many = succeeds_on(processes, "eval", &model);
        assert_eq!(many, one, "{processes} ranks print what one process does");
    }

    // Ranks evaluating different weights are refused (rank 1's model: one more step).
    let other = root.join("other");
    let mut other_args = new_run(&root, &config, &other, "4");
    other_args.extend(["--n-classes", "10"]);
    trains(1, &other_args);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_glowflow"));
    let other_model = ["--model", other.to_str().expect("utf-8")];
    let out = two_commands("eval", (&binary, &model), (&binary, &other_model));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("rank(s) 1 run with a different model"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn ranks_with_different_configs_binaries_or_run_directories_are_refused_before_training() {
    let (root, config) = setup("mpi-mismatch", false);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_glowflow"));
    let run = root.join("run");
    let args = new_run(&root, &config, &run, "6");

    let mut other_lr = args.clone();
    other_lr.extend(["--lr", "0.0007"]);
    refused(
        two_programs((&binary, &args), (&binary, &other_lr)),
        &run,
        "different model and training config",
    );

    // A different build: the same program with a byte appended (it still runs).
    let copy = root.join("glowflow-other-build");
    let mut bytes = std::fs::read(&binary).expect("read the binary");
    bytes.push(0);
    std::fs::write(&copy, bytes).expect("write the copy");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make it executable");
    refused(
        two_programs((&binary, &args), (&copy, &args)),
        &run,
        "different glowflow binary",
    );

    // Rank 1 given another directory stands for a machine that does not see rank 0's.
    let elsewhere = root.join("elsewhere");
    let other_dir = new_run(&root, &config, &elsewhere, "6");
    refused(
        two_programs((&binary, &args), (&binary, &other_dir)),
        &run,
        "is not shared: rank(s) 1",
    );
}

/// The pid of rank `rank` among the processes `mpirun` (pid `parent`) started.
fn rank_pid(parent: u32, rank: usize) -> Option<libc::pid_t> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // "pid (name) state ppid ...": the name may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
        if environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Starts a long two-rank run, waits until it has trained a few steps, sends `signal` to rank 1
/// and returns mpirun's output and how long it took to end after the signal.
fn signal_rank_one(root: &Path, config: &Path, run: &Path, signal: i32) -> (Output, Duration) {
    let mut args = new_run(root, config, run, "100000");
    args.extend(["--rank-timeout", "5", "--eval-every", "0"]);
    let child = mpirun(2)
        .arg(env!("CARGO_BIN_EXE_glowflow"))
        .arg("train")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts");
    let metrics = run.join("metrics.csv");
    let started = Instant::now();
    while std::fs::read_to_string(&metrics)
        .map(|m| m.lines().count())
        .unwrap_or(0)
        < 8
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rank_pid(child.id(), 1).expect("rank 1 is a child of mpirun");
    // SAFETY: signals a process this test's mpirun started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal sent");
    let signalled = Instant::now();
    let out = child.wait_with_output().expect("mpirun ends");
    let took = signalled.elapsed();
    // SAFETY: a stopped rank that mpirun did not end is killed (no-op if it is gone).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    (out, took)
}

#[test]
fn a_killed_rank_stops_the_others_and_the_run_resumes_on_another_cluster_size() {
    let (root, config) = setup("mpi-kill", false);
    let run = root.join("run");
    let (out, took) = signal_rank_one(&root, &config, &run, libc::SIGKILL);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        took < Duration::from_secs(30),
        "the job ended {took:?} after the kill"
    );
    assert!(
        stderr.contains("rank 1"),
        "the dead rank is named: {stderr}"
    );
    // mpirun may return while rank 0, stopped by it, is still writing its last checkpoint and
    // holds the run's lock; a resume would rightly be refused until it has exited.
    let holder: Option<i32> = std::fs::read_to_string(run.join("train.lock"))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    if let Some(pid) = holder {
        let started = std::time::Instant::now();
        // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "rank 0 did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let last = list_checkpoints(&run)
        .expect("list")
        .pop()
        .expect("a checkpoint");
    let step: u64 = last
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| {
            n.trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .expect("a step in the checkpoint's name");
    let target = (step + 2).to_string();
    let stdout = trains(
        1,
        &["--resume", run.to_str().expect("utf-8"), "--steps", &target],
    );
    assert!(stdout.contains(&format!("{target} steps")), "{stdout}");
}

#[test]
fn a_hung_rank_is_named_by_the_others_within_the_timeout() {
    let (root, config) = setup("mpi-hang", false);
    let run = root.join("run");
    let (out, took) = signal_rank_one(&root, &config, &run, libc::SIGSTOP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("rank 1 did not answer for 5 s"),
        "the hung rank is named: {stderr}"
    );
    assert!(
        took < Duration::from_secs(30),
        "the job ended {took:?} after the hang"
    );
}

//! The faults of real machines during a training run, on the `glowflow` binary: killed at random
//! instants (SIGKILL, during checkpoint writes too), a full disk (a file size limit), and a
//! second writer. After each fault the run's files are readable, the previous checkpoint is
//! intact, and the resumed run ends bit-identical to a run that never stopped.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use common::{scratch_dir, write_idx_dataset, TINY_RUN};
use glowflow::train::checkpoint::{list_checkpoints, load_checkpoint};
use rand::{Rng, SeedableRng};

/// Steps of every run here; a checkpoint after each (the most checkpoint writes to interrupt).
const STEPS: u64 = 16;

/// `glowflow train` arguments: a new run in `run` (or its resumption) to `steps` steps, with a
/// checkpoint after every step.
fn train_args(data: &Path, run: &Path, resume: bool, steps: u64) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("utf-8").to_string();
    let mut args = vec!["train".to_string()];
    if resume {
        args.extend(["--resume".into(), path(run)]);
    } else {
        args.extend(["--data".into(), path(data), "--out".into(), path(run)]);
        args.extend(TINY_RUN.iter().map(|a| a.to_string()));
    }
    args.extend(["--steps".into(), steps.to_string()]);
    args.extend(["--checkpoint-every".into(), "1".into()]);
    args
}

fn glowflow_command(args: &[String]) -> Command {
    let mut command = common::glowflow_command();
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run_to_end(args: &[String]) -> Output {
    let out = glowflow_command(args).output().expect("glowflow runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether `run` holds a checkpoint to resume from.
fn resumable(run: &Path) -> bool {
    !list_checkpoints(run).expect("listable").is_empty()
}

/// The step of the newest checkpoint of `run`.
fn latest_step(run: &Path) -> u64 {
    list_checkpoints(run)
        .expect("listable")
        .pop()
        .expect("a checkpoint")
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("step-"))
        .and_then(|n| n.parse().ok())
        .expect("a step number")
}

/// Every tensor of a safetensors file, by name, as raw little-endian bytes.
fn tensors(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    file.iter()
        .map(|(name, view)| (name.to_string(), view.data().to_vec()))
        .collect()
}

/// What a run computed, and nothing it merely measured: every tensor of the final checkpoint
/// and of the run's model, the checkpoint's counters without the elapsed time, and every metrics
/// row without its speed column.
fn outcome(run: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let last = list_checkpoints(run)
        .expect("listable")
        .pop()
        .expect("a checkpoint");
    let files =
        ["model", "ema", "moment1", "moment2"].map(|f| last.join(format!("{f}.safetensors")));
    for file in files.iter().chain([&run.join("model.safetensors")]) {
        for (name, bytes) in tensors(file) {
            let key = format!(
                "{}:{name}",
                file.strip_prefix(run).expect("inside").display()
            );
            found.insert(key, format!("{bytes:?}"));
        }
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(last.join("state.json")).expect("state.json"),
    )
    .expect("json");
    let mut state = state;
    state["training"]["elapsed_seconds"] = serde_json::Value::Null;
    found.insert("state.json".into(), state.to_string());
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    for (i, line) in metrics.lines().enumerate() {
        let computed: Vec<&str> = line.split(',').take(5).collect();
        found.insert(format!("metrics.csv:{i:04}"), computed.join(","));
    }
    found
}

/// Asserts that two outcomes are the same, naming the entries that differ.
fn assert_same_outcome(
    got: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
    what: &str,
) {
    let differing: Vec<&String> = want
        .keys()
        .chain(got.keys())
        .filter(|key| got.get(*key) != want.get(*key))
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: differs from the uninterrupted run in {differing:?}; got {:?}, want {:?}",
        differing.first().map(|k| got.get(*k)),
        differing.first().map(|k| want.get(*k)),
    );
}

/// Reads everything a later command would read from `run`: every complete checkpoint, in full,
/// and the run's model. A half-written file among them fails the test.
fn assert_readable(run: &Path) {
    let config = glowflow::GlowConfig::load(&run.join("config.json")).expect("config.json");
    let device = Device::flex();
    for checkpoint in list_checkpoints(run).expect("listable") {
        load_checkpoint(&checkpoint, &config, &device, &device.clone().autodiff())
            .unwrap_or_else(|e| panic!("a listed checkpoint does not load: {e}"));
    }
    if run.join("model.safetensors").exists() {
        glowflow::io::model_dir::load_model(run, &device).expect("the run's model loads");
    }
}

/// The hidden temporaries (`.NAME.tmp-PID`) in `run` and its checkpoints directory.
fn temporaries(run: &Path) -> Vec<PathBuf> {
    [run.to_path_buf(), run.join("checkpoints")]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".tmp-"))
        })
        .collect()
}

fn kill(child: &mut Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: sends SIGKILL to the child this test spawned and has not yet waited for.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    child.wait().expect("wait for the killed child");
}

/// Waits until a checkpoint temporary appears in `run` (a checkpoint write under way), for at
/// most `limit`; returns whether one did.
fn wait_for_checkpoint_write(child: &mut Child, run: &Path, limit: Duration) -> bool {
    let checkpoints = run.join("checkpoints");
    let started = Instant::now();
    while started.elapsed() < limit {
        let writing = std::fs::read_dir(&checkpoints).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        });
        if writing {
            return true;
        }
        if child.try_wait().expect("child status").is_some() {
            return false;
        }
        std::thread::yield_now();
    }
    false
}

/// Writes the synthetic dataset into `dir` and trains `dir/reference` for [`STEPS`] steps
/// without interruption: its [`outcome`] and how long it took.
fn uninterrupted_run(dir: &Path) -> (BTreeMap<String, String>, Duration) {
    write_idx_dataset(dir, 48, 16, 8);
    let reference = dir.join("reference");
    let started = Instant::now();
    run_to_end(&train_args(dir, &reference, false, STEPS));
    (outcome(&reference), started.elapsed())
}

#[test]
fn a_run_killed_at_random_instants_resumes_to_the_uninterrupted_result() {
    let dir = scratch_dir("kill-campaign");
    let (want, whole_run) = uninterrupted_run(&dir);

    // Half the kills at a uniformly random instant of a run's length, half the moment a
    // checkpoint write is seen under way; each killed run is checked, then resumed, until it
    // completes. New runs are started until the campaign has its kills: 40, or
    // GLOWFLOW_KILLS for a longer campaign.
    let kills_wanted: usize = std::env::var("GLOWFLOW_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let (mut kills, mut mid_write, mut completed_runs) = (0, 0, 0);
    let campaign = Instant::now();
    while kills < kills_wanted {
        let run = dir.join(format!("killed-{completed_runs}"));
        loop {
            let mut child = glowflow_command(&train_args(&dir, &run, resumable(&run), STEPS))
                .spawn()
                .expect("spawn");
            let finished = if kills % 2 == 0 {
                let delay = whole_run.mul_f64(rng.random_range(0.0..1.0));
                let until = Instant::now() + delay;
                while Instant::now() < until && child.try_wait().expect("status").is_none() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                child.try_wait().expect("status").is_some()
            } else {
                !wait_for_checkpoint_write(&mut child, &run, whole_run * 2)
            };
            if finished || kills >= kills_wanted {
                let out = child.wait_with_output().expect("wait");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                if list_checkpoints(&run)
                    .expect("listable")
                    .last()
                    .is_some_and(|c| c.ends_with(format!("step-{STEPS:08}")))
                {
                    break;
                }
                continue;
            }
            kill(&mut child);
            kills += 1;
            if temporaries(&run)
                .iter()
                .any(|p| p.starts_with(run.join("checkpoints")))
            {
                mid_write += 1;
            }
            if run.join("config.json").exists() {
                assert_readable(&run);
            }
        }
        assert!(
            temporaries(&run).is_empty(),
            "a completed run leaves no temporaries: {:?}",
            temporaries(&run)
        );
        assert_same_outcome(&outcome(&run), &want, &format!("run {}", run.display()));
        completed_runs += 1;
    }
    println!(
        "kill campaign: {kills} SIGKILLs ({mid_write} while a checkpoint was written or removed) over \
         {completed_runs} runs of {STEPS} steps, {:.1} s; every run ended bit-identical to the \
         uninterrupted one",
        campaign.elapsed().as_secs_f64()
    );
    assert!(mid_write > 0, "no kill landed during a checkpoint write");
}

/// A command for `args` whose files may not grow beyond `limit` bytes (RLIMIT_FSIZE, with
/// SIGXFSZ ignored, so that a write past it fails with EFBIG as on a full disk).
fn with_file_size_limit(args: &[String], limit: u64) -> Command {
    let mut command = glowflow_command(args);
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Runs `command`, which must fail cleanly with a message naming a file and the fix for a full
/// disk; returns its stderr.
fn fails_for_lack_of_space(mut command: Command, what: &str) -> String {
    let out = command.output().expect("glowflow runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: succeeded despite the limit");
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
    assert!(
        stderr.contains("free space and run again"),
        "{what}: {stderr}"
    );
    stderr
}

#[test]
fn a_full_disk_keeps_the_previous_checkpoint_and_the_run_resumes_once_there_is_space() {
    let dir = scratch_dir("disk-full");
    let (want, _) = uninterrupted_run(&dir);

    // The run is stopped (SIGTERM) once it has a few checkpoints, so it has not ended.
    let run = dir.join("run");
    let mut child = glowflow_command(&train_args(&dir, &run, false, STEPS))
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while list_checkpoints(&run).expect("listable").len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: sends SIGTERM to the child this test spawned and has not yet waited for.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(
        child.wait().expect("wait").success(),
        "a stopped run exits cleanly"
    );
    let stopped_at = latest_step(&run);
    assert!(stopped_at < STEPS, "stopped before the end");
    let before = list_checkpoints(&run)
        .expect("listable")
        .pop()
        .expect("checkpoint");
    let weights = tensors(&before.join("model.safetensors"));
    let weights_size = std::fs::metadata(before.join("model.safetensors"))
        .expect("size")
        .len();

    // A checkpoint file does not fit: the run stops with the error, the checkpoint it had is
    // still the newest, unchanged, and no temporary is left.
    let stderr = fails_for_lack_of_space(
        with_file_size_limit(&train_args(&dir, &run, true, STEPS), weights_size / 2),
        "checkpoint",
    );
    assert!(stderr.contains("model.safetensors"), "{stderr}");
    let newest = list_checkpoints(&run)
        .expect("listable")
        .pop()
        .expect("checkpoint");
    assert_eq!(
        newest, before,
        "the previous checkpoint is still the newest"
    );
    assert_eq!(tensors(&newest.join("model.safetensors")), weights);
    assert_readable(&run);
    assert!(temporaries(&run).is_empty(), "{:?}", temporaries(&run));

    // The metrics file cannot grow by another row: the run stops at the next row, which is
    // written before the next checkpoint. On resuming, the file keeps its rows up to the step of
    // the checkpoint.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let kept_size: usize = metrics
        .lines()
        .filter(|line| {
            let step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
            step.is_none_or(|s| s <= stopped_at)
        })
        .map(|line| line.len() + 1)
        .sum();
    let args = train_args(&dir, &run, true, STEPS);
    let limit = kept_size as u64 + 10;
    let stderr = fails_for_lack_of_space(with_file_size_limit(&args, limit), "metrics");
    assert!(stderr.contains("metrics.csv"), "{stderr}");
    assert_readable(&run);

    // With space again, the run resumes and ends exactly as the uninterrupted one.
    run_to_end(&train_args(&dir, &run, true, STEPS));
    assert_same_outcome(&outcome(&run), &want, "the run resumed after a full disk");

    // A sample grid that does not fit leaves the previous grid as it was.
    let grid = dir.join("grid.png");
    let sample = |limit: Option<u64>| {
        let args: Vec<String> = ["sample", "--model", run.to_str().expect("utf-8")]
            .into_iter()
            .chain(["--out", grid.to_str().expect("utf-8"), "--n", "4"])
            .map(String::from)
            .collect();
        match limit {
            Some(limit) => with_file_size_limit(&args, limit),
            None => glowflow_command(&args),
        }
    };
    assert!(sample(None).output().expect("runs").status.success());
    let previous = std::fs::read(&grid).expect("grid");
    let stderr = fails_for_lack_of_space(sample(Some(64)), "sample grid");
    assert!(stderr.contains("grid.png"), "{stderr}");
    assert_eq!(
        std::fs::read(&grid).expect("grid"),
        previous,
        "the previous grid is intact"
    );
    assert!(std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .all(|e| !e.file_name().to_string_lossy().contains(".tmp-")));
}

#[test]
fn a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over() {
    let dir = scratch_dir("two-writers");
    write_idx_dataset(&dir, 48, 16, 8);
    let run = dir.join("run");
    let mut first = glowflow_command(&train_args(&dir, &run, false, 100_000))
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while !resumable(&run) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let holder = format!("in use by process {}", first.id());
    for (what, args) in [
        ("a resumption", train_args(&dir, &run, true, 10)),
        ("a new run into it", train_args(&dir, &run, false, 10)),
    ] {
        let out = glowflow_command(&args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what} of a run in use must be refused"
        );
        assert!(
            stderr.contains(&holder) && stderr.contains("train.lock"),
            "{what}: {stderr}"
        );
    }
    // Nor does `glowflow new` overwrite the run's model.
    let out = glowflow_command(
        &[
            "new",
            "--out",
            run.to_str().expect("utf-8"),
            "--image",
            "1x8x8",
            "--levels",
            "2",
        ]
        .map(String::from),
    )
    .output()
    .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("already holds a model"),
        "{stderr}"
    );
    kill(&mut first);

    // The killed holder's lock file still names it, and it left a half-written checkpoint and
    // file behind (made here, so that they surely exist): the next writer takes over the lock
    // and removes them.
    let lock = run.join("train.lock");
    assert_eq!(
        std::fs::read_to_string(&lock).expect("lock file").trim(),
        first.id().to_string()
    );
    let dead = first.id();
    let stale_dir = run.join(format!("checkpoints/.step-00099999.tmp-{dead}"));
    std::fs::create_dir_all(&stale_dir).expect("stale checkpoint");
    std::fs::write(stale_dir.join("model.safetensors"), b"half").expect("half a file");
    let stale_file = run.join(format!(".model.safetensors.tmp-{dead}"));
    std::fs::write(&stale_file, b"half").expect("half a file");
    let reached = latest_step(&run);
    let out = run_to_end(&train_args(&dir, &run, true, reached + 2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("left by process {dead}")),
        "{stderr}"
    );
    assert!(!stale_dir.exists() && !stale_file.exists(), "{stderr}");
    assert!(
        stderr.contains(&stale_dir.display().to_string()),
        "{stderr}"
    );
}

//! Checkpoints: everything a run needs to continue exactly where it stopped.
//!
//! ```text
//! RUN/checkpoints/step-00001500/
//!     model.safetensors      training weights
//!     ema.safetensors        Polyak-averaged weights
//!     moment1.safetensors    optimiser first moments   } same layout as the weights
//!     moment2.safetensors    optimiser second moments  }
//!     state.json             step, optimiser step, learning-rate scale, counters
//! ```
//!
//! A checkpoint is written into a hidden temporary directory, every file and the directory
//! fsynced, then renamed into place and the parent fsynced, so a crash leaves either the old set
//! of checkpoints or the new one (and a temporary that the next writer removes,
//! [`crate::io::run_lock`]). The data
//! order and noise are functions of `(seed, step)`, so they need no saving.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::optimizer::OptimizerState;
use crate::error::{GlowError, Result};
use crate::io::atomic::{sync_dir, temporary_name, write_atomic};
use crate::io::model_dir::{load_weights, save_model, save_weights};
use crate::model::config::GlowConfig;
use crate::model::glow::Glow;
use crate::model::params::{flat_params, with_flat_params};

/// Counters and schedule state of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingState {
    /// Steps completed (applied or skipped).
    pub step: u64,
    /// Multiplier of the learning rate (halved at each roll-back).
    pub lr_scale: f64,
    /// Steps skipped because the loss or a gradient was not finite.
    pub skipped_steps: u64,
    /// Roll-backs to an earlier checkpoint so far.
    pub rollbacks: u32,
    /// Seconds spent training so far.
    pub elapsed_seconds: f64,
}

/// The whole state of a run at one step.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Training weights (on the autodiff device while training).
    pub model: Glow,
    /// Polyak-averaged weights.
    pub ema: Glow,
    /// Optimiser moments and step count.
    pub optimizer: OptimizerState,
    /// Counters.
    pub state: TrainingState,
}

const STATE_FILE: &str = "state.json";

/// `RUN/checkpoints`.
pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

fn step_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn step_dir(run: &Path, step: u64) -> PathBuf {
    checkpoints_dir(run).join(step_name(step))
}

/// Writes `checkpoint` under `run` atomically, then deletes all but the newest `keep`.
pub fn save_checkpoint(run: &Path, checkpoint: &Checkpoint, keep: usize) -> Result<PathBuf> {
    let parent = checkpoints_dir(run);
    fs::create_dir_all(&parent).map_err(|e| GlowError::io(&parent, e))?;
    let target = step_dir(run, checkpoint.state.step);
    let tmp = parent.join(temporary_name(&step_name(checkpoint.state.step)));
    let _ = fs::remove_dir_all(&tmp);
    let written =
        write_checkpoint_files(&tmp, checkpoint).and_then(|()| put_in_place(&tmp, &target));
    if let Err(e) = written {
        // A failed write (a full disk, say) leaves nothing behind; the checkpoints are as before.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_dir(&parent).map_err(|e| GlowError::io(&parent, e))?;
    for old in list_checkpoints(run)?.into_iter().rev().skip(keep) {
        remove_checkpoint(&old)?;
    }
    Ok(target)
}

/// Removes the checkpoint directory `dir`: first renamed to a temporary (atomically, so it is
/// never listed half-deleted), then deleted. A crash in between leaves a temporary that the next
/// writer removes.
fn remove_checkpoint(dir: &Path) -> Result<()> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let doomed = dir.with_file_name(temporary_name(&name.unwrap_or_default()));
    fs::rename(dir, &doomed).map_err(|e| GlowError::io(dir, e))?;
    fs::remove_dir_all(&doomed).map_err(|e| GlowError::io(&doomed, e))
}

/// Writes every file of `checkpoint` into the new directory `tmp`, each fsynced, and fsyncs it.
fn write_checkpoint_files(tmp: &Path, checkpoint: &Checkpoint) -> Result<()> {
    fs::create_dir_all(tmp).map_err(|e| GlowError::io(tmp, e))?;
    save_weights(&checkpoint.model.valid(), &tmp.join("model.safetensors"))?;
    save_weights(&checkpoint.ema, &tmp.join("ema.safetensors"))?;
    let moments = |values: &[burn::tensor::Tensor<1>]| {
        with_flat_params(
            checkpoint.ema.clone(),
            values.iter().cloned().map(Some).collect(),
        )
    };
    save_weights(
        &moments(&checkpoint.optimizer.first),
        &tmp.join("moment1.safetensors"),
    )?;
    save_weights(
        &moments(&checkpoint.optimizer.second),
        &tmp.join("moment2.safetensors"),
    )?;
    let state = OnDiskState {
        training: checkpoint.state.clone(),
        optimizer_step: checkpoint.optimizer.step,
    };
    let json = serde_json::to_string_pretty(&state).expect("state serialises");
    write_atomic(&tmp.join(STATE_FILE), json.as_bytes())?;
    sync_dir(tmp).map_err(|e| GlowError::io(tmp, e))?;
    Ok(())
}

/// Renames the complete checkpoint directory `tmp` to `target`. A checkpoint of the same step
/// already there (a step saved again, after a stop or a roll-back) is swapped out in one atomic
/// exchange and then removed, so no instant leaves the step without a complete checkpoint.
fn put_in_place(tmp: &Path, target: &Path) -> Result<()> {
    if !target.exists() {
        return fs::rename(tmp, target).map_err(|e| GlowError::io(target, e));
    }
    let c_path = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| GlowError::file(p, "a path with a NUL byte cannot be renamed"))
    };
    let (from, to) = (c_path(tmp)?, c_path(target)?);
    // SAFETY: both are valid NUL-terminated paths; renameat2 only reads them.
    let exchanged = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if exchanged != 0 {
        return Err(GlowError::io(target, std::io::Error::last_os_error()));
    }
    fs::remove_dir_all(tmp).map_err(|e| GlowError::io(tmp, e))
}

/// Writes `checkpoint` (keeping the newest `keep`) and its EMA weights as the run's model, the
/// model directory that `glowflow sample` and `glowflow eval` read.
pub fn save_checkpoint_and_model(run: &Path, checkpoint: &Checkpoint, keep: usize) -> Result<()> {
    save_checkpoint(run, checkpoint, keep)?;
    save_model(&checkpoint.ema, run)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskState {
    training: TrainingState,
    optimizer_step: u64,
}

/// The complete checkpoints of `run`, oldest first.
pub fn list_checkpoints(run: &Path) -> Result<Vec<PathBuf>> {
    let parent = checkpoints_dir(run);
    if !parent.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<PathBuf> = fs::read_dir(&parent)
        .map_err(|e| GlowError::io(&parent, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
                && p.join(STATE_FILE).is_file()
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Loads the checkpoint in `dir`: training weights on `train_device`, the rest on `device`.
pub fn load_checkpoint(
    dir: &Path,
    config: &GlowConfig,
    device: &Device,
    train_device: &Device,
) -> Result<Checkpoint> {
    let state_path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&state_path).map_err(|e| GlowError::io(&state_path, e))?;
    let state: OnDiskState = serde_json::from_str(&text).map_err(|e| {
        GlowError::file(&state_path, format!("not a glowflow checkpoint state: {e}"))
    })?;
    let model = load_weights(config, &dir.join("model.safetensors"), train_device)?;
    let ema = load_weights(config, &dir.join("ema.safetensors"), device)?;
    let moment = |name: &str| -> Result<Vec<burn::tensor::Tensor<1>>> {
        Ok(flat_params(&load_weights(config, &dir.join(name), device)?))
    };
    let optimizer = OptimizerState {
        first: moment("moment1.safetensors")?,
        second: moment("moment2.safetensors")?,
        step: state.optimizer_step,
    };
    Ok(Checkpoint {
        model,
        ema,
        optimizer,
        state: state.training,
    })
}

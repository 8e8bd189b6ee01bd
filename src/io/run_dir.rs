//! The files of a training run directory, beside the model directory it also is:
//!
//! ```text
//! RUN/config.json         the architecture (model_dir::CONFIG_FILE)
//! RUN/model.safetensors   the Polyak-averaged weights (model_dir::WEIGHTS_FILE)
//! RUN/train.json          the training config
//! RUN/metrics.csv         one row per logged step
//! RUN/samples/            sample grids
//! RUN/checkpoints/        what an exact resume needs (train::checkpoint)
//! ```
//!
//! The training config's type belongs to the trainer; this module only reads and writes it as
//! JSON, so any serde type round-trips through it.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::atomic::write_atomic;
use super::model_dir::CONFIG_FILE;
use crate::error::{GlowError, Result};
use crate::model::config::GlowConfig;

/// The training config file inside a run directory.
pub const TRAIN_CONFIG_FILE: &str = "train.json";

/// `RUN/train.json`.
pub fn train_config_path(run: &Path) -> PathBuf {
    run.join(TRAIN_CONFIG_FILE)
}

/// `RUN/samples`.
pub fn samples_dir(run: &Path) -> PathBuf {
    run.join("samples")
}

/// Reads the JSON file `path` as a `T`; an unreadable file is an I/O error and content that is
/// not a `what` is an error, each naming the file.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| GlowError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| GlowError::file(path, format!("not a {what}: {e}")))
}

/// Writes `value` as pretty-printed JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| GlowError::file(path, format!("cannot be written as JSON: {e}")))?;
    write_atomic(path, json.as_bytes())
}

/// Creates the run directory `run` (if needed) and writes its architecture and training config,
/// each atomically.
pub fn write_run_configs(run: &Path, model: &GlowConfig, train: &impl Serialize) -> Result<()> {
    std::fs::create_dir_all(run).map_err(|e| GlowError::io(run, e))?;
    write_json(&train_config_path(run), train)?;
    write_atomic(&run.join(CONFIG_FILE), model.to_json().as_bytes())
}

/// Whether `dir` holds a training config (a run directory, as opposed to a bare model
/// directory); a directory that cannot be inspected is an I/O error naming the file.
pub fn has_train_config(dir: &Path) -> Result<bool> {
    let path = train_config_path(dir);
    path.try_exists().map_err(|e| GlowError::io(&path, e))
}

//! A saved model is a directory with `config.json` (the architecture, readable and editable) and
//! `model.safetensors` (every parameter, including each ActNorm's `initialized` flag, so a
//! reloaded model never re-runs its data-dependent initialisation).

use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;

use super::atomic::write_atomic;
use crate::error::{GlowError, Result};
use crate::model::config::GlowConfig;
use crate::model::glow::Glow;

/// The config file inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Paths of the two files of a model directory.
pub fn model_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(CONFIG_FILE), dir.join(WEIGHTS_FILE))
}

/// Saves `model` into `dir` (created if needed); each file is written atomically.
pub fn save_model(model: &Glow, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| GlowError::io(dir, e))?;
    let (config_path, weights_path) = model_files(dir);
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| GlowError::file(&weights_path, format!("could not serialise weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| GlowError::file(&weights_path, format!("could not serialise weights: {e}")))?;
    write_atomic(&weights_path, &bytes)?;
    write_atomic(&config_path, model.config().to_json().as_bytes())
}

/// Loads the model saved in `dir` onto `device`. A weights file that is truncated, corrupt or
/// from another architecture is an error that names it.
pub fn load_model(dir: &Path, device: &Device) -> Result<Glow> {
    let (config_path, weights_path) = model_files(dir);
    let config = GlowConfig::load(&config_path)?;
    let bytes = std::fs::read(&weights_path).map_err(|e| GlowError::io(&weights_path, e))?;
    let mut model = config.init(device)?;
    // Mismatches are collected and reported below, in one message that names the config.
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(false)
        .allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| {
        GlowError::file(
            &weights_path,
            format!("not a readable safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let mut problems = Vec::new();
        if !result.errors.is_empty() {
            let errors: Vec<String> = result.errors.iter().map(|e| format!("{e:?}")).collect();
            problems.push(format!(
                "{} tensors do not fit: {}",
                errors.len(),
                first_few(&errors)
            ));
        }
        if !result.missing.is_empty() {
            let names: Vec<&String> = result.missing.iter().map(|(path, _)| path).collect();
            problems.push(format!(
                "{} tensors missing: {}",
                names.len(),
                first_few(&names)
            ));
        }
        if !result.unused.is_empty() {
            problems.push(format!(
                "{} tensors the model does not have: {}",
                result.unused.len(),
                first_few(&result.unused)
            ));
        }
        return Err(GlowError::file(
            &weights_path,
            format!(
                "the weights do not match the architecture in {} ({}); was this file saved \
                 from a model with another config?",
                config_path.display(),
                problems.join("; ")
            ),
        ));
    }
    Ok(model)
}

/// The first three items, comma-separated, with "..." when there are more.
fn first_few<T: std::fmt::Display>(items: &[T]) -> String {
    let mut shown: Vec<String> = items.iter().take(3).map(|i| i.to_string()).collect();
    if items.len() > 3 {
        shown.push("...".into());
    }
    shown.join(", ")
}

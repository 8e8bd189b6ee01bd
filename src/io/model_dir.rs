//! A saved model is a directory with `config.json` (the architecture, readable and editable) and
//! `model.safetensors` (every parameter, including each ActNorm's `initialized` flag, so a
//! reloaded model never re-runs its data-dependent initialisation). Weight files of the same
//! layout also hold training state (EMA weights, optimiser moments) in checkpoints.

use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;

use super::atomic::write_atomic;
use super::safetensors_header::with_sorted_header;
use crate::error::{GlowError, Result};
use crate::model::config::GlowConfig;
use crate::model::glow::Glow;

/// The config file inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Saves `model` into `dir` (created if needed); each file is written atomically.
pub fn save_model(model: &Glow, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| GlowError::io(dir, e))?;
    save_weights(model, &dir.join(WEIGHTS_FILE))?;
    write_atomic(&dir.join(CONFIG_FILE), model.config().to_json().as_bytes())
}

/// Loads the model saved in `dir` onto `device`. A weights file that is truncated, corrupt or
/// from another architecture is an error that names it.
pub fn load_model(dir: &Path, device: &Device) -> Result<Glow> {
    let config = GlowConfig::load(&dir.join(CONFIG_FILE))?;
    load_weights(&config, &dir.join(WEIGHTS_FILE), device)
}

/// Writes every parameter of `model` to a safetensors file, atomically; the same weights give
/// the same bytes ([`with_sorted_header`]).
pub fn save_weights(model: &Glow, path: &Path) -> Result<()> {
    let mut store = SafetensorsStore::from_bytes(None);
    let fail = |e: &dyn std::fmt::Display| {
        GlowError::file(path, format!("could not serialise weights: {e}"))
    };
    model.save_into(&mut store).map_err(|e| fail(&e))?;
    let bytes = store.get_bytes().map_err(|e| fail(&e))?;
    write_atomic(path, &with_sorted_header(bytes))
}

/// Builds the model `config` describes on `device` and loads its parameters from `path`.
pub fn load_weights(config: &GlowConfig, path: &Path, device: &Device) -> Result<Glow> {
    let bytes = std::fs::read(path).map_err(|e| GlowError::io(path, e))?;
    load_weights_from_bytes(config, bytes, path, device)
}

/// [`load_weights`] from the bytes of a safetensors file; errors name `path` as their origin.
pub fn load_weights_from_bytes(
    config: &GlowConfig,
    bytes: Vec<u8>,
    path: &Path,
    device: &Device,
) -> Result<Glow> {
    check_finite_weights(path, &bytes)?;
    let mut model = config.init(device)?;
    // Mismatches are collected and reported below, in one message that names the config.
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(false)
        .allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| {
        GlowError::file(
            path,
            format!("not a readable safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
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
    if !problems.is_empty() {
        return Err(GlowError::file(
            path,
            format!(
                "the weights do not match the architecture ({}; config: {}x{}x{} images, L = {}, \
                 K = {}, width {}); was this file saved from a model with another config?",
                problems.join("; "),
                config.image.channels,
                config.image.height,
                config.image.width,
                config.levels,
                config.steps,
                config.width,
            ),
        ));
    }
    Ok(model)
}

/// Fails when a floating-point tensor of the safetensors file `bytes` (read from `path`) holds a
/// NaN, an infinity, or (in f64) a value beyond the range of f32, which would load as an
/// infinity on an f32 device: such a model computes NaN likelihoods and images that would be
/// presented as results. Bytes that are not a safetensors file are left to the loader's own
/// error.
fn check_finite_weights(path: &Path, bytes: &[u8]) -> Result<()> {
    let Ok(tensors) = safetensors::SafeTensors::deserialize(bytes) else {
        return Ok(());
    };
    for (name, view) in tensors.iter() {
        let data = view.data();
        let finite = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
            safetensors::Dtype::F64 => data.chunks_exact(8).all(|b| {
                let value = f64::from_le_bytes(b.try_into().expect("chunks of 8 bytes"));
                value.abs() <= f64::from(f32::MAX)
            }),
            _ => true,
        };
        if !finite {
            return Err(GlowError::file(
                path,
                format!(
                    "tensor {name} holds NaN or infinite values (or values beyond the range of \
                     f32); the file is corrupt or was saved from a diverged model: use an \
                     earlier checkpoint"
                ),
            ));
        }
    }
    Ok(())
}

/// The first three items, comma-separated, with "..." when there are more.
fn first_few<T: std::fmt::Display>(items: &[T]) -> String {
    let mut shown: Vec<String> = items.iter().take(3).map(|i| i.to_string()).collect();
    if items.len() > 3 {
        shown.push("...".into());
    }
    shown.join(", ")
}

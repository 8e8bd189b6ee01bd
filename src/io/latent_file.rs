//! Latent files: the standardised latents `ε` of every level of a batch of images, as a
//! safetensors file that numpy / PyTorch read directly.
//!
//! Tensors `level.0` ... `level.{L-1}` (`[N, C_l, H_l, W_l]`, stored in f64 so that f32 latents
//! round-trip bit for bit) and string metadata: `format = glowflow-latents`, `config` (the JSON of
//! the model that wrote them), `fingerprint` (of that model's weights, see [`model_fingerprint`])
//! and whatever the writer adds (labels, bits/dim). Attribute directions are latent files with a
//! batch of one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::Device;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::atomic::write_atomic;
use super::safetensors_header::with_sorted_header;
use crate::error::{GlowError, Result};
use crate::model::config::GlowConfig;
use crate::model::glow::{Glow, Latents};
use crate::model::params::flat_params;
use crate::tensor_ops::{from_f64, non_finite_samples, to_f64_vec};

const FORMAT: &str = "glowflow-latents";

/// A 64-bit FNV-1a hash (hex) of every parameter value of `model`: two models share it only if
/// their weights are bit-identical (at the host's f64 view of them).
pub fn model_fingerprint(model: &Glow) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for param in flat_params(model) {
        for value in to_f64_vec(param) {
            for byte in value.to_bits().to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    format!("{hash:016x}")
}

/// Writes `latents` of `model` to `path` (atomically), with `extra` metadata; the same latents
/// and metadata give the same bytes.
pub fn save_latents(
    path: &Path,
    model: &Glow,
    latents: &Latents,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let mut metadata: HashMap<String, String> = extra.clone().into_iter().collect();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("config".into(), model.config().to_json());
    metadata.insert("fingerprint".into(), model_fingerprint(model));
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = latents
        .levels
        .iter()
        .enumerate()
        .map(|(l, eps)| {
            let bytes = to_f64_vec(eps.clone())
                .into_iter()
                .flat_map(f64::to_le_bytes)
                .collect();
            (format!("level.{l}"), eps.dims().to_vec(), bytes)
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F64, shape.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| GlowError::file(path, format!("could not serialise latents: {e}")))?;
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| GlowError::file(path, format!("could not serialise latents: {e}")))?;
    write_atomic(path, &with_sorted_header(bytes))
}

/// Reads a latent file written by [`save_latents`] for `model`: its latents (on `device`) and
/// metadata. A file that is not a latent file, is truncated, or was written by a model of another
/// architecture is an error naming the file. A file written by a model of the same architecture
/// but other weights is accepted (its `fingerprint` differs; the caller may warn).
pub fn load_latents(
    path: &Path,
    model: &Glow,
    device: &Device,
) -> Result<(Latents, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| GlowError::io(path, e))?;
    let not_latents = |why: String| {
        GlowError::file(
            path,
            format!("not a glowflow latent file ({why}); write one with `glowflow encode`"),
        )
    };
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| not_latents(format!("{e}")))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(not_latents(
            "no `format = glowflow-latents` metadata".into(),
        ));
    }
    let written_by: GlowConfig = metadata
        .get("config")
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| not_latents("missing or unreadable `config` metadata".into()))?;
    let ours = model.config();
    if (GlowConfig {
        seed: ours.seed,
        ..written_by.clone()
    }) != *ours
    {
        return Err(GlowError::file(
            path,
            format!(
                "these latents were written by a model of another architecture ({}x{}x{}, L = {}, \
                 K = {}, width {}); decode them with that model",
                written_by.image.channels,
                written_by.image.height,
                written_by.image.width,
                written_by.levels,
                written_by.steps,
                written_by.width
            ),
        ));
    }
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| not_latents(format!("{e}")))?;
    let shapes = model.latent_shapes();
    let mut levels = Vec::with_capacity(shapes.len());
    let mut batch = None;
    for (l, [c, h, w]) in shapes.into_iter().enumerate() {
        let view = tensors
            .tensor(&format!("level.{l}"))
            .map_err(|e| not_latents(format!("level {l}: {e}")))?;
        let n = view.shape().first().copied().unwrap_or(0);
        if view.dtype() != Dtype::F64 || view.shape() != [n, c, h, w] || n == 0 {
            return Err(not_latents(format!(
                "level {l} is {:?} {:?}, expected F64 [N, {c}, {h}, {w}]",
                view.dtype(),
                view.shape()
            )));
        }
        if *batch.get_or_insert(n) != n {
            return Err(not_latents(format!(
                "level {l} holds {n} images, level 0 holds {}",
                batch.unwrap_or(0)
            )));
        }
        let values: Vec<f64> = view
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8 bytes")))
            .collect();
        let level = from_f64(values, [n, c, h, w], device);
        // Checked on the device: a finite f64 beyond the range of its floats becomes infinite.
        if non_finite_samples(&level) > 0 {
            return Err(not_latents(format!(
                "level {l} holds NaN or infinite values, or values beyond the range of {:?}",
                level.dtype()
            )));
        }
        levels.push(level);
    }
    Ok((Latents { levels }, metadata))
}

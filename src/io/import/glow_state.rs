//! A glowflow model's parameters as a [`StateDict`] keyed by their paths in `model.safetensors`
//! (`levels.0.steps.1.actnorm.bias`, ...), and a model built from one: the bridge through which
//! the peers' converters read and write our weights without knowing burn's module tree.

use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::torch_file::{HostTensor, StateDict, Values};
use crate::error::{GlowError, Result};
use crate::io::model_dir::load_weights_from_bytes;
use crate::model::config::GlowConfig;
use crate::model::glow::Glow;

/// Every parameter of `model` (float32, and int64 for fixed permutations), by path.
pub fn glow_state(model: &Glow) -> Result<StateDict> {
    let fail = |e: &dyn std::fmt::Display| {
        GlowError::Config(format!("could not collect the model's weights: {e}"))
    };
    let mut store = SafetensorsStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| fail(&e))?;
    let bytes = store.get_bytes().map_err(|e| fail(&e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| fail(&e))?;
    let mut state = StateDict::new();
    for (name, view) in file.iter() {
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => Values::F32(
                data.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            Dtype::I64 => Values::I64(
                data.chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect(),
            ),
            other => return Err(fail(&format!("parameter {name} has dtype {other:?}"))),
        };
        state.insert(
            name.to_string(),
            HostTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(state)
}

/// The model `config` describes on `device` with the parameters in `state` (the keys
/// [`glow_state`] gives); a missing, extra or misshapen key is an error that names it, with
/// `origin` as the file.
pub fn glow_from_state(
    config: &GlowConfig,
    state: &StateDict,
    origin: &Path,
    device: &Device,
) -> Result<Glow> {
    // Float weights are widened (exactly) on a device whose floats are f64, so that the model
    // does not mix float types.
    let wide = Tensor::<1>::zeros([1], device).dtype() == DType::F64;
    let bytes: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = state
        .iter()
        .map(|(name, t)| {
            let (bytes, dtype) = match &t.values {
                Values::F32(v) if wide => (
                    v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect(),
                    Dtype::F64,
                ),
                Values::F32(v) => (v.iter().flat_map(|x| x.to_le_bytes()).collect(), Dtype::F32),
                Values::I64(v) => (v.iter().flat_map(|x| x.to_le_bytes()).collect(), Dtype::I64),
                Values::U8(v) => (v.clone(), Dtype::U8),
            };
            (name.clone(), bytes, dtype, t.shape.clone())
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, data, dtype, shape) in &bytes {
        let view = TensorView::new(*dtype, shape.clone(), data).map_err(|e| {
            GlowError::file(origin, format!("tensor {name} does not fit its shape: {e}"))
        })?;
        views.push((name.as_str(), view));
    }
    let file = safetensors::serialize(views, None)
        .map_err(|e| GlowError::file(origin, format!("could not convert the weights: {e}")))?;
    load_weights_from_bytes(config, file, origin, device)
}

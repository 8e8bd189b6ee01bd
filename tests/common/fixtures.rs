//! The reference outputs of the PyTorch Glows (tests/fixtures/NAME.safetensors, written by
//! tests/fixtures/make_*.py with the peers' own code), and their checkpoints (NAME.pt).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use glowflow::io::import::{import_checkpoint, ImportOptions, Peer};
use glowflow::tensor_ops::from_f64;
use glowflow::{Glow, ImageShape};
use safetensors::tensor::Dtype;

/// The fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture's reference tensors (float32, or float64 for the keys ending in `_f64`).
pub struct Reference(HashMap<String, (Vec<usize>, Vec<f64>)>);

impl Reference {
    /// Reads `tests/fixtures/NAME.safetensors`.
    pub fn load(name: &str) -> Self {
        let bytes = std::fs::read(fixtures().join(format!("{name}.safetensors"))).expect("fixture");
        let file = safetensors::SafeTensors::deserialize(&bytes).expect("fixture is safetensors");
        Reference(
            file.iter()
                .map(|(key, view)| {
                    let data = view.data();
                    let values = match view.dtype() {
                        Dtype::F64 => data
                            .chunks_exact(8)
                            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                            .collect(),
                        _ => data
                            .chunks_exact(4)
                            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                            .collect(),
                    };
                    (key.to_string(), (view.shape().to_vec(), values))
                })
                .collect(),
        )
    }

    /// Tensor `key` on `device` (in the device's float type).
    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = &self.0[key];
        let shape: [usize; D] = shape.as_slice().try_into().expect("the fixture's rank");
        from_f64(values.clone(), shape, device)
    }

    /// The values of tensor `key`, flattened.
    pub fn values(&self, key: &str) -> &[f64] {
        &self.0[key].1
    }

    /// The names after `prefix` of the tensors whose key starts with it (e.g. the parameters
    /// of the `grad.` tensors).
    pub fn names_under(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// The class labels of a class-conditional fixture.
    pub fn labels(&self) -> Option<Vec<usize>> {
        self.0
            .get("labels")
            .map(|(_, v)| v.iter().map(|&l| l as usize).collect())
    }
}

/// Imports fixture `name`'s checkpoint as `peer`'s on `device`.
pub fn import(
    peer: Peer,
    name: &str,
    image: Option<[usize; 3]>,
    n_bits: Option<u32>,
    device: &Device,
) -> Glow {
    let options = ImportOptions {
        image: image.map(|[channels, height, width]| ImageShape {
            channels,
            height,
            width,
        }),
        n_bits,
    };
    let path = fixtures().join(format!("{name}.pt"));
    import_checkpoint(peer, &path, &options, device).expect("the fixture imports")
}

//! PyTorch `state_dict` files as a flat map from key to host tensor: read with burn's
//! `pytorch-reader` (the `torch.save` zip format and the legacy pickle format), written in the zip
//! format `torch.load(..., weights_only=True)` accepts.
//!
//! The writer covers what a Glow `state_dict` holds, a flat `OrderedDict` of contiguous float32,
//! uint8 and int64 tensors. Its layout is torch's: a stored (uncompressed) zip archive with
//!
//! ```text
//! archive/data.pkl      pickle protocol 2: OrderedDict{key: _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())}
//! archive/data/<i>      the raw little-endian bytes of storage i (one storage per tensor), 64-byte aligned
//! archive/byteorder     "little"
//! archive/version       "3"
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use pytorch_reader::{DType, PytorchReader};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

use super::super::atomic::write_atomic;
use crate::error::{GlowError, Result};

/// The values of one tensor, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// `torch.float32`.
    F32(Vec<f32>),
    /// `torch.uint8` (rosinality's ActNorm `initialized` flag).
    U8(Vec<u8>),
    /// `torch.int64`.
    I64(Vec<i64>),
}

/// A tensor on the host: its shape (empty for a scalar) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Extents, outermost first.
    pub shape: Vec<usize>,
    /// The elements.
    pub values: Values,
}

impl HostTensor {
    /// A float32 tensor.
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        HostTensor {
            shape,
            values: Values::F32(values),
        }
    }

    /// The values as float32 (integers converted), for reading a parameter.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.values {
            Values::F32(v) => v.clone(),
            Values::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            Values::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    fn element_count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A `state_dict`: key to tensor, in key order.
pub type StateDict = BTreeMap<String, HostTensor>;

/// Reads every tensor of the `state_dict` saved in `path` (either of torch's formats). A
/// truncated or corrupt file, and tensors of a type other than float32, uint8 and int64, are
/// errors naming the file (and the key).
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    let reader = PytorchReader::new(path).map_err(|e| {
        GlowError::file(
            path,
            format!(
                "not a readable PyTorch checkpoint (torch.save of a state_dict, zip or legacy \
                 format; truncated or corrupt?): {e}"
            ),
        )
    })?;
    let mut state = StateDict::new();
    for (key, tensor) in reader.into_tensors() {
        let bytes = tensor.read().map_err(|e| {
            GlowError::file(
                path,
                format!("tensor {key} could not be read (truncated or corrupt file?): {e}"),
            )
        })?;
        let values = match tensor.dtype() {
            DType::F32 => Values::F32(from_ne_bytes(&bytes, f32::from_ne_bytes)),
            DType::U8 | DType::Bool => Values::U8(bytes),
            DType::I64 => Values::I64(from_ne_bytes(&bytes, i64::from_ne_bytes)),
            other => {
                return Err(GlowError::file(
                    path,
                    format!(
                        "tensor {key} is {other:?}; glowflow imports float32 weights: save the \
                         model after `model.float()`"
                    ),
                ))
            }
        };
        state.insert(
            key,
            HostTensor {
                shape: tensor.shape().to_vec(),
                values,
            },
        );
    }
    Ok(state)
}

/// Decodes native-endian `N`-byte elements.
fn from_ne_bytes<T, const N: usize>(bytes: &[u8], decode: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| decode(chunk.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}

/// Writes `state` to `path` (atomically) in torch's zip format; see the module doc.
pub fn write_state_dict(path: &Path, state: &StateDict) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| {
        GlowError::file(path, format!("could not write the PyTorch checkpoint: {e}"))
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .with_alignment(64);
    let entry = |zip: &mut zip::ZipWriter<_>, name: &str, bytes: &[u8]| {
        zip.start_file(format!("archive/{name}"), options)
            .and_then(|()| zip.write_all(bytes).map_err(Into::into))
            .map_err(|e| fail(&e))
    };
    entry(&mut zip, "data.pkl", &pickle_state_dict(state))?;
    entry(&mut zip, "byteorder", b"little")?;
    for (index, tensor) in state.values().enumerate() {
        entry(
            &mut zip,
            &format!("data/{index}"),
            &le_bytes(&tensor.values),
        )?;
    }
    entry(&mut zip, "version", b"3\n")?;
    let bytes = zip.finish().map_err(|e| fail(&e))?.into_inner();
    write_atomic(path, &bytes)
}

fn le_bytes(values: &Values) -> Vec<u8> {
    match values {
        Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Values::U8(v) => v.clone(),
        Values::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// The pickle (protocol 2) of an `OrderedDict` whose values are tensors rebuilt from storages
/// `0, 1, ...` in key order.
fn pickle_state_dict(state: &StateDict) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]);
    p.ordered_dict();
    p.0.push(b'(');
    for (index, (key, tensor)) in state.iter().enumerate() {
        p.string(key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(b'(');
        // The storage's persistent id: ('storage', torch.<Type>Storage, key, location, numel).
        p.0.push(b'(');
        p.string("storage");
        let storage = match tensor.values {
            Values::F32(_) => "FloatStorage",
            Values::U8(_) => "ByteStorage",
            Values::I64(_) => "LongStorage",
        };
        p.global("torch", storage);
        p.string(&index.to_string());
        p.string("cpu");
        p.int(tensor.element_count());
        p.0.extend([b't', b'Q']);
        p.int(0);
        p.tuple(&tensor.shape);
        p.tuple(&contiguous_strides(&tensor.shape));
        p.0.push(0x89); // NEWFALSE: requires_grad
        p.ordered_dict(); // backward hooks
        p.0.extend([b't', b'R']);
    }
    p.0.extend([b'u', b'.']);
    p.0
}

/// Row-major strides (in elements) of `shape`.
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// A pickle being written, opcode by opcode.
struct Pickle(Vec<u8>);

impl Pickle {
    /// `GLOBAL module name`.
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").bytes());
    }

    /// `OrderedDict()`.
    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend([b')', b'R']);
    }

    /// `BINUNICODE`.
    fn string(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.bytes());
    }

    /// `LONG1` (a non-negative integer of any size; 8 bytes suffice here).
    fn int(&mut self, value: usize) {
        self.0.extend([0x8a, 8]);
        self.0.extend((value as u64).to_le_bytes());
    }

    /// A tuple of integers.
    fn tuple(&mut self, values: &[usize]) {
        self.0.push(b'(');
        for &v in values {
            self.int(v);
        }
        self.0.push(b't');
    }
}

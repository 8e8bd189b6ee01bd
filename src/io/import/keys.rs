//! Reading a peer's `state_dict` key by key ([`Checkpoint`]: each key is taken once with the
//! shape the architecture expects, whatever is left over at the end is an error, and every error
//! names the file, the key and what to do), and the layout conversions both peers share: row
//! orders, the LU masks, zero convolutions ([`ZeroConv`]) and wrapper key prefixes.

use std::collections::BTreeSet;
use std::path::Path;

use super::torch_file::{HostTensor, StateDict, Values};
use super::Peer;
use crate::error::{GlowError, Result};

/// A peer's `state_dict` being converted, with the keys not yet taken.
pub struct Checkpoint<'a> {
    state: &'a StateDict,
    left: BTreeSet<&'a str>,
    path: &'a Path,
    peer: Peer,
    /// What the keys so far say the architecture is, quoted in shape errors.
    pub architecture: String,
}

impl<'a> Checkpoint<'a> {
    /// The `state` read from `path`, expected to be `peer`'s.
    pub fn new(state: &'a StateDict, path: &'a Path, peer: Peer) -> Self {
        Checkpoint {
            state,
            left: state.keys().map(String::as_str).collect(),
            path,
            peer,
            architecture: String::new(),
        }
    }

    /// An error about this checkpoint.
    pub fn error(&self, message: String) -> GlowError {
        GlowError::file(self.path, message)
    }

    /// Whether `key` is in the checkpoint.
    pub fn has(&self, key: &str) -> bool {
        self.state.contains_key(key)
    }

    /// The shape of `key`, which must be present.
    pub fn shape(&self, key: &str) -> Result<&'a [usize]> {
        Ok(&self.get(key)?.shape)
    }

    /// How many `prefix{i}.` groups of keys there are (`i = 0, 1, ...` without a gap).
    pub fn count(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                let group = format!("{prefix}{i}.");
                self.state.keys().any(|k| k.starts_with(&group))
            })
            .count()
    }

    fn get(&self, key: &str) -> Result<&'a HostTensor> {
        self.state.get(key).ok_or_else(|| {
            self.error(format!(
                "key {key} is missing: not a {} checkpoint of the architecture its other keys \
                 describe ({}), or an incomplete one; save the whole model.state_dict()",
                self.peer.name(),
                self.architecture
            ))
        })
    }

    /// The float values of `key`, whose shape must be `shape`; the key is then used up.
    pub fn take(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let tensor = self.get(key)?;
        if tensor.shape != shape {
            return Err(self.error(format!(
                "key {key} has shape {:?}, but {} ({}) needs {shape:?}; the checkpoint and the \
                 architecture disagree: check --image, or whether the file was edited",
                tensor.shape,
                self.peer.name(),
                self.architecture
            )));
        }
        self.left.remove(key);
        Ok(tensor.to_f32())
    }

    /// [`Checkpoint::take`] for a buffer that must hold exactly `expected` (LU masks, the
    /// identity): a checkpoint whose fixed buffers differ has an architecture we do not know.
    pub fn take_fixed(&mut self, key: &str, shape: &[usize], expected: &[f32]) -> Result<()> {
        if self.take(key, shape)? != expected {
            return Err(self.error(format!(
                "key {key} is not the fixed buffer {} builds (its values were changed); glowflow \
                 cannot represent that layer: re-save the checkpoint from unmodified code",
                self.peer.name()
            )));
        }
        Ok(())
    }

    /// The checkpoint's keys that no conversion step took are an error naming them.
    pub fn finish(self) -> Result<()> {
        if self.left.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = self.left.iter().copied().collect();
        let shown = keys.iter().take(3).copied().collect::<Vec<_>>().join(", ");
        let more = if keys.len() > 3 { ", ..." } else { "" };
        Err(self.error(format!(
            "{} keys are not part of a {} Glow ({}): {shown}{more}; remove them from the \
             state_dict, or check that the file is a {} checkpoint",
            keys.len(),
            self.peer.name(),
            self.architecture,
            self.peer.name()
        )))
    }
}

/// `state` with the prefix that a wrapper put before every key removed: `nn.DataParallel`'s
/// `module.` (rosinality's train.py wraps its model in one), or the key of a model saved inside a
/// dictionary (`{"model": model.state_dict()}` reads as `model.` keys). The prefix is whatever
/// precedes `anchor`, a key every checkpoint of the peer has, and is removed only when every key
/// starts with it.
pub fn strip_wrapper_prefix(state: &StateDict, anchor: &str) -> StateDict {
    let prefix = state
        .keys()
        .find_map(|k| k.strip_suffix(anchor))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .unwrap_or("");
    if prefix.is_empty() || !state.keys().all(|k| k.starts_with(prefix)) {
        return state.clone();
    }
    state
        .iter()
        .map(|(k, v)| (k[prefix.len()..].to_string(), v.clone()))
        .collect()
}

/// The rows of a `[rows, ...]` tensor (`row_len` values each) reordered as `order` says: row
/// `i` of the result is row `order[i]` of `values`.
pub fn reorder_rows(values: &[f32], row_len: usize, order: &[usize]) -> Vec<f32> {
    order
        .iter()
        .flat_map(|&r| values[r * row_len..(r + 1) * row_len].iter().copied())
        .collect()
}

/// The order that interleaves two halves of `2n` rows: result row `2i` is row `even + i`, row
/// `2i + 1` is row `odd + i`, where `even` and `odd` are `0` or `n` (which half holds the values
/// read at even positions).
pub fn interleave(n: usize, even_from_second: bool) -> Vec<usize> {
    let (even, odd) = if even_from_second { (n, 0) } else { (0, n) };
    (0..n).flat_map(|i| [even + i, odd + i]).collect()
}

/// The inverse of a permutation.
pub fn inverse(order: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; order.len()];
    for (i, &o) in order.iter().enumerate() {
        inv[o] = i;
    }
    inv
}

/// The `n x n` identity, row-major.
pub fn identity(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect()
}

/// The `n x n` strictly upper triangular mask (ones above the diagonal), row-major.
pub fn strictly_upper(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| if i % n > i / n { 1.0 } else { 0.0 })
        .collect()
}

/// The `n x n` strictly lower triangular mask, row-major.
pub fn strictly_lower(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| if i % n < i / n { 1.0 } else { 0.0 })
        .collect()
}

/// A float32 tensor of `shape`.
pub fn f32_tensor(shape: &[usize], values: Vec<f32>) -> HostTensor {
    HostTensor::f32(shape.to_vec(), values)
}

/// `state[key]` = a float32 tensor of `shape`.
pub fn put(state: &mut StateDict, key: String, shape: &[usize], values: Vec<f32>) {
    state.insert(key, f32_tensor(shape, values));
}

/// How a peer stores a zero-initialised 3x3 convolution `(conv(x) + b) · exp(3 · scale)`:
/// `PREFIX.conv.weight`, `PREFIX.conv.bias` and `PREFIX.<scale_key>` of shape
/// `scale_shape(C_out)` (rosinality: `scale`, `[1, C, 1, 1]`; y0ast: `logs`, `[C, 1, 1]`).
#[derive(Debug, Clone, Copy)]
pub struct ZeroConvLayout {
    /// The name of the log-scale after the prefix.
    pub scale_key: &'static str,
    /// Its shape for `C_out` output channels.
    pub scale_shape: fn(usize) -> Vec<usize>,
}

/// One zero convolution of `c_in` inputs between a peer's layout and ours: our output row `i` is
/// the peer's row `order[i]`.
pub struct ZeroConv {
    /// The peer's layout.
    pub layout: ZeroConvLayout,
    /// Input channels.
    pub c_in: usize,
    /// Output rows, ours from theirs.
    pub order: Vec<usize>,
}

impl ZeroConv {
    /// Takes the peer's convolution at `theirs` into ours at `mine` (`out`).
    pub fn take(
        &self,
        ckpt: &mut Checkpoint,
        theirs: &str,
        mine: &str,
        out: &mut StateDict,
    ) -> Result<()> {
        let (c_in, c_out) = (self.c_in, self.order.len());
        let weight = ckpt.take(&format!("{theirs}conv.weight"), &[c_out, c_in, 3, 3])?;
        let bias = ckpt.take(&format!("{theirs}conv.bias"), &[c_out])?;
        let scale_key = format!("{theirs}{}", self.layout.scale_key);
        let scale = ckpt.take(&scale_key, &(self.layout.scale_shape)(c_out))?;
        let weight = reorder_rows(&weight, c_in * 9, &self.order);
        put(
            out,
            format!("{mine}conv.weight"),
            &[c_out, c_in, 3, 3],
            weight,
        );
        put(
            out,
            format!("{mine}conv.bias"),
            &[c_out],
            reorder_rows(&bias, 1, &self.order),
        );
        put(
            out,
            format!("{mine}logs"),
            &[c_out],
            reorder_rows(&scale, 1, &self.order),
        );
        Ok(())
    }

    /// Writes our convolution's `weight`, `bias` and `logs` at the peer's `prefix`, the
    /// log-scales times `factor` (our log-scale factor over the peer's 3).
    pub fn put(
        &self,
        theirs: &mut StateDict,
        prefix: &str,
        [weight, bias, logs]: [&[f32]; 3],
        factor: f32,
    ) {
        let back = inverse(&self.order);
        let (c_in, c_out) = (self.c_in, self.order.len());
        let scale = reorder_rows(logs, 1, &back)
            .iter()
            .map(|x| x * factor)
            .collect();
        let weight = reorder_rows(weight, c_in * 9, &back);
        put(
            theirs,
            format!("{prefix}conv.weight"),
            &[c_out, c_in, 3, 3],
            weight,
        );
        put(
            theirs,
            format!("{prefix}conv.bias"),
            &[c_out],
            reorder_rows(bias, 1, &back),
        );
        let scale_key = format!("{prefix}{}", self.layout.scale_key);
        put(theirs, scale_key, &(self.layout.scale_shape)(c_out), scale);
    }
}

/// The float values of our parameter `key` (present by construction of the model).
pub fn ours(state: &StateDict, key: &str) -> Result<Vec<f32>> {
    match state.get(key).map(|t| &t.values) {
        Some(Values::F32(v)) => Ok(v.clone()),
        _ => Err(GlowError::Config(format!(
            "the model has no float parameter {key}; its config and weights disagree"
        ))),
    }
}

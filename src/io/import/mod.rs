//! The PyTorch Glows' checkpoints, in and out: rosinality/glow-pytorch and y0ast/Glow-PyTorch
//! `state_dict`s converted to glowflow models that compute the same function, and back.
//!
//! ```text
//! import:  CHECKPOINT.pt ─read_state_dict─► their keys ─peer::to_glow─► our keys + GlowConfig ─► Glow
//! export:  Glow ─glow_state─► our keys ─peer::from_glow─► their keys ─write_state_dict─► model.pt
//! ```
//!
//! Each peer's module maps tensor names and layouts only; every architectural difference is a
//! [`GlowConfig`] option the imported model sets. What a checkpoint does not record (the image
//! size, the bits per colour channel) comes in [`ImportOptions`].

pub mod glow_state;
pub mod keys;
pub mod rosinality;
pub mod torch_file;
pub mod y0ast;

use std::path::Path;

use burn::tensor::Device;

use self::glow_state::{glow_from_state, glow_state};
use self::torch_file::{read_state_dict, write_state_dict};
use crate::error::{GlowError, Result};
use crate::model::config::{GlowConfig, ImageShape};
use crate::model::glow::Glow;

/// A PyTorch Glow implementation whose checkpoints glowflow reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// rosinality/glow-pytorch (`model.py`'s `Glow`).
    Rosinality,
    /// y0ast/Glow-PyTorch (`model.py`'s `Glow`).
    Y0ast,
}

impl Peer {
    /// The peer's repository name.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Rosinality => "rosinality/glow-pytorch",
            Peer::Y0ast => "y0ast/Glow-PyTorch",
        }
    }

    /// The bits per colour channel the peer's training script uses by default (rosinality's
    /// train.py `--n_bits 5`; y0ast's datasets.py fixes 8).
    pub fn default_n_bits(self) -> u32 {
        match self {
            Peer::Rosinality => 5,
            Peer::Y0ast => 8,
        }
    }
}

/// What an import needs that a checkpoint may not record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOptions {
    /// The images the model was trained on: required for rosinality (its checkpoints do not
    /// record the size), checked against the checkpoint for y0ast.
    pub image: Option<ImageShape>,
    /// Bits per colour channel the model was trained on; `None`: the peer's default
    /// ([`Peer::default_n_bits`]).
    pub n_bits: Option<u32>,
}

/// Reads the checkpoint at `path`, saved by `peer`, as a glowflow model on `device`. A checkpoint
/// of another architecture, a truncated file, a missing, extra or misshapen key is an error that
/// names the file, the key and the fix.
pub fn import_checkpoint(
    peer: Peer,
    path: &Path,
    options: &ImportOptions,
    device: &Device,
) -> Result<Glow> {
    let theirs = read_state_dict(path)?;
    let (config, ours) = match peer {
        Peer::Rosinality => rosinality::to_glow(&theirs, options, path)?,
        Peer::Y0ast => y0ast::to_glow(&theirs, options, path)?,
    };
    glow_from_state(&config, &ours, path, device)
}

/// Writes `model` to `path` as a `state_dict` that `peer`'s code loads with
/// `load_state_dict(torch.load(path))`. A model with an option the peer cannot represent is an
/// error that names the option.
pub fn export_checkpoint(peer: Peer, model: &Glow, path: &Path) -> Result<()> {
    let ours = glow_state(model)?;
    let theirs = match peer {
        Peer::Rosinality => rosinality::from_glow(model.config(), &ours)?,
        Peer::Y0ast => y0ast::from_glow(model.config(), &ours)?,
    };
    write_state_dict(path, &theirs)
}

/// The config a peer's checkpoint describes must also pass glowflow's validation (the image size
/// against the levels, the bits).
fn validated(config: GlowConfig, path: &Path) -> Result<GlowConfig> {
    config
        .validate()
        .map_err(|e| GlowError::file(path, format!("{e} (check --image and --n-bits)")))?;
    Ok(config)
}

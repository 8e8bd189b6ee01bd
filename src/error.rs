//! The library's error type: every failure names the value or file at fault and what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong when building, running, saving or loading a Glow model.
#[derive(Debug, thiserror::Error)]
pub enum GlowError {
    /// A configuration value that cannot describe a valid Glow model.
    #[error("invalid config: {0}")]
    Config(String),

    /// A tensor whose shape does not match what a layer was built for.
    #[error("shape mismatch in {layer}: {message}")]
    Shape {
        /// The layer (or API entry point) that rejected the input.
        layer: String,
        /// What was expected and what was given.
        message: String,
    },

    /// A file could not be read or written. A full disk, a file size limit or a quota adds what
    /// to do: the write that failed was atomic, so the previous file is intact.
    #[error("{path}: {source}{hint}", hint = io_hint(source))]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A file was read but its content is not what it should be (truncated, corrupt, wrong model).
    #[error("{path}: {message}")]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it and what to do.
        message: String,
    },

    /// Input values that cannot be computed on (NaN or infinite numbers).
    #[error("invalid values in {input}: {message}")]
    Value {
        /// The input (or API entry point) that rejected them.
        input: String,
        /// Which values and what to do.
        message: String,
    },

    /// A class label that the model was not built for.
    #[error("invalid label: {0}")]
    Label(String),

    /// Bytes given as an image (an upload) that are not a usable image of a format folders read.
    #[error("unusable image: {0}")]
    Image(String),

    /// A device that this build or this machine does not have, or a name that is no device.
    #[error("device: {0}")]
    Device(String),
}

impl GlowError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GlowError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        GlowError::File {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn value(input: impl Into<String>, message: impl Into<String>) -> Self {
        GlowError::Value {
            input: input.into(),
            message: message.into(),
        }
    }

    pub(crate) fn shape(layer: impl Into<String>, message: impl Into<String>) -> Self {
        GlowError::Shape {
            layer: layer.into(),
            message: message.into(),
        }
    }
}

/// What to do about the I/O errors of a full disk: free space and run again; a training run
/// continues from its last checkpoint.
fn io_hint(error: &std::io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EFBIG) | Some(libc::EDQUOT) => {
            " (the disk is full, or a file size limit or quota was reached): free space and run \
             again; the previous file is intact, and a training run continues from its last \
             checkpoint with --resume RUN"
        }
        _ => "",
    }
}

/// Result alias for the library.
pub type Result<T> = std::result::Result<T, GlowError>;

//! Atomic file writes: a reader sees the old file or the new one, never a partial write.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{GlowError, Result};

/// Writes `bytes` to `path` atomically: a temporary file beside it is written and fsynced, then
/// renamed over `path`, and the directory is fsynced so the rename survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| GlowError::file(path, "not a file path"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        GlowError::io(path, e)
    })
}

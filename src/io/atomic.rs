//! Atomic file writes: a reader sees the old file or the new one, never a partial write.
//!
//! A write goes to a hidden temporary beside its target, named by [`temporary_name`] after the
//! target and the writing process, and is renamed over the target once complete. A process
//! killed mid-write leaves its temporary behind; [`remove_stale_temporaries`] clears those of
//! processes that no longer run.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{GlowError, Result};

/// Marks a temporary name; the writer's process id follows it.
const TEMPORARY_MARK: &str = ".tmp-";

/// The hidden temporary that this process writes `name` into before renaming it into place:
/// `.NAME.tmp-PID`.
pub fn temporary_name(name: &str) -> String {
    format!(".{name}{TEMPORARY_MARK}{}", std::process::id())
}

/// Writes `bytes` to `path` atomically: a temporary file beside it is written and fsynced, then
/// renamed over `path`, and the directory is fsynced so the rename survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| {
        file.write_all(bytes).map_err(|e| GlowError::io(path, e))
    })
}

/// Writes `path` atomically with whatever `fill` writes into a new file, the hidden temporary
/// beside `path` ([`temporary_name`]): once `fill` succeeds the file is fsynced and renamed over
/// `path`, and the directory fsynced so the rename survives a crash. If `fill` or any of those
/// steps fails, the temporary is removed and `path` is left as it was; the steps' own errors name
/// `path` and reach the caller through `E: From<GlowError>`. Returns what `fill` returns.
pub fn write_atomic_with<T, E: From<GlowError>>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| GlowError::file(path, "not a file path"))?
        .to_string_lossy();
    let tmp = dir.join(temporary_name(&name));
    let write = || -> std::result::Result<T, E> {
        let mut file = File::create(&tmp).map_err(|e| GlowError::io(path, e))?;
        let filled = fill(&mut file)?;
        let finish = || -> std::io::Result<()> {
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            sync_dir(dir)
        };
        finish().map_err(|e| GlowError::io(path, e))?;
        Ok(filled)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory `dir`, so that the renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes the temporaries (files or directories named by [`temporary_name`]) in `dir` whose
/// writing process no longer runs, and returns them. A directory that does not exist has none.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(GlowError::io(dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| GlowError::io(dir, e))?.path();
        let Some(writer) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(temporary_writer)
        else {
            continue;
        };
        if process_runs(writer) {
            continue;
        }
        let removal = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removal.map_err(|e| GlowError::io(&path, e))?;
        removed.push(path);
    }
    Ok(removed)
}

/// The process id in a name made by [`temporary_name`], if it is one.
fn temporary_writer(name: &str) -> Option<u32> {
    let (_, pid) = name.strip_prefix('.')?.rsplit_once(TEMPORARY_MARK)?;
    pid.parse().ok()
}

/// Whether process `pid` exists (signal 0 checks without sending anything; a process of another
/// user answers EPERM, and exists).
pub fn process_runs(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only reports whether `pid` exists.
    let answered = unsafe { libc::kill(pid, 0) } == 0;
    answered || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_name_carries_its_writer() {
        assert_eq!(
            temporary_writer(&temporary_name("model.safetensors")),
            Some(std::process::id())
        );
        assert_eq!(temporary_writer("model.safetensors"), None);
        assert_eq!(temporary_writer(".hidden"), None);
        assert_eq!(temporary_writer(".x.tmp-notapid"), None);
    }
}

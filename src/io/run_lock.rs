//! One writer per run directory. A process that writes a run holds an advisory lock (`flock`) on
//! `RUN/train.lock` for as long as it runs, and writes its process id into the file so that a
//! process that is refused can name the holder. The kernel drops the lock when its holder exits,
//! however it exits, so the lock of a killed process is stale by construction and the next
//! writer takes it over; the temporaries such a process left half-written are removed then.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::atomic::{process_runs, remove_stale_temporaries};
use crate::error::{GlowError, Result};

/// The lock file inside a run directory.
pub const LOCK_FILE: &str = "train.lock";

/// Sub-directories of a run whose temporaries are cleared when the lock is taken.
const WRITTEN_DIRS: [&str; 3] = ["", "checkpoints", "samples"];

/// The lock on a run directory; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    /// Held open: closing the file releases the lock.
    _file: File,
    /// The process that held the lock before, if the file named one that no longer runs.
    pub taken_from: Option<u32>,
    /// Half-written temporaries of earlier writers that were removed.
    pub removed: Vec<PathBuf>,
}

impl RunLock {
    /// Locks the run directory `run` (created if needed) for this process, or fails with an
    /// error naming the process that holds it.
    pub fn acquire(run: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(run).map_err(|e| GlowError::io(run, e))?;
        let path = run.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| GlowError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = match recorded_holder(&mut file) {
                    Some(pid) => format!("process {pid}"),
                    None => "another process".to_string(),
                };
                return Err(GlowError::file(
                    &path,
                    format!(
                        "the run {} is in use by {holder}, which holds this lock; wait for it to \
                         finish, stop it (SIGTERM makes a training run write a checkpoint and \
                         exit), or write to another --out",
                        run.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(GlowError::io(&path, e)),
        }
        let me = std::process::id();
        let taken_from = recorded_holder(&mut file).filter(|&pid| pid != me && !process_runs(pid));
        let mut record = || -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{me}")?;
            file.sync_all()
        };
        record().map_err(|e| GlowError::io(&path, e))?;
        let mut removed = Vec::new();
        for dir in WRITTEN_DIRS {
            removed.extend(remove_stale_temporaries(&run.join(dir))?);
        }
        Ok(RunLock {
            _file: file,
            taken_from,
            removed,
        })
    }
}

/// The process id written in the lock file, if it holds one.
fn recorded_holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

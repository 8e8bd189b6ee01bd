//! The `glowflow` command line (see `glowflow --help`); the commands live in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keep_freed_memory_in_the_heap();
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Makes glibc's allocator keep freed tensors for reuse instead of returning them to the kernel.
///
/// By default glibc serves every block above an adaptive threshold (128 KiB to start with) with
/// its own `mmap` and unmaps it on `free`, so in a process that only evaluates or samples, every
/// activation is a fresh mapping whose pages the kernel zero-fills on first touch: `glowflow
/// bench --phases eval,sample` (1x32x32, L = 3, K = 8, width 128, batch 32, 40 repeats) took
/// 1.9 million page faults and 11.5 s, and 6 thousand and 6.5 s with the settings below. A fixed
/// 32 MiB threshold (glibc's maximum) serves such blocks from the heap, which is trimmed only
/// when 1 GiB lies free at its top.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory_in_the_heap() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory_in_the_heap() {}

//! The `glowflow` command line (see `glowflow --help`); the commands live in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restart_with_huge_page_heap();
    keep_freed_memory_in_the_heap();
    // Folder datasets load through the image cache that GLOWFLOW_IMAGE_CACHE names (by default
    // the user's cache directory).
    let cache = glowflow::data::image_cache::ImageCache::from_environment();
    glowflow::data::image_cache::use_for_this_process(cache);
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

/// glibc's tunable that backs its heaps with transparent huge pages: it calls
/// `madvise(MADV_HUGEPAGE)` on every range it takes from the kernel, aligned to the huge-page
/// size (glibc 2.35 on; older versions ignore it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HUGE_PAGE_HEAP: &str = "glibc.malloc.hugetlb=1";

/// Runs this program again with glibc's [`HUGE_PAGE_HEAP`] tunable set, where the kernel gives
/// transparent huge pages only to memory that asks for them (`[madvise]` in
/// `/sys/kernel/mm/transparent_hugepage/enabled`, as on Debian) and the tunable is not set yet.
///
/// Glow's tensors are megabytes each and the matrix products stream through them; on 4 KiB
/// pages each 2 MiB of them costs 512 TLB entries, on a huge page one. With the tunable, training
/// steps ran 1.03x (config 3 of BENCHMARKS.md, 5 rounds of `bench/ab.py`) and 1.05x (config 2, 4
/// rounds) as fast, with the same peak memory within 0.4 %. glibc reads tunables only from the
/// environment at start-up, hence the restart (`exec`, same process id, before anything else
/// runs); a program that cannot restart runs on as it is. An allocator hook that advised each
/// large block itself did not pay (config 2 training 1.00x): glibc's own hook also aligns its
/// heaps to huge pages and advises each worker thread's arena as a whole.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_with_huge_page_heap() {
    use std::os::unix::process::CommandExt;

    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let name = HUGE_PAGE_HEAP.split('=').next().expect("name=value");
    let thp_on_request = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|modes| modes.contains("[madvise]"));
    // SAFETY: getauxval only reads the auxiliary vector the kernel passed at start-up. In a
    // set-user-ID program (AT_SECURE) glibc ignores the tunables, so a restart would repeat.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    if !thp_on_request || secure || tunables.contains(name) {
        return;
    }
    let tunables = match tunables.is_empty() {
        true => HUGE_PAGE_HEAP.to_string(),
        false => format!("{tunables}:{HUGE_PAGE_HEAP}"),
    };
    let mut args = std::env::args_os();
    let Some(program) = args.next() else { return };
    // exec returns only if the restart failed; then this process simply goes on.
    let _ = std::process::Command::new("/proc/self/exe")
        .arg0(program)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart_with_huge_page_heap() {}

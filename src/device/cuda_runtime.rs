//! What a CUDA GPU needs besides a driver that reports it, checked when `--device cuda` opens the
//! device, so that a machine set up wrong gets an error naming the fix before any work, instead
//! of a panic or an unloadable kernel at the first kernel.
//!
//! burn's CUDA backend compiles its kernels at run time: NVRTC turns cubecl's CUDA C++ into PTX,
//! and the driver compiles the PTX for the GPU. So a run needs
//!
//! - a driver of at least the major CUDA version of the program's bindings (cudarc's, fixed at
//!   build time by `CUDARC_CUDA_VERSION`, scripts/gpu-build.sh): a program built for CUDA 13.x
//!   runs on any driver of CUDA 13.0 or later (NVIDIA's minor-version compatibility), not on a
//!   driver of CUDA 12;
//! - NVRTC (`libnvrtc.so`) on the library path, no newer than the driver's CUDA: a driver loads
//!   PTX only up to the PTX version of its own CUDA (minor-version compatibility does not cover
//!   PTX compiled at run time);
//! - the CUDA toolkit's headers, which cubecl looks for under `$CUDA_PATH`, `/usr/local/cuda`,
//!   `/opt/cuda` or `/usr` (where `/usr/bin/nvcc` exists), and panics without.

/// A CUDA version as the CUDA API writes it: `1000·major + 10·minor` (13000 for 13.0).
pub type CudaVersion = u32;

/// `13000` as `13.0`.
fn dotted(version: CudaVersion) -> String {
    format!("{}.{}", version / 1000, version % 1000 / 10)
}

/// The first of the two version mismatches above, as the message of an error on `device`, or
/// `None` where the driver's CUDA is of at least the bindings' major version and at least
/// NVRTC's.
pub fn version_problem(
    device: &str,
    driver: CudaVersion,
    bindings: CudaVersion,
    nvrtc: CudaVersion,
) -> Option<String> {
    let driver_cuda = dotted(driver);
    if bindings / 1000 > driver / 1000 {
        return Some(format!(
            "{device}: this glowflow was built for CUDA {}, and the NVIDIA driver's CUDA is \
             {driver_cuda}, of an older major version: rebuild it for CUDA {}.0 \
             (`CUDARC_CUDA_VERSION={} scripts/gpu-build.sh cuda`; README: \"Training on a \
             GPU\"), or update the driver",
            dotted(bindings),
            driver / 1000,
            driver / 1000 * 1000,
        ));
    }
    (nvrtc > driver).then(|| {
        format!(
            "{device}: NVRTC (libnvrtc) is CUDA {}'s, newer than the NVIDIA driver's CUDA \
             {driver_cuda}, which cannot load the kernels it compiles: put the lib directory of \
             CUDA {driver_cuda} or older first on LD_LIBRARY_PATH, or update the driver",
            dotted(nvrtc),
        )
    })
}

/// Checks the driver's and NVRTC's versions against the bindings', and that the CUDA headers are
/// there, for the CUDA `device` (named as the command named it) whose driver reported it.
#[cfg(feature = "cuda")]
pub fn check(device: &str) -> crate::error::Result<()> {
    use crate::error::GlowError;
    use cudarc::driver::sys as driver;
    use cudarc::nvrtc::sys as nvrtc;

    let mut driver_version = 0;
    // SAFETY: the driver library is loaded (it has just reported the device) and the call writes
    // one integer through a valid pointer.
    let status = unsafe { driver::cuDriverGetVersion(&mut driver_version) };
    if status != driver::CUresult::CUDA_SUCCESS {
        return Err(GlowError::Device(format!(
            "{device}: the NVIDIA driver does not tell its CUDA version ({status:?})"
        )));
    }
    // SAFETY: only tries to open the library under the names cudarc would load.
    if !unsafe { nvrtc::is_culib_present() } {
        return Err(GlowError::Device(format!(
            "{device}: NVRTC (libnvrtc.so), which compiles glowflow's kernels at run time, is not \
             on the library path: install the CUDA toolkit (or its NVRTC) and add its lib \
             directory to LD_LIBRARY_PATH"
        )));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is present (above); the call writes two integers through valid pointers.
    let status = unsafe { nvrtc::nvrtcVersion(&mut major, &mut minor) };
    if status != nvrtc::nvrtcResult::NVRTC_SUCCESS {
        return Err(GlowError::Device(format!(
            "{device}: NVRTC does not tell its version ({status:?})"
        )));
    }
    let as_version = |v: i32| CudaVersion::try_from(v).unwrap_or(0);
    let nvrtc_version = as_version(major) * 1000 + as_version(minor) * 10;
    if let Some(problem) = version_problem(
        device,
        as_version(driver_version),
        driver::CUDA_VERSION,
        nvrtc_version,
    ) {
        return Err(GlowError::Device(problem));
    }
    if cubecl::cuda::install::cuda_path().is_none() {
        return Err(GlowError::Device(format!(
            "{device}: NVRTC needs the CUDA toolkit's headers, and none was found at $CUDA_PATH, \
             /usr/local/cuda, /opt/cuda or /usr (with /usr/bin/nvcc): install the toolkit or set \
             CUDA_PATH to its directory"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_as_new_as_bindings_and_nvrtc_passes() {
        assert_eq!(version_problem("cuda:0", 13000, 13000, 13000), None);
        assert_eq!(version_problem("cuda:0", 13040, 12080, 13000), None);
        // Minor-version compatibility: bindings of 13.4 on a driver of 13.0.
        assert_eq!(version_problem("cuda:0", 13000, 13040, 12080), None);
    }

    #[test]
    fn bindings_newer_than_the_driver_name_the_rebuild() {
        let problem = version_problem("cuda:1", 12080, 13040, 12080).expect("a problem");
        assert!(problem.starts_with("cuda:1: "), "{problem}");
        assert!(problem.contains("built for CUDA 13.4"), "{problem}");
        assert!(problem.contains("driver's CUDA is 12.8"), "{problem}");
        assert!(
            problem.contains("CUDARC_CUDA_VERSION=12000 scripts/gpu-build.sh cuda"),
            "{problem}"
        );
    }

    #[test]
    fn nvrtc_newer_than_the_driver_names_the_library_path() {
        let problem = version_problem("cuda:0", 13000, 13000, 13010).expect("a problem");
        assert!(
            problem.contains("NVRTC (libnvrtc) is CUDA 13.1's"),
            "{problem}"
        );
        assert!(problem.contains("driver's CUDA 13.0"), "{problem}");
        assert!(problem.contains("LD_LIBRARY_PATH"), "{problem}");
    }

    #[test]
    fn the_bindings_are_checked_before_nvrtc() {
        let problem = version_problem("cuda:0", 12090, 13000, 13010).expect("a problem");
        assert!(problem.contains("built for CUDA 13.0"), "{problem}");
    }
}

//! Where the tensors live: the CPU (burn's `flex` backend) unless a command names a GPU.
//!
//! burn picks its backend through a runtime [`Device`], so the model code is the same on every
//! device; what differs per device is how work is cut up. On the CPU, batches run as concurrent
//! shards on the worker threads ([`crate::parallel`]) and the coupling networks' convolutions are
//! matrix products ([`crate::flow::conv_matmul`]); on a GPU, which runs a batch's work in parallel
//! by itself, a batch is one shard and the convolutions are burn's own ([`runs_on_host`] decides).
//! The parts that are exact on the host (the 1x1 convolutions' f64 inverse and log-determinant,
//! the f64 sums of bits/dim) read their inputs back and stay exact on every device.
//!
//! GPU backends are cargo features, off by default: `wgpu` (burn's wgpu backend with WGSL kernels,
//! which wgpu translates for whichever graphics API the adapter speaks: Vulkan, Metal, DirectX),
//! `vulkan` (the same backend pinned to Vulkan with cubecl's own SPIR-V kernels) and `cuda` (CUDA
//! C++ kernels compiled by NVRTC at run time; needs the build recipe of `scripts/gpu-build.sh`).
//! `wgpu` and `vulkan` build offline with no LLVM; built together, cubecl compiles SPIR-V for
//! every Vulkan adapter, so a `wgpu` build leaves `vulkan` out. A device of a backend this build
//! lacks is an error naming the feature.

pub mod check;
#[cfg(any(feature = "cuda", test))]
pub mod cuda_runtime;

use std::fmt;
use std::str::FromStr;

use burn::backend::DispatchDevice;
use burn::tensor::Device;

use crate::error::{GlowError, Result};

/// A device as a command names it: `cpu`, `wgpu[:N]`, `vulkan[:N]` or `cuda[:N]` (N counts from 0
/// over the devices that backend reports on this machine; 0 when left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceName {
    /// The CPU, through burn's `flex` backend.
    #[default]
    Cpu,
    /// The `N`-th adapter wgpu reports, on any graphics API, with WGSL kernels (burn's wgpu
    /// backend).
    Wgpu(usize),
    /// The `N`-th adapter Vulkan reports (burn's wgpu backend pinned to Vulkan, with cubecl's own
    /// SPIR-V kernels).
    Vulkan(usize),
    /// The `N`-th GPU CUDA reports.
    Cuda(usize),
}

impl FromStr for DeviceName {
    type Err = GlowError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            GlowError::Device(format!(
                "`{text}` names no device: use cpu, wgpu, wgpu:N, vulkan, vulkan:N, cuda or cuda:N \
                 (N = 0, 1, ... counts the GPUs of that backend)"
            ))
        };
        let (backend, index) = match text.split_once(':') {
            Some((backend, index)) => (backend, Some(index)),
            None => (text, None),
        };
        let index = match index {
            None => 0,
            Some(index) => index.parse::<usize>().map_err(|_| bad())?,
        };
        match (backend.to_ascii_lowercase().as_str(), text.contains(':')) {
            ("cpu", false) => Ok(DeviceName::Cpu),
            ("wgpu", _) => Ok(DeviceName::Wgpu(index)),
            ("vulkan", _) => Ok(DeviceName::Vulkan(index)),
            ("cuda", _) => Ok(DeviceName::Cuda(index)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Cpu => write!(f, "cpu"),
            DeviceName::Wgpu(index) => write!(f, "wgpu:{index}"),
            DeviceName::Vulkan(index) => write!(f, "vulkan:{index}"),
            DeviceName::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl DeviceName {
    /// The cargo feature that builds this device's backend (`None` for the CPU, always built).
    pub fn feature(&self) -> Option<&'static str> {
        match self {
            DeviceName::Cpu => None,
            DeviceName::Wgpu(_) => Some("wgpu"),
            DeviceName::Vulkan(_) => Some("vulkan"),
            DeviceName::Cuda(_) => Some("cuda"),
        }
    }

    /// The device, if this build has its backend and this machine has the device. Opening a GPU
    /// asks its backend for the devices it reports, so a missing driver or an index past the
    /// last device is an error here, not a panic at the first tensor; a CUDA GPU's driver, NVRTC
    /// and headers are checked too (`cuda_runtime`, in CUDA builds).
    pub fn open(&self) -> Result<Device> {
        let index = match self {
            DeviceName::Cpu => return Ok(Device::flex()),
            DeviceName::Wgpu(index) | DeviceName::Vulkan(index) | DeviceName::Cuda(index) => *index,
        };
        let feature = self.feature().expect("a GPU has a feature");
        // Some drivers' loaders panic when their library is missing: that is no device.
        let reported = std::panic::catch_unwind(|| self.reported_devices());
        let Some(devices) = reported.unwrap_or_else(|_| Some(Vec::new())) else {
            return Err(GlowError::Device(format!(
                "this glowflow was built without the `{feature}` feature, so it cannot use \
                 {self}: rebuild it with `cargo build --release --features {feature}` (README: \
                 \"Training on a GPU\"), or leave out --device to use the CPU"
            )));
        };
        let count = devices.len();
        let device = devices.into_iter().nth(index).ok_or_else(|| {
            GlowError::Device(format!(
                "{self}: this machine's {feature} driver reports {count} device(s){hint}",
                hint = match (count, self) {
                    (0, DeviceName::Cuda(_)) =>
                        " (is the NVIDIA driver, libcuda.so.1, installed and the GPU visible?)",
                    (0, _) =>
                        " (is the GPU driver installed, with the Vulkan loader libvulkan.so.1 \
                          and the driver's ICD file?)",
                    _ => "; count from 0",
                }
            ))
        })?;
        #[cfg(feature = "cuda")]
        if let DeviceName::Cuda(_) = self {
            cuda_runtime::check(&self.to_string())?;
        }
        Ok(device)
    }

    /// The devices this name's backend reports on this machine, in its order; `None` where this
    /// build does not have the backend (and for the CPU, which is not enumerated).
    fn reported_devices(&self) -> Option<Vec<Device>> {
        match self {
            #[cfg(feature = "wgpu")]
            DeviceName::Wgpu(_) => {
                Some(Device::enumerate(burn::tensor::DeviceType::Wgpu).into_vec())
            }
            #[cfg(feature = "vulkan")]
            DeviceName::Vulkan(_) => {
                Some(Device::enumerate(burn::tensor::DeviceType::Vulkan).into_vec())
            }
            #[cfg(feature = "cuda")]
            DeviceName::Cuda(_) => {
                Some(Device::enumerate(burn::tensor::DeviceType::Cuda).into_vec())
            }
            _ => None,
        }
    }
}

/// Whether `device` (with or without autodiff) is the CPU's `flex` device, where the CPU's ways of
/// cutting up work apply (see the module docs).
pub fn runs_on_host(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// The shard count for a batch on `device`: `cpu_shards` on the CPU, 1 on a GPU.
pub fn shards_on(device: &Device, cpu_shards: usize) -> usize {
    match runs_on_host(device) {
        true => cpu_shards,
        false => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (text, name) in [
            ("cpu", DeviceName::Cpu),
            ("wgpu", DeviceName::Wgpu(0)),
            ("WGPU:1", DeviceName::Wgpu(1)),
            ("vulkan", DeviceName::Vulkan(0)),
            ("vulkan:2", DeviceName::Vulkan(2)),
            ("CUDA:1", DeviceName::Cuda(1)),
        ] {
            assert_eq!(text.parse::<DeviceName>().expect(text), name);
        }
        assert_eq!(DeviceName::Vulkan(3).to_string(), "vulkan:3");
        assert_eq!(DeviceName::Wgpu(2).to_string(), "wgpu:2");
        assert_eq!(
            "cuda:1".parse::<DeviceName>().expect("parses").to_string(),
            "cuda:1"
        );
    }

    #[test]
    fn bad_names_say_what_is_accepted() {
        for text in ["gpu", "cpu:0", "cuda:", "vulkan:-1", "wgpu:x", "cuda:x", ""] {
            let err = text.parse::<DeviceName>().expect_err(text).to_string();
            assert!(
                err.contains("cpu, wgpu, wgpu:N, vulkan, vulkan:N, cuda or cuda:N"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_cpu_opens_and_runs_on_the_host() {
        let device = DeviceName::Cpu.open().expect("the CPU");
        assert!(runs_on_host(&device));
        assert!(runs_on_host(&device.clone().autodiff()));
        assert_eq!(shards_on(&device, 4), 4);
    }

    #[test]
    fn a_gpu_missing_from_the_build_names_the_feature() {
        for (name, built, named, fix) in [
            (
                DeviceName::Wgpu(0),
                cfg!(feature = "wgpu"),
                "wgpu:0",
                "--features wgpu",
            ),
            (
                DeviceName::Vulkan(0),
                cfg!(feature = "vulkan"),
                "vulkan:0",
                "--features vulkan",
            ),
            (
                DeviceName::Cuda(1),
                cfg!(feature = "cuda"),
                "cuda:1",
                "--features cuda",
            ),
        ] {
            if built {
                continue;
            }
            let err = name.open().expect_err("not built").to_string();
            assert!(err.contains(fix) && err.contains(named), "{err}");
        }
    }
}

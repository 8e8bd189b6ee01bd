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

/// A device as a command names it: `cpu`, `wgpu[:N]`, `vulkan[:N]` or `cuda[:N]`. N counts from 0
/// over the devices that backend reports on this machine; left out, it is the process's local
/// rank ([`DeviceName::open`]), so the processes a launcher starts on one machine take one GPU
/// each, and a process started alone takes device 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceName {
    /// The CPU, through burn's `flex` backend.
    #[default]
    Cpu,
    /// The `N`-th adapter wgpu reports, on any graphics API, with WGSL kernels (burn's wgpu
    /// backend).
    Wgpu(Option<usize>),
    /// The `N`-th adapter Vulkan reports (burn's wgpu backend pinned to Vulkan, with cubecl's own
    /// SPIR-V kernels).
    Vulkan(Option<usize>),
    /// The `N`-th GPU CUDA reports.
    Cuda(Option<usize>),
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
            None => None,
            Some(index) => Some(index.parse::<usize>().map_err(|_| bad())?),
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
        match self.gpu() {
            None => write!(f, "cpu"),
            Some((backend, Some(index))) => write!(f, "{backend}:{index}"),
            Some((backend, None)) => write!(f, "{backend}"),
        }
    }
}

impl DeviceName {
    /// The cargo feature that builds this device's backend (`None` for the CPU, always built).
    pub fn feature(&self) -> Option<&'static str> {
        self.gpu().map(|(backend, _)| backend)
    }

    /// A GPU's backend (named as its cargo feature) and the index the name gives, if any; `None`
    /// for the CPU.
    fn gpu(&self) -> Option<(&'static str, Option<usize>)> {
        match *self {
            DeviceName::Cpu => None,
            DeviceName::Wgpu(index) => Some(("wgpu", index)),
            DeviceName::Vulkan(index) => Some(("vulkan", index)),
            DeviceName::Cuda(index) => Some(("cuda", index)),
        }
    }

    /// The device, if this build has its backend and this machine has the device. Opening a GPU
    /// asks its backend for the devices it reports, so a missing driver or an index past the
    /// last device is an error here, not a panic at the first tensor; a CUDA GPU's driver, NVRTC
    /// and headers are checked too (`cuda_runtime`, in CUDA builds). `local_rank` is this
    /// process's rank among the processes a launcher started on this machine (0 for a process
    /// started alone): it picks the GPU where the name gives no index (`index_of` has the rule).
    pub fn open(&self, local_rank: usize) -> Result<Device> {
        let Some(gpu @ (feature, _)) = self.gpu() else {
            return Ok(Device::flex());
        };
        // Some drivers' loaders panic when their library is missing: that is no device.
        let reported = std::panic::catch_unwind(|| self.reported_devices());
        let Some(devices) = reported.unwrap_or_else(|_| Some(Vec::new())) else {
            return Err(GlowError::Device(format!(
                "this glowflow was built without the `{feature}` feature, so it cannot use \
                 {self}: rebuild it with `cargo build --release --features {feature}` (README: \
                 \"Training on a GPU\"), or leave out --device to use the CPU"
            )));
        };
        let index = self.index_of(gpu, local_rank, devices.len())?;
        let device = devices
            .into_iter()
            .nth(index)
            .expect("index_of counts the devices");
        #[cfg(feature = "cuda")]
        if let DeviceName::Cuda(_) = self {
            cuda_runtime::check(&DeviceName::Cuda(Some(index)).to_string())?;
        }
        Ok(device)
    }

    /// Which of the `count` devices this GPU name's backend reports the process of `local_rank`
    /// takes (`backend` and `given` as [`DeviceName::gpu`] returns them): the index the name
    /// gives; else the local rank, so that the processes a launcher starts on one machine take a
    /// GPU each, as Horovod's `local_rank()` pins them. Where the backend reports a single device,
    /// every process takes it: a launcher that shows each process its own GPU (Slurm's
    /// `--gpus-per-task`, which sets `CUDA_VISIBLE_DEVICES`), or processes that share one GPU. An
    /// error where no device fits says what to change.
    fn index_of(
        &self,
        (backend, given): (&str, Option<usize>),
        local_rank: usize,
        count: usize,
    ) -> Result<usize> {
        let no_device = |problem: String| GlowError::Device(format!("{self}: {problem}"));
        let reports = format!("this machine's {backend} driver reports {count} device(s)");
        match (given, count) {
            (_, 0) => Err(no_device(format!(
                "{reports} ({hint})",
                hint = match self {
                    DeviceName::Cuda(_) => {
                        "is the NVIDIA driver, libcuda.so.1, installed and the GPU visible?"
                    }
                    _ => {
                        "is the GPU driver installed, with the Vulkan loader libvulkan.so.1 and \
                         the driver's ICD file?"
                    }
                }
            ))),
            (Some(index), _) if index < count => Ok(index),
            (Some(_), _) => Err(no_device(format!("{reports}; count from 0"))),
            (None, 1) => Ok(0),
            (None, _) if local_rank < count => Ok(local_rank),
            (None, _) => Err(no_device(format!(
                "this process is local rank {local_rank} of the processes started on this machine, \
                 and {reports}, one for each of local ranks 0 to {last}: start at most {count} \
                 processes per machine (mpirun --map-by ppr:{count}:node), or name the one device \
                 they all share (--device {backend}:N)",
                last = count - 1
            ))),
        }
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
            ("wgpu", DeviceName::Wgpu(None)),
            ("WGPU:1", DeviceName::Wgpu(Some(1))),
            ("vulkan", DeviceName::Vulkan(None)),
            ("vulkan:0", DeviceName::Vulkan(Some(0))),
            ("vulkan:2", DeviceName::Vulkan(Some(2))),
            ("CUDA:1", DeviceName::Cuda(Some(1))),
            ("cuda", DeviceName::Cuda(None)),
        ] {
            assert_eq!(text.parse::<DeviceName>().expect(text), name);
        }
        assert_eq!(DeviceName::Vulkan(Some(3)).to_string(), "vulkan:3");
        assert_eq!(DeviceName::Wgpu(Some(2)).to_string(), "wgpu:2");
        assert_eq!(DeviceName::Cuda(None).to_string(), "cuda");
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
        let device = DeviceName::Cpu.open(3).expect("the CPU, on any local rank");
        assert!(runs_on_host(&device));
        assert!(runs_on_host(&device.clone().autodiff()));
        assert_eq!(shards_on(&device, 4), 4);
    }

    #[test]
    fn a_gpu_missing_from_the_build_names_the_feature() {
        for (name, built, named, fix) in [
            (
                DeviceName::Wgpu(None),
                cfg!(feature = "wgpu"),
                "use wgpu:",
                "--features wgpu",
            ),
            (
                DeviceName::Vulkan(Some(0)),
                cfg!(feature = "vulkan"),
                "vulkan:0",
                "--features vulkan",
            ),
            (
                DeviceName::Cuda(Some(1)),
                cfg!(feature = "cuda"),
                "cuda:1",
                "--features cuda",
            ),
        ] {
            if built {
                continue;
            }
            let err = name.open(0).expect_err("not built").to_string();
            assert!(err.contains(fix) && err.contains(named), "{err}");
        }
    }

    /// `index_of` for a name on a machine whose backend reports `count` devices.
    fn index(name: &str, local_rank: usize, count: usize) -> Result<usize> {
        let name = name.parse::<DeviceName>().expect(name);
        name.index_of(name.gpu().expect("a GPU"), local_rank, count)
    }

    #[test]
    fn a_named_index_is_taken_on_every_local_rank() {
        for local_rank in 0..4 {
            assert_eq!(index("cuda:2", local_rank, 4).expect("on the machine"), 2);
            assert_eq!(index("vulkan:0", local_rank, 1).expect("on the machine"), 0);
        }
        let err = index("cuda:4", 0, 4)
            .expect_err("past the last")
            .to_string();
        assert!(
            err.contains("cuda:4") && err.contains("reports 4 device(s); count from 0"),
            "{err}"
        );
    }

    #[test]
    fn without_an_index_each_local_rank_takes_its_own_gpu() {
        for local_rank in 0..8 {
            assert_eq!(index("cuda", local_rank, 8).expect("one each"), local_rank);
        }
        // One device reported: every process's (one GPU shown to each, or one GPU shared).
        for local_rank in 0..3 {
            assert_eq!(index("wgpu", local_rank, 1).expect("the one"), 0);
        }
        let err = index("cuda", 2, 2).expect_err("none left").to_string();
        for part in [
            "cuda: this process is local rank 2",
            "reports 2 device(s)",
            "at most 2 processes per machine",
            "--map-by ppr:2:node",
            "--device cuda:N",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
    }

    #[test]
    fn no_device_reported_names_the_driver_to_install() {
        for (name, local_rank, driver) in [
            ("cuda", 0, "libcuda.so.1"),
            ("cuda:1", 0, "libcuda.so.1"),
            ("vulkan", 3, "libvulkan.so.1"),
            ("wgpu:0", 0, "libvulkan.so.1"),
        ] {
            let err = index(name, local_rank, 0).expect_err(name).to_string();
            assert!(
                err.contains(&format!("{name}: this machine's"))
                    && err.contains("reports 0 device(s)"),
                "{err}"
            );
            assert!(err.contains(driver), "{err}");
        }
    }
}

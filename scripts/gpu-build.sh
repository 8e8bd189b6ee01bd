#!/usr/bin/env bash
# Builds glowflow with a GPU backend, on a machine that reaches only the package registries:
#
#   scripts/gpu-build.sh wgpu|vulkan|cuda [mpi] [lint]
#
# With `lint` it runs `cargo clippy --features BACKEND --all-targets -- -D warnings` in the same
# environment instead of the release build (what .ci/run does for each backend). With `mpi` the
# build also has the `mpi` feature, for training on several GPUs (`mpirun -np 8 glowflow --device
# cuda train ...`, a GPU per local rank; README, "Training on several processes"); that binary
# needs Open MPI's libmpi.so.40 where it runs.
#
# wgpu:   burn's wgpu backend with WGSL kernels, which wgpu (naga) translates for the adapter's
#         graphics API (Vulkan first on Linux): a plain `cargo build --features wgpu`, no LLVM. At
#         run time on Linux it needs the Vulkan loader (libvulkan.so.1) and the driver's ICD.
# vulkan: burn's wgpu backend pinned to Vulkan (SPIR-V): a plain `cargo build --features vulkan`,
#         no LLVM. At run time it needs the Vulkan loader (libvulkan.so.1) and the GPU driver's ICD.
# cuda:   burn's CUDA backend with its kernels compiled as CUDA C++ by NVRTC at run time (cubecl's
#         `cuda-cpp`). cubecl-cuda 0.11.3 still links cubecl-llvm, whose build script
#         (tracel-llvm-bundler) downloads an LLVM 23.1 bundle unless it finds one installed. This
#         script installs a stand-in over Debian's LLVM 22 (apt-get install llvm-22-dev
#         libpolly-22-dev libzstd-dev; LLVM's static libraries link against zstd): the bundler's
#         sentinel file and an llvm-config that forwards to Debian's, with absolute library paths
#         (/usr/lib/.../libNAME.so) rewritten to -lNAME. LLVM is linked (statically) but never
#         run. At run time it needs libcuda (the driver) and NVRTC with the CUDA headers
#         ($CUDA_PATH/include or /usr/local/cuda/include), and libstdc++, zlib and libzstd.
#         The CUDA version of the driver and NVRTC bindings (cudarc's, loaded at run time) is
#         fixed at build time: $CUDARC_CUDA_VERSION where set (e.g. 12080 for CUDA 12.8), else
#         the toolkit's (`nvcc --version`) where nvcc is on the PATH, else 13.0 (13000). A
#         program built for CUDA 13.0 runs on every driver of the 13 series (R580 and later),
#         the lent H100/H200 machines' included (driver 580.159, nvcc 13.0); cudarc's own
#         fallback, its newest (13.4), would ask a 13.0 driver for what it may not have. Set it
#         to the GPU machine's CUDA where that is older; the script prints the version it
#         built for.
#
# Each backend builds in its own target directory, target/gpu-BACKEND, so the CPU build in
# target/release stays as it is. The binary is target/gpu-BACKEND/release/glowflow; a stripped,
# xz-compressed copy for carrying to a GPU machine is written to dist/glowflow-BACKEND.xz
# (dist/glowflow-BACKEND-mpi.xz with `mpi`; xz, not zstd: Python's lzma unpacks it where neither
# program is installed, bench/gpu_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/gpu-build.sh wgpu|vulkan|cuda [mpi] [lint]"
backend=${1:?$usage}
shift
mode=build features=$backend name=$backend
for word in "$@"; do
  case $word in
    lint) mode=lint ;;
    mpi) features=$backend,mpi name=$backend-mpi ;;
    *) echo "$usage" >&2; exit 1 ;;
  esac
done
case $backend in
  wgpu | vulkan) ;;
  cuda)
    if [[ -z ${CUDARC_CUDA_VERSION:-} ]] && ! command -v nvcc > /dev/null; then
      export CUDARC_CUDA_VERSION=13000
    fi
    llvm_config=/usr/lib/llvm-22/bin/llvm-config
    if ! dpkg -s llvm-22-dev libpolly-22-dev libzstd-dev > /dev/null 2>&1; then
      echo "the cuda build needs Debian's LLVM 22: apt-get install llvm-22-dev libpolly-22-dev libzstd-dev" >&2
      exit 1
    fi
    # The bundler looks for $XDG_DATA_HOME/tracel/tracel-llvm-<version>/ (cubecl-llvm 0.11.3).
    export XDG_DATA_HOME=$PWD/target/gpu-cuda/llvm-stand-in
    bundle=$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4
    # Written only where missing or different: the bundler's build script reruns when the
    # sentinel's time changes, and with it everything above it (a full rebuild).
    mkdir -p "$bundle/bin"
    [[ -e $bundle/.tracel-llvm-installed ]] || touch "$bundle/.tracel-llvm-installed"
    shim=$(cat <<SHIM
#!/bin/sh
# Debian's LLVM 22 answering for the LLVM 23.1 bundle (scripts/gpu-build.sh).
$llvm_config "\$@" | sed -E 's#(^| )/[^ ]*/lib([A-Za-z0-9_+.-]+)\.so([.0-9]*)#\1-l\2#g'
SHIM
)
    if [[ $(cat "$bundle/bin/llvm-config" 2>/dev/null) != "$shim" ]]; then
      printf '%s\n' "$shim" > "$bundle/bin/llvm-config"
      chmod +x "$bundle/bin/llvm-config"
    fi
    ;;
  *)
    echo "unknown GPU backend '$backend': choose wgpu, vulkan or cuda" >&2
    exit 1
    ;;
esac
if [[ $mode == lint ]]; then
  exec cargo clippy --features "$features" --all-targets -- -D warnings
fi
CARGO_TARGET_DIR=target/gpu-$backend cargo build --release --features "$features"
binary=target/gpu-$backend/release/glowflow
mkdir -p dist
strip -o "dist/glowflow-$name" "$binary"
xz -9 -T0 -f "dist/glowflow-$name"
ls -l "$binary" "dist/glowflow-$name.xz"
if [[ $backend == cuda ]]; then
  echo "CUDA bindings built for: $(grep -ho 'feature="cuda-[0-9]*"' target/gpu-cuda/release/build/cudarc-*/output | sort -u | tr '\n' ' ')"
fi

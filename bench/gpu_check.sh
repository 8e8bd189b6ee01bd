#!/usr/bin/env bash
# The GPU device check (issue 12) in one call on a GPU machine, at most 8 minutes:
#
#   bench/gpu_check.sh GLOWFLOW DEVICE OUT_DIR [Y0AST_SRC ROSINALITY_SRC [FASHION_MNIST_DIR]]
#
# GLOWFLOW is a glowflow binary built with the GPU backend (scripts/gpu-build.sh), or its
# compressed copy `dist/glowflow-BACKEND.xz`, which the script unpacks with Python's lzma (a GPU
# machine's image need not have xz or zstd, but this script needs python3 anyway), DEVICE its
# device (wgpu, wgpu:N, vulkan, vulkan:N, cuda, cuda:N). Y0AST_SRC and ROSINALITY_SRC are work
# trees of the PyTorch peers (their code is fetched, never committed), run with torch on `cuda`;
# FASHION_MNIST_DIR holds the IDX files for the short training run. In order, each step bounded
# by its own timeout and all of them by GPU_CHECK_SECONDS (default 480), so that the call returns
# within the device machine's 10-minute limit with time to pack the results; a step that would
# start with less than 10 seconds left is skipped:
#
# 1. exactness: `glowflow check-device` (round trip at the paper's depth within 1e-3, bits/dim on
#    the GPU and the CPU within 1e-4, a small model's gradients within 1e-4 relative);
# 2. speed: `glowflow bench` on config 3 (3x32x32, L = 3, K = 32, width 512, batch 64) with burn's
#    conv2d and with the CPU's matrix-product convolutions, then both peers on the same GPU;
# 3. training on the GPU = training on the CPU: three steps of a small model (L = 2, K = 2, width
#    32, batch 16) on the first 2000 images of Fashion-MNIST, once on DEVICE and once on the CPU
#    (the same binary), compared step by step and weight by weight (bench/datafiles.py
#    compare-runs, tolerance 1e-4);
# 4. a short training run on Fashion-MNIST (300 steps) with its bits/dim curve;
# 5. constant-memory mode: device memory of a training step at K = 8, 16, 32, 64 (batch 16), with
#    stored and with recomputed activations, each in its own process.
#
# With GPU_CHECK_FALLBACK="GLOWFLOW2 DEVICE2" (say "dist/glowflow-wgpu.xz wgpu"), a first route
# that cannot run at all (step 1 ends without a report: the device does not open, a kernel does
# not compile, the process crashes) is logged and every step runs on the second one instead, so
# that one call on a lent machine can try both routes. A report whose checks fail is a result,
# not a reason to switch.
#
# Everything lands in OUT_DIR (JSON, the runs' metrics.csv, the comparison and the log);
# `python3 bench/gpu_report.py OUT_DIR` turns it into the tables of BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
glowflow=${1:?usage: bench/gpu_check.sh GLOWFLOW DEVICE OUT_DIR [Y0AST_SRC ROSINALITY_SRC [FASHION_MNIST_DIR]]}
device=${2:?device, e.g. wgpu, vulkan or cuda}
out=${3:?output directory}
y0ast=${4:-}
rosinality=${5:-}
data=${6:-}
mkdir -p "$out"
log=$out/gpu_check.log
# What the script makes for itself (the unpacked binaries, a cubecl.toml) goes when it ends.
unpacked_dir=$(mktemp -d)
made=("$unpacked_dir")
trap 'rm -rf -- "${made[@]}"' EXIT
# `runnable BINARY`: prints the path of BINARY, unpacked first where it is a `.xz`.
runnable() {
  [[ $1 == *.xz ]] || { echo "$1"; return; }
  local unpacked
  unpacked=$unpacked_dir/$(basename "$1" .xz)
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$1" "$unpacked" && chmod +x "$unpacked" && echo "$unpacked"
}
glowflow=$(runnable "$glowflow") || { echo "cannot unpack $1" >&2; exit 1; }
# cubecl's on-disk cache of compiled kernels (the PTX that NVRTC writes for the cuda build; the
# wgpu builds have none), off unless a cubecl.toml turns it on: with it, each of the processes
# below loads the kernels an earlier one compiled instead of compiling them again within its own
# time bound. It lives in target/environment beside cubecl's autotune results. Exactness runs
# first, on an empty cache; step 3 runs on the cached kernels. A cubecl.toml already here stays.
if [[ ! -e cubecl.toml ]]; then
  printf '[compilation]\ncache = true\n' > cubecl.toml
  made+=("$PWD/cubecl.toml")
fi
step() { echo "== $(date +%T) $*" | tee -a "$log"; }
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-480}))
# `bounded CAP COMMAND...`: COMMAND under a timeout of CAP seconds or what is left, if 10 or more.
# SIGTERM first, SIGKILL 10 s later: `glowflow train` takes SIGTERM as a request to stop at the
# next step with a checkpoint, which on a slow device can come minutes later.
bounded() {
  local cap=$1 left=$((deadline - SECONDS)); shift
  if ((left < 10)); then echo "skipped (time is up): $*" >> "$log"; return 125; fi
  timeout --kill-after=10 $((cap < left ? cap : left)) "$@"
}
# Config 3 with the peers' architecture (bench/fashion_mnist_matched.json, as in bench/speed.sh).
shape=(--config bench/fashion_mnist_matched.json --lu true --image 3x32x32 --levels 3 --width 512)

# The cuda build's NVRTC needs the toolkit's headers and libnvrtc. Where the toolkit is not at
# cubecl's default places (/usr/local/cuda, /opt/cuda; a pip-installed one, say), take both from
# the nvcc on the PATH: its directory's parent holds include/ and lib/ (or lib64/) in either layout.
# (Set for a cuda route, first or fallback; the wgpu builds do not read them.)
if [[ "$device ${GPU_CHECK_FALLBACK:-}" == *cuda* && -z ${CUDA_PATH:-} && ! -d /usr/local/cuda && ! -d /opt/cuda ]] &&
  command -v nvcc > /dev/null; then
  CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  export CUDA_PATH LD_LIBRARY_PATH=$CUDA_PATH/lib64:$CUDA_PATH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

# The lent machines mount the NVIDIA driver read-only at /usr/local/nvidia, where the Vulkan
# loader does not look for its ICD file (the device tool's README): point the loader at it.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ "$device ${GPU_CHECK_FALLBACK:-}" =~ wgpu|vulkan && -z ${VK_DRIVER_FILES:-} && -e $nvidia_icd ]] &&
  ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* > /dev/null 2>&1; then
  # (VK_ICD_FILENAMES: its name in Vulkan loaders before 1.3.207.)
  export VK_DRIVER_FILES=$nvidia_icd VK_ICD_FILENAMES=$nvidia_icd
fi

step "0. the machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  # The CUDA the driver supports and the toolkit's NVRTC: a cuda build's NVRTC must not be newer
  # than the driver, nor the driver of an older major version than its bindings (glowflow checks
  # both when it opens the device; scripts/gpu-build.sh, CUDARC_CUDA_VERSION).
  nvidia-smi 2>&1 | grep -o "CUDA Version: [0-9.]*"
  command -v nvcc > /dev/null && nvcc --version | tail -n 2
  ldconfig -p | grep -E "libnvrtc\.so|libcuda\.so"
  echo "CUDA_PATH=${CUDA_PATH:-} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-} VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  # Without this extension cubecl 0.11.3 compiles shared memory to invalid SPIR-V (README,
  # "Training on a GPU"): whether the Vulkan route can work on this driver.
  command -v vulkaninfo > /dev/null &&
    vulkaninfo 2>/dev/null | grep -E "deviceName|driverInfo|VK_KHR_workgroup_memory_explicit_layout"
} >> "$log" 2>&1
# `exactness`: step 1 on $glowflow and $device, its report in check.json.
exactness() {
  bounded 120 "$glowflow" --device "$device" check-device --out "$out/check.json" >> "$log" 2>&1
  echo "check-device exit status $?" | tee -a "$log"
}
step "1. exactness on $device"
exactness
if [[ ! -s $out/check.json && -n ${GPU_CHECK_FALLBACK:-} ]]; then
  read -r fallback fallback_device <<< "$GPU_CHECK_FALLBACK"
  step "1. $device cannot run (above); every step on the fallback, $fallback_device ($fallback)"
  glowflow=$(runnable "$fallback") || { echo "cannot unpack $fallback" | tee -a "$log"; exit 1; }
  device=$fallback_device
  exactness
fi

step "2. speed, config 3, batch 64"
for conv in auto matrix-products; do
  bounded 75 "$glowflow" --device "$device" bench "${shape[@]}" --depth 32 --batch-size 64 --warmup 2 \
    --repeats 5 --conv "$conv" --out "$out/bench-config3-$conv.json" > /dev/null 2>> "$log"
  echo "glowflow bench --conv $conv exit status $?" | tee -a "$log"
done
if [[ -n $y0ast ]]; then
  bounded 50 python3 bench/torch_reference.py --glow-src "$y0ast" --mode speed --device cuda \
    --threads 8 --lu --coupling affine --optimizer adam --lr 1e-4 --channels 3 --size 32 \
    --levels 3 --steps 32 --width 512 --batch 64 --warmup-reps 2 --reps 5 \
    --out "$out/torch-config3.json" > /dev/null 2>> "$log"
  echo "y0ast exit status $?" | tee -a "$log"
fi
if [[ -n $rosinality ]]; then
  bounded 50 python3 bench/torch_rosinality.py --glow-src "$rosinality" --device cuda --threads 8 \
    --lr 1e-4 --channels 3 --size 32 --levels 3 --steps 32 --width 512 --batch 64 \
    --warmup-reps 2 --reps 5 --out "$out/rosinality-config3.json" > /dev/null 2>> "$log"
  echo "rosinality exit status $?" | tee -a "$log"
fi

if [[ -n $data ]]; then
  step "3. three training steps on $device and on the CPU, compared"
  python3 bench/datafiles.py cut-idx "$data" "$out/fashion-mnist-2000" --train 2000 --test 200
  small=(--data "$out/fashion-mnist-2000" --levels 2 --depth 2 --width 32 --batch-size 16
    --init-images 16 --steps 3 --eval-every 0 --sample-every 0 --log-every 1 --checkpoint-every 1000)
  for run_device in "device:$device" cpu:cpu; do
    run=$out/three-steps-${run_device%%:*} where=${run_device#*:}
    rm -rf "$run"
    bounded 60 "$glowflow" --device "$where" train "${small[@]}" --out "$run" >> "$log" 2>&1
    echo "three steps on $where exit status $?" | tee -a "$log"
  done
  python3 bench/datafiles.py compare-runs "$out/three-steps-cpu" "$out/three-steps-device" \
    --tolerance 1e-4 > "$out/three-steps-compare.txt" 2>&1
  echo "compare-runs exit status $?" | tee -a "$log"

  step "4. 300 training steps on Fashion-MNIST"
  bounded 90 "$glowflow" --device "$device" train --data "$data" --steps 300 --eval-every 100 \
    --eval-images 2000 --sample-every 0 --out "$out/train-run" >> "$log" 2>&1
  echo "train exit status $?" | tee -a "$log"
  cp "$out/train-run/metrics.csv" "$out/train-metrics.csv" 2>/dev/null
fi

step "5. device memory of a training step at K = 8 .. 64"
for k in 8 16 32 64; do
  for mode in stored recompute; do
    flag=(); [[ $mode == recompute ]] && flag=(--recompute-activations)
    bounded 25 "$glowflow" --device "$device" bench "${shape[@]}" --depth "$k" \
      --batch-size 16 --phases train --warmup 1 --repeats 2 "${flag[@]}" \
      --out "$out/memory-k$k-$mode.json" > /dev/null 2>> "$log"
    echo "K = $k $mode exit status $?" | tee -a "$log"
  done
done
step "done"

#!/usr/bin/env bash
# Training speed on 1 process x 1 thread, 2 processes x 1 thread (mpirun) and 1 process x 2
# threads, for configs 1 and 2 of the speed harness trained on Fashion-MNIST padded to 32x32
# (BENCHMARKS.md, "Training on several processes"), and whether the three end with the same
# weights.
#
#     cargo build --release --features mpi
#     bench/mpi_speed.sh target/release/glowflow OUT_DIR [WIDTH ...]    # default widths: 128 512
#
# OUT_DIR receives a copy of Fashion-MNIST with its first 64 test images (so that the final
# evaluation is short) and one run directory per launch. Needs dataset-fashion-mnist and Open MPI.
set -euo pipefail
binary=$(realpath "$1")
out=$2
shift 2
widths=("${@:-128 512}")
here=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

data="$out/fashion-mnist-64-test"
mkdir -p "$data"
python3 - "$data" <<'PY'
import gzip, struct, sys
src, dst, n = "/usr/share/datasets/fashion-mnist/", sys.argv[1] + "/", 64
for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]:
    open(dst + name, "wb").write(gzip.open(src + name + ".gz").read())
images = gzip.open(src + "t10k-images-idx3-ubyte.gz").read()
labels = gzip.open(src + "t10k-labels-idx1-ubyte.gz").read()
open(dst + "t10k-images-idx3-ubyte", "wb").write(
    images[:4] + struct.pack(">I", n) + images[8:16] + images[16:16 + n * 28 * 28])
open(dst + "t10k-labels-idx1-ubyte", "wb").write(labels[:4] + struct.pack(">I", n) + labels[8:8 + n])
PY

# Compares the tensors (not the header's key order) of two safetensors files.
same_tensors() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
print(f"{len(a)} tensors", "identical" if a == b else "DIFFERENT")
PY
}

for width in ${widths[*]}; do
  options=(--data "$data" --config "$here/fashion_mnist_matched.json" --lu true --image 1x32x32
    --levels 3 --depth 8 --width "$width" --batch-size 32 --pad-to 32 --steps 30 --eval-every 0
    --sample-every 0 --checkpoint-every 1000 --log-every 10 --batch-shards 2)
  runs="$out/w$width"
  rm -rf "$runs"
  echo "width $width, 1 process x 1 thread:"
  RAYON_NUM_THREADS=1 "$binary" train --out "$runs/1x1" "${options[@]}" 2>/dev/null | tail -1
  echo "width $width, 2 processes x 1 thread:"
  RAYON_NUM_THREADS=1 mpirun --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
    -np 2 -x RAYON_NUM_THREADS "$binary" train --out "$runs/2x1" "${options[@]}" 2>/dev/null | tail -1
  echo "width $width, 1 process x 2 threads:"
  RAYON_NUM_THREADS=2 "$binary" train --out "$runs/1x2" "${options[@]}" 2>/dev/null | tail -1
  for other in 2x1 1x2; do
    echo -n "1x1 vs $other: "
    same_tensors "$runs/1x1/model.safetensors" "$runs/$other/model.safetensors"
  done
done

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
python3 "$here/datafiles.py" cut-idx /usr/share/datasets/fashion-mnist "$data" --test 64

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
    echo "1x1 vs $other:"
    python3 "$here/datafiles.py" compare-runs "$runs/1x1" "$runs/$other" | tail -2 || true
  done
done

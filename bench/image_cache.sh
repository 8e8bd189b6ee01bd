#!/usr/bin/env bash
# What the image cache (GLOWFLOW_IMAGE_CACHE, src/data/image_cache.rs) saves on a large image
# folder, or on the downsampled ImageNet's NumPy archives: wall time and memory of short
# `glowflow train` runs and a `glowflow eval` that reads every image, on 1 process and on 2
# (mpirun), with the cache off, empty (the run decodes into it) and filled (the run maps it).
# BENCHMARKS.md, "Large image folders" and "The downsampled ImageNet's archives".
#
#     cargo build --release --features mpi --target-dir target/mpi
#     bench/image_cache.sh target/mpi/release/glowflow OUT_DIR [IMAGES [pngs|npz]]
#
# With EVAL=0 in the environment only the training runs are made (and no data for `eval`), for
# a full-size dataset whose evaluation would take most of an hour.
#
# With pngs (the default), OUT_DIR receives IMAGES (default 100000) synthetic 32x32 PNGs as
# imagenet32's train_32x32/ (and 2000 as valid_32x32/) and a second data directory whose
# valid_32x32/ is the training folder (so that `eval` reads every image); the runs use the
# `imagenet32` preset. With npz, it receives the same images as imagenet32-ycond's archives
# (train_data_batch_1.npz ... _10.npz, and 2000 in val_data.npz; labels drawn from 1 to 1000),
# and a second directory whose val_data.npz holds IMAGES others, which `eval` reads; the runs use
# the `imagenet32-ycond` preset. OUT_DIR also receives the cache and the runs. Memory is the largest sum over the
# glowflow processes of their proportional set size (Pss: a page shared by k processes counts
# 1/k in each) and of their resident set size (Rss: counted in full in each), sampled every 0.2
# s from /proc/PID/smaps_rollup. Needs Open MPI and python3 with numpy.
set -euo pipefail
binary=$(realpath "$1")
out=$(mkdir -p "$2" && realpath "$2")
images=${3:-100000}
format=${4:-pngs}
here=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

case "$format" in
  pngs)
    preset=imagenet32 data="$out/data" every="$out/every-image"
    if [ ! -d "$data/train_32x32" ]; then
      python3 "$here/datafiles.py" synthetic-pngs "$data/train_32x32" "$images"
      python3 "$here/datafiles.py" synthetic-pngs "$data/valid_32x32" 2000 --seed 1
    fi
    mkdir -p "$every"
    ln -sfn "$data/train_32x32" "$every/train_32x32"
    ln -sfn "$data/train_32x32" "$every/valid_32x32"
    ;;
  npz)
    preset=imagenet32-ycond data="$out/npz" every="$out/npz-every-image"
    if [ ! -f "$data/val_data.npz" ]; then
      python3 "$here/datafiles.py" synthetic-npz "$data" "$images"
    fi
    if [ "${EVAL:-1}" != 0 ] && [ ! -f "$every/val_data.npz" ]; then
      python3 "$here/datafiles.py" synthetic-npz "$every" 0 --batches 0 --val "$images" --seed 1
    fi
    ;;
  *) echo "the format is pngs or npz, not $format" >&2; exit 2 ;;
esac

# measure LABEL PROCESSES CACHE COMMAND...: runs the glowflow command on PROCESSES ranks with
# GLOWFLOW_IMAGE_CACHE=CACHE and prints its wall time and peak summed Pss and Rss.
measure() {
  local label=$1 processes=$2 cache=$3
  shift 3
  local launch=()
  if [ "$processes" -gt 1 ]; then
    launch=(mpirun --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none
      -np "$processes" -x GLOWFLOW_IMAGE_CACHE -x RAYON_NUM_THREADS)
  fi
  local start peak_pss=0 peak_rss=0
  start=$(date +%s.%N)
  GLOWFLOW_IMAGE_CACHE=$cache RAYON_NUM_THREADS=$((2 / processes)) \
    "${launch[@]}" "$binary" "$@" >"$out/$format-$label.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    local pss=0 rss=0 p fields
    for p in $(ps -eo pid=,args= | awk -v bin="$binary" '$2 == bin {print $1}'); do
      fields=$(awk '/^Pss:/{p=$2} /^Rss:/{r=$2} END{print p+0, r+0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo "0 0")
      pss=$((pss + ${fields% *})) rss=$((rss + ${fields#* }))
    done
    peak_pss=$((pss > peak_pss ? pss : peak_pss)) peak_rss=$((rss > peak_rss ? rss : peak_rss))
    sleep 0.2
  done
  wait "$pid"
  printf '%-28s %6.1f s wall, peak Pss %5d MB, peak Rss %5d MB %s\n' "$label" \
    "$(echo "$(date +%s.%N) - $start" | bc)" $((peak_pss / 1024)) $((peak_rss / 1024)) \
    "$(grep -ho 'test bits/dim: [0-9.]*' "$out/$format-$label.log" | head -1)"
}

train=(train --preset "$preset" --data "$data" --depth 1 --width 16 --steps 4 --batch-size 16
  --init-images 64 --eval-every 0 --sample-every 0)
cache="$out/cache-$format"
for processes in 1 2; do
  rm -rf "$cache" "$out"/runs-$format-$processes
  measure "train, $processes proc, cache off" "$processes" off "${train[@]}" --out "$out/runs-$format-$processes/off"
  measure "train, $processes proc, cache empty" "$processes" "$cache" "${train[@]}" --out "$out/runs-$format-$processes/empty"
  measure "train, $processes proc, cache filled" "$processes" "$cache" "${train[@]}" --out "$out/runs-$format-$processes/filled"
done
if [ "${EVAL:-1}" = 0 ]; then
  du -b "$cache"/*.images
  exit
fi
model="$out/runs-$format-1/off"
if [ "$format" = npz ]; then
  # The archives that `eval` reads are not the training ones: a run fills their entry first.
  measure "eval all, 1 proc, cache empty" 1 "$cache" eval --model "$model" --data "$every"
fi
for processes in 1 2; do
  measure "eval all, $processes proc, cache off" "$processes" off eval --model "$model" --data "$every"
  measure "eval all, $processes proc, cache filled" "$processes" "$cache" eval --model "$model" --data "$every"
done
du -b "$cache"/*.images

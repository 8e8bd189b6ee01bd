#!/usr/bin/env bash
# Depth (Glow §5): the same Fashion-MNIST data and training recipe (the default preset: 1500 steps
# of 64 images, Adam 5e-4) with a shallow model (L = 1, K = 4: 4 steps of flow) and the default
# deeper one (L = 2, K = 8: 16 steps), then samples of both from the same seed side by side.
#
#   experiments/depth.sh [OUT_PNG]
#
# Reuses runs/fashion-mnist (the README's main command) when it exists. Prints each model's test
# bits/dim on all 10 000 test images.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/fashion-mnist-depth.png}
cargo build --release
bin=${CARGO_TARGET_DIR:-target}/release/glowflow
[[ -f runs/depth-shallow/model.safetensors ]] ||
  $bin train --out runs/depth-shallow --levels 1 --depth 4 --sample-every 0 --eval-every 0
[[ -f runs/fashion-mnist/model.safetensors ]] || $bin train
for run in runs/depth-shallow runs/fashion-mnist; do
  echo "$run: $($bin eval --model "$run")"
done
# Rows 1-2: the shallow model; rows 3-4: the deep one (T = 0.7, seed 0 for both).
$bin sample --model runs/depth-shallow runs/fashion-mnist --n 16 --columns 8 --temperature 0.7 --zoom 2 \
  --out "$out"

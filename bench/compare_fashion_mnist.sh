#!/usr/bin/env bash
# Trains the same Glow (1x28x28, L = 2, K = 8, width 128, affine, plain 1x1 conv, learned top
# prior) for the same 700 steps with the same recipe (batch 64, Adam 5e-4, 100 warm-up steps, no
# clipping, no EMA, ActNorm init on 64 images) twice on this machine: with glowflow, and with the
# PyTorch Glow of y0ast/Glow-PyTorch driven by bench/torch_reference.py. Both use 2 threads and
# evaluate test bits/dim on all 10 000 Fashion-MNIST test images.
#
#   bench/compare_fashion_mnist.sh REFERENCE_SRC [OUT_DIR] [SEED]
#
# SEED (default 0) seeds both programs; other seeds write to OUT_DIR/glowflow-seedN and
# OUT_DIR/torch-seedN.json (BENCHMARKS.md reports seeds 0, 1 and 2).
#
# REFERENCE_SRC: a checkout of y0ast/Glow-PyTorch (see bench/README.md); needs `pip install torch`.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: bench/compare_fashion_mnist.sh REFERENCE_SRC [OUT_DIR] [SEED]}
out=${2:-runs/compare-fashion-mnist}
seed=${3:-0}
tag=$([[ $seed == 0 ]] && echo "" || echo "-seed$seed")
data=/usr/share/datasets/fashion-mnist
mkdir -p "$out"

cargo build --release
# glowflow backs glibc's heaps with transparent huge pages by itself (src/main.rs); the PyTorch
# peers get the same setting here, so that no ratio comes from the page size.
export GLIBC_TUNABLES=glibc.malloc.hugetlb=1
# The same architecture as the reference: zero padding, ActNorm without openai's x3 log-scale factor.
RAYON_NUM_THREADS=2 /usr/bin/time -v "${CARGO_TARGET_DIR:-target}/release/glowflow" train --data "$data" --out "$out/glowflow$tag" \
  --config bench/fashion_mnist_matched.json --steps 700 --batch-size 64 --lr 5e-4 --warmup-steps 100 --lr-decay constant \
  --optimizer adam --grad-clip-norm 0 --ema-decay 0 --init-images 64 --seed "$seed" \
  --eval-every 0 --sample-every 0 --checkpoint-every 700 --log-every 50 2>&1 | tee "$out/glowflow$tag.log"

python3 bench/torch_reference.py --glow-src "$src" --mode train --data "$data" --levels 2 --steps 8 \
  --width 128 --coupling affine --batch 64 --train-steps 700 --warmup-steps 100 --lr 5e-4 \
  --optimizer adam --seed "$seed" --threads 2 --log-every 50 --out "$out/torch$tag.json" | tee "$out/torch$tag.log"

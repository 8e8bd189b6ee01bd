#!/usr/bin/env bash
# Speed and memory of glowflow against the PyTorch Glow of y0ast/Glow-PyTorch, on this machine, in
# one session, with the same thread count (2), the same architecture and the same batch:
#
#   bench/speed.sh REFERENCE_SRC [OUT_DIR] [speed|memory|all] [ROSINALITY_SRC]
#
# REFERENCE_SRC is a work tree of y0ast/Glow-PyTorch; with ROSINALITY_SRC (a work tree of
# rosinality/glow-pytorch) the speed rounds also run that second peer (bench/torch_rosinality.py,
# its own architecture at the same shape), and the report compares glowflow with the faster one.
#
# speed:  configs (1) 1x32x32, L = 3, K = 8, width 128, affine, LU, batch 32; (2) the same at
#         width 512; (3) 3x32x32, L = 3, K = 32, width 512 (the paper's CIFAR-10 model), batch 16.
#         Training step, exact log-likelihood and sampling (T = 0.7): median of 5 timed runs after
#         2 warm-ups, in 5 rounds that alternate the programs (config 3: 3 runs after 1).
# memory: one training step at K = 8, 16, 32, 64 (3x32x32, L = 3, width 512, batch 16) with
#         stored activations, with recomputed activations (glowflow only), and in PyTorch; each
#         in its own process so that its peak resident memory is its own.
#
# Results: OUT_DIR/*.json (a configuration whose files exist is not run again: delete them to
# re-measure), and the tables of BENCHMARKS.md from `python3 bench/report.py OUT_DIR`.
# The architecture is the reference's (zero padding, ActNorm without openai's x3 log-scale factor:
# bench/fashion_mnist_matched.json with the shape options below).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: bench/speed.sh REFERENCE_SRC [OUT_DIR] [speed|memory|all] [ROSINALITY_SRC]}
out=${2:-runs/bench}
what=${3:-all}
rosinality=${4:-}
mkdir -p "$out"
cargo build --release
export RAYON_NUM_THREADS=2
# glowflow backs glibc's heaps with transparent huge pages by itself (src/main.rs); the PyTorch
# peers get the same setting here, so that no ratio comes from the page size.
export GLIBC_TUNABLES=glibc.malloc.hugetlb=1
glowflow() { "${CARGO_TARGET_DIR:-target}/release/glowflow" bench --config bench/fashion_mnist_matched.json --lu true "$@"; }
# Both take Adam steps at 1e-4 (glowflow bench's fixed recipe) so that random-image training stays finite.
torch_ref() { python3 bench/torch_reference.py --glow-src "$src" --mode speed --threads 2 --lu --coupling affine \
  --optimizer adam --lr 1e-4 "$@"; }

if [[ $what == speed || $what == all ]]; then
  # Rounds alternate the two programs, so that a slow spell of this shared machine hits both;
  # the report takes each phase's median over the rounds.
  # name  channels  K  width  batch  warm-up  repeats  rounds
  while read -r name c k w b warm reps rounds; do
    shape="--levels 3 --width $w"
    for round in $(seq 1 "$rounds"); do
      tag="speed-$name-r$round"
      if [[ ! -f $out/$tag-glowflow.json || ! -f $out/$tag-torch.json ]]; then
        glowflow --image "${c}x32x32" $shape --depth "$k" --batch-size "$b" --warmup "$warm" \
          --repeats "$reps" --out "$out/$tag-glowflow.json" > /dev/null
        torch_ref --channels "$c" --size 32 $shape --steps "$k" --batch "$b" --warmup-reps "$warm" \
          --reps "$reps" --out "$out/$tag-torch.json" > /dev/null
      fi
      if [[ -n $rosinality && ! -f $out/$tag-rosinality.json ]]; then
        python3 bench/torch_rosinality.py --glow-src "$rosinality" --threads 2 --lr 1e-4 \
          --channels "$c" --size 32 $shape --steps "$k" --batch "$b" --warmup-reps "$warm" \
          --reps "$reps" --out "$out/$tag-rosinality.json" > /dev/null 2>&1
      fi
    done
    echo "speed $name done"
  done <<'CONFIGS'
1 1 8 128 32 2 5 5
2 1 8 512 32 2 5 5
3 3 32 512 16 1 3 5
CONFIGS
fi

if [[ $what == memory || $what == all ]]; then
  for k in 8 16 32 64; do
    [[ -f $out/memory-k$k-torch.json ]] && continue
    common="--levels 3 --width 512"
    glowflow --image 3x32x32 $common --depth "$k" --batch-size 16 --phases train --warmup 0 \
      --repeats 1 --out "$out/memory-k$k-glowflow.json" > /dev/null
    glowflow --image 3x32x32 $common --depth "$k" --batch-size 16 --phases train --warmup 0 \
      --repeats 1 --recompute-activations --out "$out/memory-k$k-glowflow-recompute.json" > /dev/null
    torch_ref --channels 3 --size 32 $common --steps "$k" --batch 16 --phases train_step \
      --warmup-reps 0 --reps 1 --out "$out/memory-k$k-torch.json" > /dev/null
    echo "memory K=$k done"
  done
fi
python3 bench/report.py "$out"

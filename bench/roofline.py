#!/usr/bin/env python3
"""How close each program of the speed table comes to this CPU's matrix-product ceiling.

    python3 bench/roofline.py ROSINALITY_SRC [OUT_DIR]        # OUT_DIR: bench/speed.sh's results

Glow's work is its convolutions: every one is a matrix product (or, in the backward pass, two),
and the elementwise layers around them cost memory traffic but next to no arithmetic. So the
floating-point operations of a phase fix a floor under its time on a given CPU:

- FLOP per image: counted by PyTorch's own `torch.utils.flop_counter.FlopCounterMode` (matrix
  products and convolutions) on rosinality/glow-pytorch's model at each speed config's shape:
  one forward (log-likelihood), forward + backward (training step), one reverse (sampling). Its
  convolutions have the same shapes as glowflow's (3x3 C/2 -> w, 1x1 w -> w, 3x3 w -> C, the 1x1
  permutation, the priors' 3x3), so the count is the same for all three programs and computed
  independently of glowflow.
- The ceiling: the best GFLOP/s of `torch.mm` (Intel oneDNN / MKL) with this run's thread count
  over a large square product and the products of the config's widest layer (its 1x1 convolution
  at the first level, as `[N*H*W, w] x [w, w]`).

With OUT_DIR, every program's median images/s over the rounds (bench/report.py's reading) becomes
GFLOP/s and a fraction of the ceiling, beside the images/s that 1.5x the faster peer needs
(issue 17) and the fraction of the ceiling that would take.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import PHASES, rounds  # noqa: E402  (the speed rounds as bench/report.py reads them)
from torch_rosinality import import_rosinality  # noqa: E402


def count_flops(torch, ref_model, channels, size, levels, depth, width, batch):
    """Matrix-product FLOP per image of (train, eval, sample) on rosinality's model."""
    from torch.utils.flop_counter import FlopCounterMode

    ref_model.AffineCoupling.__init__.__defaults__ = (width, True)
    torch.manual_seed(0)
    model = ref_model.Glow(channels, depth, levels, affine=True, conv_lu=True)
    x = torch.rand(batch, channels, size, size) - 0.5
    with torch.no_grad():
        model(x)  # ActNorm's data-dependent init, outside the count

    def counted(fn):
        mode = FlopCounterMode(display=False)
        with mode:
            fn()
        return mode.get_total_flops() / batch

    def train():
        log_p, logdet, _ = model(x)
        (-(log_p + logdet).mean()).backward()

    def evaluate():
        with torch.no_grad():
            model(x)

    with torch.no_grad():
        _, _, z = model(x)

    def sample():
        with torch.no_grad():
            model.reverse(z)  # priors evaluated, as when sampling

    return {"train": counted(train), "eval": counted(evaluate), "sample": counted(sample)}


def mm_gflops(torch, m, k, n, seconds=1.0):
    """Best GFLOP/s of `[m, k] x [k, n]` over repeated products for about `seconds`."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(2):
        a @ b
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * m * k * n / best / 1e9


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("glow_src", help="extracted rosinality/glow-pytorch work tree")
    p.add_argument("out", nargs="?", default="runs/bench", help="bench/speed.sh's result directory")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (speed.sh uses 2)")
    args = p.parse_args(argv)

    torch, ref_model, _ = import_rosinality(args.glow_src)
    torch.set_num_threads(args.threads)
    square = mm_gflops(torch, 4096, 4096, 4096)
    print(f"torch {torch.__version__}, {args.threads} threads: torch.mm 4096x4096x4096 {square:.0f} GFLOP/s\n")
    print(
        "| config | phase | GFLOP / image | ceiling GFLOP/s | glowflow | y0ast | rosinality "
        "| 1.5× the faster peer needs |\n|---|---|---|---|---|---|---|---|"
    )
    for name in ("1", "2", "3"):
        g_rounds = rounds(args.out, name, "glowflow")
        if not g_rounds:
            continue
        y_rounds, r_rounds = rounds(args.out, name, "torch"), rounds(args.out, name, "rosinality")
        config, batch = g_rounds[0]["config"], g_rounds[0]["options"]["batch_size"]
        image, width = config["image"], config["width"]
        flops = count_flops(torch, ref_model, image["channels"], image["height"], config["levels"],
                            config["steps"], width, batch)
        pixels = batch * (image["height"] // 2) * (image["width"] // 2)
        ceiling = max(square, mm_gflops(torch, pixels, width, width))
        label = (f"({name}) {image['channels']}×{image['height']}×{image['width']}, L{config['levels']} "
                 f"K{config['steps']} w{width}, batch {batch}")
        for phase, g_key, t_key in PHASES:
            gflop = flops[g_key] / 1e9

            def cell(per_second):
                rate = per_second * gflop
                return f"{per_second:.1f} img/s = {rate:.0f} GFLOP/s ({100 * rate / ceiling:.0f} %)"

            med = {
                "glowflow": statistics.median(g[g_key]["images_per_s"] for g in g_rounds),
                "y0ast": statistics.median(t["phases"][t_key]["images_per_s"] for t in y_rounds),
                "rosinality": statistics.median(t["phases"][t_key]["images_per_s"] for t in r_rounds)
                if r_rounds else 0.0,
            }
            goal = 1.5 * max(med["y0ast"], med["rosinality"])
            print(f"| {label} | {phase} | {gflop:.2f} | {ceiling:.0f} | {cell(med['glowflow'])} "
                  f"| {cell(med['y0ast'])} | {cell(med['rosinality']) if r_rounds else '–'} | {cell(goal)} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Tables for BENCHMARKS.md from the JSON files bench/speed.sh writes.

    python3 bench/report.py OUT_DIR

Speed: images/s of each phase for glowflow and the PyTorch peers, y0ast/Glow-PyTorch and (where
measured) rosinality/glow-pytorch (medians over the rounds), and the median of the per-round
ratios glowflow / the faster peer of that round, with their range.
Memory: peak resident memory of a training step (forward, backward, Adam update) and its
activation memory, measured the same way in both programs around the gradient pass (forward and
backward, before the update): the pass's peak resident memory (VmHWM, reset just before it) minus
the resident memory just before it minus the gradients it allocates (4 bytes per parameter).
"""

import json
import os
import statistics
import sys

MIB = 1024 * 1024
# Each phase of the speed table: its label, its key in glowflow's JSON and in the peers' JSON.
PHASES = (
    ("training step", "train", "train_step"),
    ("log-likelihood", "eval", "log_likelihood"),
    ("sampling (T = 0.7)", "sample", "sample"),
)


def load(path):
    with open(path) as f:
        return json.load(f)


def rounds(out, name, program):
    """The JSON of every round of one config and program."""
    found, r = [], 1
    while os.path.exists(os.path.join(out, f"speed-{name}-r{r}-{program}.json")):
        found.append(load(os.path.join(out, f"speed-{name}-r{r}-{program}.json")))
        r += 1
    return found


def speed_rows(out):
    rows = []
    labels = {
        "1": "(1) 1×32×32, L3 K8 w128, affine, LU, batch 32",
        "2": "(2) 1×32×32, L3 K8 w512, affine, LU, batch 32",
        "3": "(3) 3×32×32, L3 K32 w512, affine, LU, batch 16",
    }
    for name, label in labels.items():
        g_rounds = rounds(out, name, "glowflow")
        y_rounds = rounds(out, name, "torch")
        r_rounds = rounds(out, name, "rosinality")
        n = min(len(g_rounds), len(y_rounds))
        if n == 0:
            continue
        if r_rounds:
            n = min(n, len(r_rounds))
        for phase, g_key, t_key in PHASES:
            gi = [g[g_key]["images_per_s"] for g in g_rounds[:n]]
            yi = [t["phases"][t_key]["images_per_s"] for t in y_rounds[:n]]
            ri = [t["phases"][t_key]["images_per_s"] for t in r_rounds[:n]] or [0.0] * n
            ratios = [a / max(y, r) for a, y, r in zip(gi, yi, ri)]
            spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if n > 1 else ""
            ros = f"{statistics.median(ri):.1f}" if r_rounds else "–"
            rows.append(
                f"| {label} | {phase} | {statistics.median(gi):.1f} | {statistics.median(yi):.1f} "
                f"| {ros} | **{statistics.median(ratios):.2f}×**{spread} | {n} |"
            )
    if not rows:
        return ""
    head = (
        "| config | phase | glowflow images/s | y0ast images/s | rosinality images/s "
        "| glowflow / faster peer (range) | rounds |\n|---|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows) + "\n"


def memory_rows(out):
    rows = []
    for k in (8, 16, 32, 64):
        paths = [os.path.join(out, f"memory-k{k}-{kind}.json")
                 for kind in ("glowflow", "glowflow-recompute", "torch")]
        if not all(os.path.exists(p) for p in paths):
            continue
        g, r, t = (load(p) for p in paths)
        t_peak = t["phases"]["train_step"]["peak_rss_mib_after"]
        t_act = t["phases"]["train_step"]["activation_mib"]
        cells = [
            f"{g['train']['peak_rss_mib']:.0f}", f"{g['activation_mib']:.0f}",
            f"{r['train']['peak_rss_mib']:.0f}", f"{r['activation_mib']:.0f}",
            f"{t_peak:.0f}", f"{t_act:.0f}",
            f"{r['train']['median_s'] / g['train']['median_s']:.2f}×",
            f"{g['train']['median_s']:.1f}", f"{t['phases']['train_step']['median_s']:.1f}",
        ]
        rows.append(f"| {k} | {g['parameters'] / 1e6:.1f} M | " + " | ".join(cells) + " |")
    if not rows:
        return ""
    head = (
        "| K | parameters | glowflow peak MiB | glowflow activations MiB | recompute peak MiB "
        "| recompute activations MiB | PyTorch peak MiB | PyTorch activations MiB "
        "| recompute / stored step time | glowflow step s | PyTorch step s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows) + "\n"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/bench"
    speed, memory = speed_rows(out), memory_rows(out)
    if speed:
        print("Speed\n\n" + speed)
    if memory:
        print("Memory of one training step (3×32×32, L = 3, width 512, batch 16)\n\n" + memory)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Tables for BENCHMARKS.md from the JSON files bench/speed.sh writes.

    python3 bench/report.py OUT_DIR

Speed: images/s of each phase for glowflow and the PyTorch reference, and glowflow / PyTorch.
Memory: peak resident memory of a training step (forward, backward, Adam update) and its
activation memory, measured the same way in both programs around the gradient pass (forward and
backward, before the update): the pass's peak resident memory (VmHWM, reset just before it) minus
the resident memory just before it minus the gradients it allocates (4 bytes per parameter).
"""

import json
import os
import sys

MIB = 1024 * 1024


def load(path):
    with open(path) as f:
        return json.load(f)


def speed_rows(out):
    rows = []
    labels = {
        "1": "(1) 1×32×32, L3 K8 w128, affine, LU, batch 32",
        "2": "(2) 1×32×32, L3 K8 w512, affine, LU, batch 32",
        "3": "(3) 3×32×32, L3 K32 w512, affine, LU, batch 16",
    }
    for name, label in labels.items():
        g_path = os.path.join(out, f"speed-{name}-glowflow.json")
        t_path = os.path.join(out, f"speed-{name}-torch.json")
        if not (os.path.exists(g_path) and os.path.exists(t_path)):
            continue
        g, t = load(g_path), load(t_path)
        for phase, g_key, t_key in (
            ("training step", "train", "train_step"),
            ("log-likelihood", "eval", "log_likelihood"),
            ("sampling (T = 0.7)", "sample", "sample"),
        ):
            gi = g[g_key]["images_per_s"]
            ti = t["phases"][t_key]["images_per_s"]
            rows.append(f"| {label} | {phase} | {gi:.1f} | {ti:.1f} | **{gi / ti:.2f}×** |")
    if not rows:
        return ""
    head = (
        "| config | phase | glowflow images/s | PyTorch images/s | glowflow / PyTorch |\n"
        "|---|---|---|---|---|\n"
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

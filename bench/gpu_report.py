#!/usr/bin/env python3
"""Tables for BENCHMARKS.md's GPU section from the files bench/gpu_check.sh writes.

    python3 bench/gpu_report.py OUT_DIR

Exactness: each check of `glowflow check-device` with its measured error and tolerance.
Speed: images/s of each phase of config 3 (batch 64) for glowflow (burn's conv2d and the
matrix-product convolutions) and the PyTorch peers on the same GPU, the ratio of glowflow's
faster route to the faster peer, and the device memory of each (glowflow: what burn's pool holds
reserved at the end of the phase; PyTorch: torch.cuda.max_memory_reserved over the phase).
Memory: device memory of one training step at K = 8 .. 64 with stored and recomputed activations.
Three steps: the comparison of three training steps on the GPU and on the CPU.
Training: the run's test bits/dim at each evaluation.
"""

import csv
import os
import sys

from report import PHASES, load


def present(out, name):
    path = os.path.join(out, name)
    return load(path) if os.path.exists(path) else None


def check_rows(out):
    report = present(out, "check.json")
    if report is None:
        return "check-device wrote no report (see gpu_check.log)\n"
    rows = [f"| {c['name']} | {c['measured']:.2e} | {c['tolerance']:.0e} | "
            f"{'pass' if c['passed'] else '**fail**'} |" for c in report["checks"]]
    return (f"Device: `{report['device']}`\n\n| check | measured | tolerance | |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def mib(value):
    return f"{value:.0f}" if value is not None else "–"


def speed_rows(out):
    ours = {conv: present(out, f"bench-config3-{conv}.json") for conv in ("auto", "matrix-products")}
    peers = {"y0ast": present(out, "torch-config3.json"),
             "rosinality": present(out, "rosinality-config3.json")}
    rows = []
    for label, g_key, t_key in PHASES:
        def ours_at(conv):
            result = ours[conv]
            return result[g_key] if result and result.get(g_key) else None

        def peer_at(name):
            result = peers[name]
            return result["phases"].get(t_key) if result else None

        speeds = {conv: ours_at(conv)["images_per_s"] if ours_at(conv) else None for conv in ours}
        peer_speeds = {n: peer_at(n)["images_per_s"] if peer_at(n) else None for n in peers}
        best = max((v for v in speeds.values() if v), default=None)
        best_peer = max((v for v in peer_speeds.values() if v), default=None)
        ratio = f"**{best / best_peer:.2f}×**" if best and best_peer else "–"
        fmt = lambda v: f"{v:.1f}" if v else "–"
        memory = [mib(ours_at(c)["device_reserved_mib"]) if ours_at(c) else "–" for c in ours]
        memory += [mib(peer_at(n).get("peak_device_reserved_mib")) if peer_at(n) else "–" for n in peers]
        rows.append(f"| {label} | {fmt(speeds['auto'])} | {fmt(speeds['matrix-products'])} | "
                    f"{fmt(peer_speeds['y0ast'])} | {fmt(peer_speeds['rosinality'])} | {ratio} | "
                    + " / ".join(memory) + " |")
    head = ("| phase | glowflow, burn conv2d | glowflow, matrix products | y0ast | rosinality "
            "| glowflow / faster peer | device MiB (same order) |\n|---|---|---|---|---|---|---|\n")
    return head + "\n".join(rows) + "\n"


def memory_rows(out):
    rows = []
    for k in (8, 16, 32, 64):
        cells = []
        for mode in ("stored", "recompute"):
            result = present(out, f"memory-k{k}-{mode}.json")
            cells.append(mib(result["train"]["device_reserved_mib"]) if result and result.get("train") else "–")
        rows.append(f"| {k} | {cells[0]} | {cells[1]} |")
    return ("| K | stored activations, device MiB | recomputed, device MiB |\n|---|---|---|\n"
            + "\n".join(rows) + "\n")


def three_steps(out):
    path = os.path.join(out, "three-steps-compare.txt")
    if not os.path.exists(path):
        return "no comparison (see gpu_check.log)\n"
    with open(path) as f:
        return "CPU (A) against the GPU (B), `bench/datafiles.py compare-runs`:\n\n" + "".join(
            "    " + line for line in f)


def training_rows(out):
    path = os.path.join(out, "train-metrics.csv")
    if not os.path.exists(path):
        return "no training run (see gpu_check.log)\n"
    with open(path) as f:
        evaluated = [r for r in csv.DictReader(f) if r.get("test_bpd")]
    rows = [f"| {r['step']} | {float(r['test_bpd']):.4f} |" for r in evaluated]
    return "| step | test bits/dim |\n|---|---|\n" + "\n".join(rows) + "\n"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/gpu-check"
    for title, table in (("Exactness", check_rows), ("Speed, config 3, batch 64", speed_rows),
                         ("Constant-memory mode", memory_rows),
                         ("Three training steps, GPU against CPU", three_steps), ("Training", training_rows)):
        print(f"#### {title}\n\n{table(out)}")


if __name__ == "__main__":
    main()

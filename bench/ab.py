#!/usr/bin/env python3
"""A/B of two glowflow builds on this machine: `glowflow bench` run alternately with each binary,
so that a slow spell of a shared machine hits both.

    python3 bench/ab.py ROUNDS BINARY_A BINARY_B -- BENCH_OPTIONS...

e.g. (config 1 of BENCHMARKS.md; build A from one commit, B from another, copy each binary aside):

    python3 bench/ab.py 6 /tmp/glowflow-a /tmp/glowflow-b -- --config bench/fashion_mnist_matched.json \\
        --lu true --image 1x32x32 --levels 3 --width 128 --depth 8 --batch-size 32 --warmup 2 --repeats 5

Prints, for each phase that ran, both medians of images/s over the rounds and the median (range)
of the per-round ratios B / A. Runs with RAYON_NUM_THREADS=2 unless it is set.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) < 5 or sys.argv[4] != "--":
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    binaries = sys.argv[2:4]
    options = sys.argv[5:]
    env = dict(os.environ)
    env.setdefault("RAYON_NUM_THREADS", "2")
    speeds = {b: {} for b in binaries}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        for r in range(rounds):
            # A first in even rounds, B first in odd ones.
            for binary in binaries if r % 2 == 0 else binaries[::-1]:
                subprocess.run([binary, "bench", *options, "--out", out], env=env,
                               stdout=subprocess.DEVNULL, check=True)
                with open(out) as f:
                    result = json.load(f)
                for phase in ("train", "eval", "sample"):
                    if result.get(phase):
                        speeds[binary].setdefault(phase, []).append(result[phase]["images_per_s"])
    a, b = (speeds[x] for x in binaries)
    for phase in a:
        ratios = [y / x for x, y in zip(a[phase], b[phase])]
        print(f"{phase:6s} A {statistics.median(a[phase]):8.1f}  B {statistics.median(b[phase]):8.1f}  "
              f"B/A median {statistics.median(ratios):.3f} (range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()

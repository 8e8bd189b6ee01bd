#!/usr/bin/env python3
"""Speed of the second PyTorch Glow, rosinality/glow-pytorch, measured exactly as
`torch_reference.py --mode speed` measures y0ast/Glow-PyTorch (issue 5: glowflow against the faster
of the two peers).

This file is our own code. The reference is NOT vendored: its `model.py` is imported at run time
from --glow-src (an extracted work tree of rosinality/glow-pytorch; see bench/README.md).

The architecture is rosinality's own, at the benchmark's shape: L blocks of K flows (ActNorm, LU
1x1 convolution, affine coupling with s = sigmoid(log_s + 2)); its coupling network is conv 3x3
with bias, ReLU, conv 1x1 with bias, ReLU, ZeroConv2d (no ActNorm inside it: two fewer
elementwise layers per step than y0ast's and glowflow's benchmark architecture), with its hidden
width (fixed at 512 in the repository) set to --width; learned priors. Loss as its train.py:
bits/dim of x + U[0, 1/256) noise. Sampling decodes z ~ N(0, T^2 I) of its `calc_z_shapes`.
"""

import argparse
import math
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import (  # noqa: E402  (our y0ast driver: shared measurement helpers)
    maxrss_mib,
    n_params,
    proc_status_mib,
    reset_peak_rss,
    time_phases,
    to_model_input,
    write_result,
)


def import_rosinality(glow_src):
    glow_src = os.path.abspath(glow_src)
    if not os.path.isfile(os.path.join(glow_src, "model.py")):
        raise FileNotFoundError(f"{glow_src}/model.py not found (extract rosinality/glow-pytorch there)")
    sys.path.insert(0, glow_src)
    import torch
    import model as ref_model  # noqa: E402  (rosinality model.py)

    return torch, ref_model, glow_src


def z_shapes(channels, size, levels):
    """rosinality's train.calc_z_shapes: the latent shape of every block."""
    shapes = []
    for _ in range(levels - 1):
        size //= 2
        channels *= 2
        shapes.append((channels, size, size))
    size //= 2
    shapes.append((channels * 4, size, size))
    return shapes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glow-src", required=True, help="extracted rosinality/glow-pytorch work tree")
    p.add_argument("--levels", type=int, default=3, help="L (its n_block)")
    p.add_argument("--steps", type=int, default=8, help="K (its n_flow)")
    p.add_argument("--width", type=int, default=128, help="hidden channels of the coupling network")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup-reps", type=int, default=2)
    p.add_argument("--phases", default="train_step,log_likelihood,sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:N)")
    p.add_argument("--out", help="write the result JSON here")
    args = p.parse_args(argv)

    torch, ref_model, glow_src = import_rosinality(args.glow_src)
    torch.set_num_threads(args.threads)
    result = {
        "implementation": "rosinality/glow-pytorch",
        "glow_src": glow_src,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
        "rss_mib_after_import": maxrss_mib(),
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    # The repository hard-codes the coupling width (AffineCoupling's filter_size=512).
    ref_model.AffineCoupling.__init__.__defaults__ = (args.width, True)

    size, c, b = args.size, args.channels, args.batch
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, size=(b, c, size, size), dtype=np.uint8)
    x = to_model_input(torch, images, 8).to(args.device)
    dims = c * size * size
    n_bins = 256.0

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # its InvConv2dLU draws from numpy
    model = ref_model.Glow(c, args.steps, args.levels, affine=True, conv_lu=True).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    def bpd():
        log_p, logdet, _ = model(x + torch.rand_like(x) / n_bins)
        return -(log_p + logdet - math.log(n_bins) * dims) / (math.log(2.0) * dims)

    with torch.no_grad():
        bpd()  # ActNorm data-dependent init (on the first forward)

    grad_mib = n_params(model) * 4 / (1024.0 * 1024.0)
    activation_samples = []

    def train_step():
        opt.zero_grad(set_to_none=True)
        before = proc_status_mib("VmRSS")
        reset_peak_rss()
        loss = bpd().mean()
        loss.backward()
        activation_samples.append(proc_status_mib("VmHWM") - before - grad_mib)
        opt.step()

    def eval_step():
        with torch.no_grad():
            bpd()

    samples = {}

    def sample_step():
        with torch.no_grad():
            z = [torch.randn(b, *s, device=args.device) * args.temperature
                 for s in z_shapes(c, size, args.levels)]
            samples["x"] = model.reverse(z)

    phases = time_phases(torch, args, b, train_step, eval_step, sample_step, activation_samples, samples)
    result.update(
        {
            "mode": "speed",
            "config": {"levels": args.levels, "steps": args.steps, "width": args.width,
                       "coupling": "affine", "lu": True, "image_chw": [c, size, size], "batch": b,
                       "optimizer": "adam", "lr": args.lr, "seed": args.seed},
            "parameters": n_params(model),
            "warmup_reps": args.warmup_reps,
            "reps": args.reps,
            "phases": phases,
            "peak_rss_mib": maxrss_mib(),
        }
    )
    write_result(result, args.out)


if __name__ == "__main__":
    main()

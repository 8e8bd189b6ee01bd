#!/usr/bin/env python3
"""Benchmark driver for a PyTorch Glow reference (y0ast/Glow-PyTorch), for comparison with glowflow.

This file is our own code. The reference implementation is NOT vendored: it is imported at run
time from the directory given by --glow-src (an extracted work tree of y0ast/Glow-PyTorch; see
bench/README.md). Only its `model.Glow` class and `modules.gaussian_likelihood` /
`modules.gaussian_sample` are used.

Modes
  train  Fashion-MNIST: ActNorm data-dependent init, exactly --train-steps optimiser steps with
         linear LR warm-up, then mean test bits/dim (seeded dequantisation noise, eval mode, no grad).
  speed  synthetic random uint8 images: median seconds of a training step, a no-grad exact
         log-likelihood forward, and sampling a batch at temperature 0.7; peak RSS.

The result JSON is written to --out (if given) and printed to stdout.
"""

import argparse
import gzip
import json
import math
import os
import platform
import resource
import statistics
import struct
import sys
import time
import warnings

import numpy as np

# --------------------------------------------------------------------------------------------
# IDX reader (Fashion-MNIST / MNIST format)
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise ValueError(f"{path}: bad IDX magic {raw[:4]!r}")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(dims)) if dims else 1
    offset = 4 + 4 * ndim
    expected = offset + count * dtype.itemsize
    if len(raw) < expected:
        raise ValueError(f"{path}: truncated ({len(raw)} bytes, need {expected})")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims)


def find_idx(data_dir, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"neither {stem} nor {stem}.gz in {data_dir}")


def load_fashion_mnist(data_dir):
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(find_idx(data_dir, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find_idx(data_dir, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{split}: bad shapes {images.shape} / {labels.shape}")
        out[split] = (images.astype(np.uint8), labels.astype(np.int64))
    return out


# --------------------------------------------------------------------------------------------
# Preprocessing (openai/glow model.py `preprocess`, identical to y0ast datasets.py `preprocess`)
# --------------------------------------------------------------------------------------------


def pad_images(images, pad_to):
    """images: (N, H, W) or (N, C, H, W) uint8; zero-pad spatially (centred) to pad_to x pad_to."""
    if not pad_to:
        return images
    h, w = images.shape[-2:]
    if pad_to < h or pad_to < w:
        raise ValueError(f"--pad-to {pad_to} smaller than image {h}x{w}")
    top, left = (pad_to - h) // 2, (pad_to - w) // 2
    widths = [(0, 0)] * (images.ndim - 2) + [(top, pad_to - h - top), (left, pad_to - w - left)]
    return np.pad(images, widths, mode="constant", constant_values=0)


def to_model_input(torch, images_u8, n_bits):
    """uint8 (N, C, H, W) -> float32 x = floor(v / 2^(8-n_bits)) / 2^n_bits - 0.5 (no noise yet)."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8)).float()
    if n_bits < 8:
        x = torch.floor(x / 2 ** (8 - n_bits))
    return x / (2 ** n_bits) - 0.5


# --------------------------------------------------------------------------------------------
# Reference import and likelihood
# --------------------------------------------------------------------------------------------


def import_reference(glow_src):
    glow_src = os.path.abspath(glow_src)
    if not os.path.isfile(os.path.join(glow_src, "model.py")):
        raise FileNotFoundError(f"{glow_src}/model.py not found (extract y0ast/Glow-PyTorch there)")
    sys.path.insert(0, glow_src)
    import torch

    shims = []
    # The reference calls torch.qr (modules.InvertibleConv1x1.__init__) and torch.lu (LU variant),
    # both deprecated; recent torch releases raise from torch.qr. Replace a function only if a
    # probe call fails; the replacements return the same values the old functions did.
    probe = torch.eye(2)
    try:
        torch.qr(probe)
    except Exception:
        torch.qr = lambda A, some=True: torch.linalg.qr(A, mode="reduced" if some else "complete")
        shims.append("torch.qr -> torch.linalg.qr")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.lu(probe)
    except Exception:
        torch.lu = lambda A, pivot=True: torch.linalg.lu_factor(A, pivot=pivot)
        shims.append("torch.lu -> torch.linalg.lu_factor")
    import model as ref_model  # noqa: E402  (y0ast model.py)
    import modules as ref_modules  # noqa: E402  (y0ast modules.py)

    return torch, ref_model, ref_modules, glow_src, shims


def make_bpd_fn(torch, ref_modules, n_bits):
    """Per-image bits/dim of a batch of preprocessed (noise-free) inputs.

    n_bits == 8: calls the reference's own Glow.forward, which adds U[0, 1/256) noise in place
    (utils.uniform_binning_correction) and returns bpd = -objective / (log 2 * C*H*W).
    n_bits < 8: the reference's forward hard-codes n_bits=8 in uniform_binning_correction, so we
    replicate Glow.normal_flow with the correct bin count: noise U[0, 1/2^n_bits) and the
    -C*H*W*log(2^n_bits) correction, reusing the reference's flow, prior and gaussian_likelihood.
    """
    n_bins = 2.0 ** n_bits

    if n_bits == 8:

        def bpd(model, x):
            _, b, _ = model(x.clone(), None)  # clone: the reference adds the noise in place
            return b

        return bpd, "reference Glow.forward (uniform_binning_correction, n_bits=8)"

    def bpd(model, x):
        b, c, h, w = x.shape
        chw = c * h * w
        x = x + torch.rand_like(x) / n_bins
        logdet = torch.full((b,), -math.log(n_bins) * chw, dtype=x.dtype, device=x.device)
        z, objective = model.flow(x, logdet=logdet, reverse=False)
        mean, logs = model.prior(x, None)
        objective = objective + ref_modules.gaussian_likelihood(mean, logs, z)
        return -objective / (math.log(2.0) * chw)

    return bpd, f"driver replica of Glow.normal_flow with n_bits={n_bits}"


def build_model(ref_model, args, image_shape_hwc):
    return ref_model.Glow(
        image_shape=image_shape_hwc,  # the reference takes (H, W, C)
        hidden_channels=args.width,
        K=args.steps,
        L=args.levels,
        actnorm_scale=1.0,
        flow_permutation=args.permutation,
        flow_coupling=args.coupling,
        LU_decomposed=args.lu,
        y_classes=10,
        learn_top=not args.no_learn_top,
        y_condition=False,
    )


def make_optimizer(torch, model, args):
    cls = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}[args.optimizer]
    return cls(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)


def warmup_lr(args, step):
    """Learning rate of optimiser step `step` (0-based): linear warm-up lr*(step+1)/warmup."""
    if args.warmup_steps <= 0:
        return args.lr
    return args.lr * min(1.0, (step + 1) / args.warmup_steps)


def sample_batch(torch, ref_modules, model, n, temperature):
    """Reference sampling path with an explicit batch size (Glow.prior(None) hard-codes 32)."""
    with torch.no_grad():
        dummy = torch.empty(n, 1, 1, 1, device=next(model.parameters()).device)  # only its shape[0] is read
        mean, logs = model.prior(dummy, None)
        z = ref_modules.gaussian_sample(mean, logs, temperature)
        return model(z=z, temperature=temperature, reverse=True)


def overflowed_samples(torch, ref_modules, model, n, temperature, seed):
    """How many of n samples at `temperature` contain a NaN or an infinity after decoding, or
    the error the reference raised when its decoding overflowed before the end (its Split2d draws
    with torch.normal, which rejects a non-finite standard deviation)."""
    model.eval()
    torch.manual_seed(seed + 2)
    try:
        x = sample_batch(torch, ref_modules, model, n, temperature)
    except RuntimeError as error:
        return f"decoding failed: {error}"
    return int((~torch.isfinite(x).reshape(n, -1).all(dim=1)).sum())


def maxrss_mib():
    # Linux: ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def proc_status_mib(field):
    """VmRSS / VmHWM of this process in MiB (Linux /proc), 0 where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux clear_refs mode 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def n_params(model):
    return int(sum(p.numel() for p in model.parameters()))


def config_dict(args, image_shape_chw):
    return {
        "levels": args.levels,
        "steps": args.steps,
        "width": args.width,
        "coupling": args.coupling,
        "permutation": args.permutation,
        "lu": args.lu,
        "learn_top": not args.no_learn_top,
        "n_bits": args.n_bits,
        "image_chw": list(image_shape_chw),
        "batch": args.batch,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_steps": args.warmup_steps,
        "seed": args.seed,
        "pad_to": args.pad_to,
    }


# --------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------


def run_train(torch, ref_model, ref_modules, args, result):
    data = load_fashion_mnist(args.data)
    train_x, _ = data["train"]
    test_x, _ = data["test"]
    train_x = pad_images(train_x, args.pad_to)[:, None]  # (N, 1, H, W)
    test_x = pad_images(test_x, args.pad_to)[:, None]
    if args.eval_images is not None:
        test_x = test_x[: args.eval_images]
    _, c, h, w = train_x.shape
    n_train = train_x.shape[0]
    if args.batch > n_train:
        raise ValueError("--batch larger than the training set")

    torch.manual_seed(args.seed)
    model = build_model(ref_model, args, (h, w, c))
    opt = make_optimizer(torch, model, args)
    bpd_fn, path = make_bpd_fn(torch, ref_modules, args.n_bits)

    # Seeded shuffled batches, reshuffled every epoch, last partial batch dropped.
    rng = np.random.default_rng(args.seed)

    def batch_indices():
        while True:
            perm = rng.permutation(n_train)
            for i in range(0, n_train - args.batch + 1, args.batch):
                yield perm[i : i + args.batch]

    stream = batch_indices()
    first = [next(stream) for _ in range(max(1, args.init_batches))]

    # Data-dependent ActNorm init as the reference's train.py `init` handler does it: one
    # forward pass in train mode under no_grad; every ActNorm2d initialises itself on its first
    # input (modules._ActNorm.initialize_parameters). We use the first --init-batches training
    # batches (the reference uses 8 separately drawn batches by default).
    t0 = time.perf_counter()
    model.train()
    with torch.no_grad():
        x_init = to_model_input(torch, train_x[np.concatenate(first)], args.n_bits)
        init_bpd = float(bpd_fn(model, x_init).mean())
    init_seconds = time.perf_counter() - t0

    def training_batches():
        yield from first
        yield from stream

    losses = []
    t0 = time.perf_counter()
    for step, idx in zip(range(args.train_steps), training_batches()):
        for g in opt.param_groups:
            g["lr"] = warmup_lr(args, step)
        x = to_model_input(torch, train_x[idx], args.n_bits)
        opt.zero_grad(set_to_none=True)
        loss = bpd_fn(model, x).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if args.log_every and (step + 1) % args.log_every == 0:
            print(f"step {step + 1}/{args.train_steps} bpd {losses[-1]:.4f}", file=sys.stderr, flush=True)
    train_seconds = time.perf_counter() - t0

    # Evaluation: eval mode, no grad, seeded dequantisation noise.
    model.eval()
    torch.manual_seed(args.seed + 1)
    total, count = 0.0, 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, test_x.shape[0], args.eval_batch):
            x = to_model_input(torch, test_x[i : i + args.eval_batch], args.n_bits)
            b = bpd_fn(model, x)
            total += float(b.double().sum())
            count += b.shape[0]
    eval_seconds = time.perf_counter() - t0

    tail = losses[-50:]
    result.update(
        {
            "mode": "train",
            "config": config_dict(args, (c, h, w)),
            "init_batches": max(1, args.init_batches),
            "likelihood_path": path,
            "parameters": n_params(model),
            "actnorm_init_bpd": init_bpd,
            "actnorm_init_seconds": init_seconds,
            "train_steps": len(losses),
            "train_seconds": train_seconds,
            "train_images_per_s": len(losses) * args.batch / train_seconds if train_seconds > 0 else None,
            "first_train_bpd": losses[0] if losses else None,
            "final_train_bpd": sum(tail) / len(tail) if tail else None,
            "final_train_bpd_window": len(tail),
            "test_images": count,
            "test_bpd": total / count if count else None,
            "eval_seconds": eval_seconds,
            "eval_images_per_s": count / eval_seconds if eval_seconds > 0 else None,
            "peak_rss_mib": maxrss_mib(),
            "overflowed_samples_of_64": {
                str(t): overflowed_samples(torch, ref_modules, model, 64, t, args.seed)
                for t in (0.7, 0.9, 1.0)
            },
        }
    )


def time_it(fn, warmup, reps, sync=lambda: None):
    """Times of `reps` calls of `fn` after `warmup` untimed ones; `sync` waits for the device's
    queued work (CUDA runs asynchronously), inside each timed call."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def time_phases(torch, args, batch, train_step, eval_step, sample_step, activation_samples, samples):
    """Speed mode's measurements: each wanted phase's times (warm-ups first), images/s and peak
    RSS (and on a GPU its peak allocated and reserved memory); the training phase's largest
    activation sample; whether the last samples were finite."""
    phases = {}
    wanted = set(args.phases.split(","))
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for name, fn in (("train_step", train_step), ("log_likelihood", eval_step), ("sample", sample_step)):
        if name not in wanted:
            continue
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = time_it(fn, args.warmup_reps, args.reps, sync)
        med = statistics.median(times)
        phases[name] = {
            "median_s": med,
            "times_s": times,
            "images_per_s": batch / med if med > 0 else None,
            "peak_rss_mib_after": maxrss_mib(),
        }
        if cuda:
            phases[name]["peak_device_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
            phases[name]["peak_device_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    if "train_step" in phases:
        phases["train_step"]["activation_mib"] = max(activation_samples)
    if "sample" in phases:
        phases["sample"]["temperature"] = args.temperature
        phases["sample"]["finite"] = bool(torch.isfinite(samples["x"]).all())
    return phases


def write_result(result, out):
    """The result JSON, written atomically to `out` (if given) and printed."""
    text = json.dumps(result, indent=2)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, out)
    print(text)


def run_speed(torch, ref_model, ref_modules, args, result):
    size, c, b = args.size, args.channels, args.batch
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, size=(b, c, size, size), dtype=np.uint8)
    x = to_model_input(torch, images, args.n_bits).to(args.device)

    torch.manual_seed(args.seed)
    model = build_model(ref_model, args, (size, size, c)).to(args.device)
    opt = make_optimizer(torch, model, args)
    bpd_fn, path = make_bpd_fn(torch, ref_modules, args.n_bits)
    rss_after_build = maxrss_mib()

    model.train()
    with torch.no_grad():
        bpd_fn(model, x)  # ActNorm data-dependent init
    for g in opt.param_groups:
        g["lr"] = args.lr

    grad_bytes_mib = n_params(model) * 4 / (1024.0 * 1024.0)
    activation_samples = []

    def train_step():
        model.train()
        opt.zero_grad(set_to_none=True)
        before = proc_status_mib("VmRSS")
        reset_peak_rss()
        loss = bpd_fn(model, x).mean()
        loss.backward()
        # Activation memory: the forward/backward peak above what was resident before it, less
        # the gradients it allocates (the same definition as `glowflow bench`).
        activation_samples.append(proc_status_mib("VmHWM") - before - grad_bytes_mib)
        opt.step()
        return loss

    def eval_step():
        model.eval()
        with torch.no_grad():
            return bpd_fn(model, x)

    samples = {}

    def sample_step():
        model.eval()
        samples["x"] = sample_batch(torch, ref_modules, model, b, args.temperature)

    phases = time_phases(torch, args, b, train_step, eval_step, sample_step, activation_samples, samples)

    result.update(
        {
            "mode": "speed",
            "config": config_dict(args, (c, size, size)),
            "likelihood_path": path,
            "parameters": n_params(model),
            "warmup_reps": args.warmup_reps,
            "reps": args.reps,
            "phases": phases,
            "peak_rss_mib_after_build": rss_after_build,
            "peak_rss_mib": maxrss_mib(),
        }
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glow-src", required=True, help="extracted y0ast/Glow-PyTorch work tree")
    p.add_argument("--mode", choices=["train", "speed"], default="train")
    p.add_argument("--data", help="directory with Fashion-MNIST IDX files (.gz or raw); train mode")
    p.add_argument("--levels", type=int, default=3, help="L")
    p.add_argument("--steps", type=int, default=8, help="K, steps of flow per level")
    p.add_argument("--width", type=int, default=128, help="hidden channels of the coupling network")
    p.add_argument("--coupling", choices=["additive", "affine"], default="affine")
    p.add_argument("--permutation", choices=["invconv", "shuffle", "reverse"], default="invconv")
    p.add_argument("--lu", action="store_true", help="LU-decomposed invertible 1x1 convolution")
    p.add_argument("--no-learn-top", action="store_true", help="fixed N(0, I) top prior")
    p.add_argument("--n-bits", type=int, default=8, choices=range(1, 9), metavar="{1..8}")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=0, help="linear LR warm-up length in steps")
    p.add_argument("--optimizer", choices=["adam", "adamax"], default="adamax")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="torch optimiser weight_decay (y0ast train.py uses 5e-5 with Adamax)")
    p.add_argument("--init-batches", type=int, default=1,
                   help="batches for the ActNorm data-dependent init (y0ast default: 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--pad-to", type=int, default=0, help="zero-pad 28x28 images to this size (e.g. 32)")
    p.add_argument("--eval-images", type=int, default=None, help="test images to evaluate (default all)")
    p.add_argument("--eval-batch", type=int, default=500)
    p.add_argument("--log-every", type=int, default=0, help="print train bpd to stderr every N steps")
    p.add_argument("--channels", type=int, default=1, help="speed mode: synthetic image channels")
    p.add_argument("--size", type=int, default=32, help="speed mode: synthetic image height = width")
    p.add_argument("--temperature", type=float, default=0.7, help="speed mode: sampling temperature")
    p.add_argument("--reps", type=int, default=5, help="speed mode: timed repetitions")
    p.add_argument("--warmup-reps", type=int, default=2, help="speed mode: untimed warm-up repetitions")
    p.add_argument("--phases", default="train_step,log_likelihood,sample",
                   help="speed mode: comma-separated phases to run, in this order")
    p.add_argument("--device", default="cpu", help="speed mode: torch device (cpu, cuda, cuda:N)")
    p.add_argument("--out", help="write the result JSON here")
    args = p.parse_args(argv)
    if args.mode == "train" and not args.data:
        p.error("--data is required in train mode")

    torch, ref_model, ref_modules, glow_src, shims = import_reference(args.glow_src)
    torch.set_num_threads(args.threads)
    if args.mode == "speed":
        # Random-image models at depth can decode to inf, and torch.normal then refuses a
        # non-finite std; the same draw without that check costs the same arithmetic.
        def gaussian_sample(mean, logs, temperature):
            return mean + torch.exp(logs) * temperature * torch.randn_like(mean)

        ref_modules.gaussian_sample = gaussian_sample
        shims.append("speed mode: modules.gaussian_sample -> mean + exp(logs)*T*randn (no std check)")

    result = {
        "implementation": "y0ast/Glow-PyTorch",
        "glow_src": glow_src,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
        "torch_shims": shims,
        "rss_mib_after_import": maxrss_mib(),  # baseline of the torch libraries themselves
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    t0 = time.perf_counter()
    if args.mode == "train":
        run_train(torch, ref_model, ref_modules, args, result)
    else:
        run_speed(torch, ref_model, ref_modules, args, result)
    result["total_seconds"] = time.perf_counter() - t0

    write_result(result, args.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The data subsets and run comparisons that the bench scripts share.

    python3 bench/datafiles.py cut-idx SRC DST [--train N] [--test M]
    python3 bench/datafiles.py compare-runs RUN_A RUN_B [--tolerance T]
    python3 bench/datafiles.py synthetic-pngs DIR N [--side S] [--width W] [--seed K]
    python3 bench/datafiles.py synthetic-jpegs DIR N [--side S] [--width W] [--quality Q] [--seed K]
    python3 bench/datafiles.py synthetic-npz DIR N [--val M] [--batches B] [--side S] [--seed K]

cut-idx: the first N training and M test images (and labels) of the IDX files in SRC (plain or
`.gz`, e.g. Debian's /usr/share/datasets/fashion-mnist), written uncompressed to DST with their
headers' counts set to match; without --train/--test the whole split is copied.

compare-runs: two `glowflow train` output directories, step by step and tensor by tensor:
- metrics.csv: the training bits/dim, the test bits/dim and the gradient norm of every logged
  step side by side (the throughput column is left out), with the largest difference of each;
- model.safetensors: how many tensors are bit-identical, and the largest absolute difference of
  the others.
Exit status 0 when every metric and every weight agree within --tolerance (default 0: identical),
1 otherwise, so that a script can assert "resumed = uninterrupted" or "GPU = CPU" with it.

synthetic-pngs: N RGB PNG files of S x S pixels (default 32, downsampled ImageNet's size; S high
and W wide with --width W) in DIR, named 000000.png, ...: colour ramps with 4 bits of noise, which
compress about as well as ImageNet 32x32's PNGs (3 KB each), for measuring how glowflow reads
large image folders.

synthetic-jpegs: the same images as synthetic-pngs, as JPEG files (000000.jpg, ...) written by
Pillow (pip install Pillow) with 4:2:0 chroma subsampling, as CelebA's are, at quality Q (default
90), for measuring how glowflow decodes JPEG folders.

synthetic-npz: the downsampled ImageNet's archives as image-net.org distributes them (stored, not
deflated, as numpy.savez writes): N images in DIR/train_data_batch_1.npz ... _B.npz (default 10
batches) and M in DIR/val_data.npz (default 2000; with --batches 0 only val_data.npz), the same
ramps as synthetic-pngs in rows of 3·S·S bytes, labels 1 to 1000 (int64), and the training
archives' `mean`, for measuring how glowflow reads the archives.
"""

import argparse
import csv
import gzip
import json
import os
import struct
import sys
import zlib

import numpy as np

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
METRICS = ("train_bpd", "test_bpd", "grad_norm")
SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                      "I32": np.int32, "U32": np.uint32, "U8": np.uint8, "BOOL": np.bool_}


def read_idx(src, name):
    for path, opener in ((os.path.join(src, name), open), (os.path.join(src, name + ".gz"), gzip.open)):
        if os.path.exists(path):
            with opener(path, "rb") as f:
                return f.read()
    raise SystemExit(f"{src}: neither {name} nor {name}.gz found (an IDX dataset directory, "
                     "e.g. /usr/share/datasets/fashion-mnist)")


def first_items(raw, n):
    """The IDX file `raw` cut to its first `n` items (all of them when n is None)."""
    rank = raw[3]
    dims = struct.unpack(f">{rank}I", raw[4:4 + 4 * rank])
    if n is None or n >= dims[0]:
        return raw
    item = int(np.prod(dims[1:], dtype=np.int64))
    head = raw[:4] + struct.pack(">I", n) + raw[8:4 + 4 * rank]
    return head + raw[4 + 4 * rank:4 + 4 * rank + n * item]


def cut_idx(args):
    os.makedirs(args.dst, exist_ok=True)
    for split, n in (("train", args.train), ("test", args.test)):
        for name in IDX_FILES[split]:
            with open(os.path.join(args.dst, name), "wb") as f:
                f.write(first_items(read_idx(args.src, name), n))
    return 0


def safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]],
                             dtype=SAFETENSORS_DTYPES[v["dtype"]]).reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__"}


def run_file(run, name):
    path = os.path.join(run, name)
    if not os.path.isfile(path):
        raise SystemExit(f"{run}: no {name} (not the output directory of a finished `glowflow train`)")
    return path


def metric_rows(run):
    with open(run_file(run, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def compare_runs(args):
    agree = True
    rows_a, rows_b = metric_rows(args.run_a), metric_rows(args.run_b)
    if len(rows_a) != len(rows_b):
        print(f"metrics.csv: {len(rows_a)} rows against {len(rows_b)}")
        agree = False
    worst = dict.fromkeys(METRICS, 0.0)
    print("step | " + " | ".join(f"{m} A | {m} B" for m in METRICS))
    for a, b in zip(rows_a, rows_b):
        cells = []
        for m in METRICS:
            cells += [a[m] or "-", b[m] or "-"]
            if bool(a[m]) != bool(b[m]):
                agree = False
            elif a[m]:
                worst[m] = max(worst[m], abs(float(a[m]) - float(b[m])))
        print(f"{a['step']} | " + " | ".join(cells))
    print("largest difference: " + ", ".join(f"{m} {worst[m]:.3g}" for m in METRICS))
    agree &= all(d <= args.tolerance for d in worst.values())

    ta = safetensors(run_file(args.run_a, "model.safetensors"))
    tb = safetensors(run_file(args.run_b, "model.safetensors"))
    if ta.keys() != tb.keys():
        print(f"model.safetensors: tensors {sorted(ta.keys() ^ tb.keys())} are in one file only")
        return 1
    identical, largest = 0, 0.0
    for name, a in ta.items():
        b = tb[name]
        if a.shape != b.shape:
            print(f"model.safetensors: {name} is {a.shape} against {b.shape}")
            return 1
        if a.tobytes() == b.tobytes():
            identical += 1
            continue
        largest = max(largest, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    print(f"model.safetensors: {len(ta)} tensors, {identical} bit-identical"
          + ("" if identical == len(ta) else f", largest difference of the others {largest:.3g}"))
    agree &= largest <= args.tolerance
    print("agree" if agree else f"DIFFERENT (tolerance {args.tolerance:g})")
    return 0 if agree else 1


def png_bytes(rgb):
    """A PNG file (8-bit RGB, no filtering) of the H x W x 3 uint8 array `rgb`."""
    height, width, _ = rgb.shape

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, -1)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def synthetic_images(rng, n, side, width=None):
    """`n` synthetic RGB images `side` high and `width` (default `side`) wide, n x side x width x 3
    uint8: colour ramps with 4 bits of noise in the red and green channels."""
    width = width or side
    columns, rows = np.arange(width), np.arange(side)
    base = rng.integers(0, 256, (n, 1, 1, 3))
    noise = rng.integers(0, 16, (n, 2, side, width))
    rgb = np.stack([
        base[..., 0] + 4 * columns[None, None, :] + noise[:, 0],
        base[..., 1] + 4 * rows[None, :, None] + noise[:, 1],
        base[..., 2] + 2 * (columns[None, None, :] + rows[None, :, None]),
    ], axis=-1) % 256
    return rgb.astype(np.uint8)


def synthetic_pngs(args):
    os.makedirs(args.dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(args.n):
        with open(os.path.join(args.dir, f"{i:06d}.png"), "wb") as f:
            f.write(png_bytes(synthetic_images(rng, 1, args.side, args.width)[0]))
    return 0


def synthetic_jpegs(args):
    from PIL import Image

    os.makedirs(args.dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(args.n):
        image = Image.fromarray(synthetic_images(rng, 1, args.side, args.width)[0], "RGB")
        image.save(os.path.join(args.dir, f"{i:06d}.jpg"), quality=args.quality,
                   subsampling="4:2:0")
    return 0


def synthetic_npz(args):
    os.makedirs(args.dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    def archive(name, n, mean):
        rows = synthetic_images(rng, n, args.side).transpose(0, 3, 1, 2).reshape(n, -1)
        arrays = {"data": rows, "labels": rng.integers(1, 1001, n).astype(np.int64)}
        if mean:
            arrays["mean"] = rows.mean(axis=0)
        np.savez(os.path.join(args.dir, name), **arrays)

    for b in range(args.batches):
        count = args.n // args.batches + (b < args.n % args.batches)
        archive(f"train_data_batch_{b + 1}.npz", count, True)
    archive("val_data.npz", args.val, False)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    cut = sub.add_parser("cut-idx", help="the first images of an IDX dataset")
    cut.add_argument("src")
    cut.add_argument("dst")
    cut.add_argument("--train", type=int, help="training images to keep (default: all)")
    cut.add_argument("--test", type=int, help="test images to keep (default: all)")
    cut.set_defaults(run=cut_idx)
    cmp = sub.add_parser("compare-runs", help="two glowflow train output directories")
    cmp.add_argument("run_a")
    cmp.add_argument("run_b")
    cmp.add_argument("--tolerance", type=float, default=0.0,
                     help="largest absolute difference allowed in any metric or weight (default 0)")
    cmp.set_defaults(run=compare_runs)
    for name, run, what in (("synthetic-pngs", synthetic_pngs, "PNG"),
                            ("synthetic-jpegs", synthetic_jpegs, "JPEG")):
        images = sub.add_parser(name, help=f"a folder of synthetic RGB {what} files")
        images.add_argument("dir")
        images.add_argument("n", type=int)
        images.add_argument("--side", type=int, default=32, help="height, and width (default 32)")
        images.add_argument("--width", type=int, help="width, when it is not the side")
        if what == "JPEG":
            images.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
        images.add_argument("--seed", type=int, default=0)
        images.set_defaults(run=run)
    npz = sub.add_parser("synthetic-npz", help="the downsampled ImageNet's archives, synthetic")
    npz.add_argument("dir")
    npz.add_argument("n", type=int, help="training images")
    npz.add_argument("--val", type=int, default=2000, help="test images (default 2000)")
    npz.add_argument("--batches", type=int, default=10, help="training archives (default 10)")
    npz.add_argument("--side", type=int, default=32, help="width and height (default 32)")
    npz.add_argument("--seed", type=int, default=0)
    npz.set_defaults(run=synthetic_npz)
    args = p.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

"""The ImageNet input pipeline against timm's, side by side on one ImageFolder, on this machine.

Writes an ImageFolder (train/<class>/*.jpg, val/<class>/*.jpg, the layout `data.dataset: imagefolder` reads) from the
packed CIFAR-10 JPEGs, each upscaled to --size px (bicubic) and re-encoded as a JPEG (quality 90), cached under --root.
Then times full passes over its training split with the `convmixer_imagenet` recipe's augmentation (random resized
crop, flip, timm's RandAugment rand-m9-mstd0.5-inc1 at probability 0.5, random erasing 0.25; mixup and cutmix off,
since timm's loader mixes only through its CUDA prefetcher) and the same global batch, for each worker count:
(a) the toolkit's DataLoader path (`HostLoader`, JPEGs decoded and augmented in the workers by timm's transforms),
(b) the same with `data.decode: device` (the workers only read bytes; decoding and augmentation run batched on the
device, here the CPU, in the main process), (c) `timm.data.create_loader` on timm's ImageDataset of the same folder,
with the same transform settings. Prints images per second in all and per worker (the median of --passes passes after
one warm-up pass, which also starts the persistent workers).

    python benchmarks/input_pipeline.py [--data NPZ] [--root DIR] [--size 224] [--per-class N] [--workers 1 2]
                                         [--batch 64] [--passes 2]
"""
from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from harness.config import RecipeConfig, resolve
from harness.data import IMAGENET_MEAN, IMAGENET_STD, build_loaders, patch_timm_posterize

ROOT = Path(__file__).resolve().parents[1]
PACKED = ROOT / "tests" / "data" / "cifar10_jpegbytes_1k1k.npz"  # the same file as ../shared/data's 1k1k
SPLITS = {"train": "train", "val": "test"}  # ImageFolder split -> packed split


def write_imagefolder(packed: Path, root: Path, size: int, per_class: int | None = None) -> Path:
    """root/train and root/val from a packed .npz, every image resized to size x size and saved as a JPEG; written
    once (a folder with a `done` marker is reused). Returns root."""
    from PIL import Image
    if (root / "done").exists():
        return root
    with np.load(packed) as f:
        classes = [str(c) for c in f["classes"]]
        for folder, split in SPLITS.items():
            buf, off, labels = f[f"jpeg_{split}"], f[f"offsets_{split}"], f[f"y_{split}"]
            written = dict.fromkeys(range(len(classes)), 0)
            for i, label in enumerate(labels.tolist()):
                if per_class is not None and written[label] >= per_class:
                    continue
                out = root / folder / classes[label] / f"{i:05d}.jpg"
                out.parent.mkdir(parents=True, exist_ok=True)
                image = Image.open(io.BytesIO(buf[off[i]:off[i + 1]].tobytes())).convert("RGB")
                image.resize((size, size), Image.Resampling.BICUBIC).save(out, quality=90)
                written[label] += 1
    (root / "done").touch()
    return root


def timm_loader(folder: Path, recipe: RecipeConfig, size: int, workers: int) -> Any:
    """timm.data.create_loader with the transform settings the toolkit's host path gives `recipe` (host_transform)."""
    from timm.data import create_dataset, create_loader
    patch_timm_posterize()  # as the toolkit's host path does: timm's posterize fails on Pillow 13 at magnitude 10
    aa = (f"rand-m{recipe.randaugment_m:g}-n{recipe.randaugment_n}-mstd{recipe.randaugment_mstd:g}"
          f"-p{recipe.randaugment_prob:g}-inc1")
    dataset = create_dataset("", root=str(folder / "train"), is_training=True)
    # is_training: timm shuffles and drops the last partial batch, as HostLoader's training batches do
    return create_loader(dataset, (3, size, size), recipe.batch_size, is_training=True, scale=recipe.scale,
                         hflip=recipe.hflip, auto_augment=aa, color_jitter=recipe.color_jitter or None,
                         re_prob=recipe.reprob, re_mode="pixel", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         num_workers=workers, device=torch.device("cpu"), use_prefetcher=False)


def passes(batches: Iterable[Any], n: int) -> float:
    """Median img/s of n full passes, after one warm-up pass."""
    rates = []
    for i in range(n + 1):
        t0 = time.perf_counter()
        count = sum(batch[0].shape[0] for batch in batches)
        if i:
            rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=PACKED, help="packed CIFAR-10 JPEGs (.npz)")
    parser.add_argument("--root", type=Path, default=None, help="the ImageFolder's folder (default: a temp dir)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--per-class", type=int, default=None, help="training and validation images per class")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_imagefolder(args.data, args.root or Path(tmp), args.size, args.per_class)
        train = sum(1 for _ in (root / "train").rglob("*.jpg"))
        print(f"ImageFolder {root}: {train} training images at {args.size} px; batch {args.batch}; "
              f"{torch.get_num_threads()} threads; median of {args.passes} passes after a warm-up")
        print("| loader | workers | img/s | img/s per worker |\n|---|---:|---:|---:|")
        for workers in args.workers:
            for name, decode in (("toolkit HostLoader, decode host", "host"),
                                 ("toolkit HostLoader, decode device (cpu)", "device"), ("timm create_loader", None)):
                cfg = resolve({"data": {"dataset": "imagefolder", "root": str(root), "image_size": args.size,
                                        "loader": "dataloader", "num_workers": workers, "decode": decode or "host",
                                        "val_fraction": 0},
                               "recipe": {"name": "convmixer_imagenet", "batch_size": args.batch, "mixup": 0.0,
                                          "cutmix": 0.0}})
                if decode is None:
                    batches = timm_loader(root, cfg.recipe, args.size, workers)
                else:
                    batches = build_loaders(cfg.data, cfg.recipe, torch.device("cpu"), seed=0).train
                rate = passes(batches, args.passes)
                print(f"| {name} | {workers} | {rate:,.0f} | {rate / workers:,.0f} |", flush=True)


if __name__ == "__main__":
    main()

"""Throughput of harness.augment.BatchAugment against torchvision's per-image PIL pipeline, on real CIFAR-10 images.

A script that prints figures, not a test:

    .venv/bin/python benchmarks/augment_speed.py                 # CPU, as many threads as this process may use
    .venv/bin/python benchmarks/augment_speed.py --device cuda   # BatchAugment on the GPU (the PIL row stays on CPU)

The baseline is the public convmixer-cifar10 script's transform list (RandomResizedCrop(32, scale=(1, 1),
ratio=(1, 1)), RandomHorizontalFlip, RandAugment(2, 12), ToTensor, Normalize) applied image by image in this one
process, as one DataLoader worker would: the same augmentation as BatchAugment's convmixer_cifar10 row.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from harness.augment import AugmentSpec, BatchAugment
from harness.config import RECIPES, RecipeConfig
from harness.data import augment_spec

CIFAR_NPZ = Path(__file__).resolve().parents[1] / "tests" / "data" / "cifar10_jpegbytes_1k1k.npz"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)  # convmixer-cifar10's normalisation

SPECS = {  # name -> what BatchAugment does
    **{f"{name} recipe": augment_spec(RecipeConfig(**RECIPES[name]), MEAN, STD)
       for name in ("convmixer_cifar10", "convmixer_cifar10_timm")},
    "rrc(0.08,1)+RA m9 n2+jitter 0.4+reprob 0.25": AugmentSpec(crop="rrc", randaugment_n=2, randaugment_m=9,
                                                              color_jitter=0.4, reprob=0.25, mean=MEAN, std=STD),
    "airbench: translate 4 + flip": AugmentSpec(crop="translate", translate=4, hflip=0.5, mean=MEAN, std=STD),
}


def load_cifar(n: int) -> list[Image.Image]:
    data = np.load(CIFAR_NPZ)
    buf, off = data["jpeg_train"], data["offsets_train"]
    order = np.random.default_rng(0).permutation(len(off) - 1)[:n]  # the file is sorted by class
    return [Image.open(io.BytesIO(buf[off[i]:off[i + 1]].tobytes())).convert("RGB") for i in order]


def median_seconds(fn: Callable[[], object], reps: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up: allocator, lazy CUDA init, first-call dispatch
    fn()
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--pil-reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    images = load_cifar(args.batch)
    import torchvision.transforms as T  # only the baseline needs it (its import costs seconds)

    pil_pipeline = T.Compose([
        T.RandomResizedCrop(32, scale=(1.0, 1.0), ratio=(1.0, 1.0)), T.RandomHorizontalFlip(),
        T.RandAugment(num_ops=2, magnitude=12), T.ToTensor(), T.Normalize(MEAN, STD),
    ])
    pil_s = median_seconds(lambda: torch.stack([pil_pipeline(im) for im in images]), args.pil_reps, lambda: None)

    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).contiguous().to(device)
    generator = torch.Generator().manual_seed(0)
    rows = [("torchvision PIL, per image (cpu, 1 process)", pil_s)]
    for name, spec in SPECS.items():
        aug = BatchAugment(spec, 32)
        rows.append((f"BatchAugment: {name}", median_seconds(lambda aug=aug: aug(x, generator), args.reps, sync)))

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"batch {args.batch} CIFAR-10 images, 32x32, {args.threads} torch threads, BatchAugment on {device_name}; "
          f"median of {args.reps} batches ({args.pil_reps} for PIL)")
    print(f"{'pipeline':<80} {'ms/batch':>10} {'img/s':>10} {'vs PIL':>8}")
    for name, seconds in rows:
        print(f"{name:<80} {1000 * seconds:>10.2f} {args.batch / seconds:>10.0f} {pil_s / seconds:>7.1f}x")


if __name__ == "__main__":
    main()

"""The device-resident data path against the DataLoader path, on this machine, for the same data and recipe.

Times full passes over the training split (shuffle, augmentation, normalisation, batches ready on the device) with
`data.loader: device` and with `data.loader: dataloader` (per-image timm/torchvision transforms in worker
processes), and prints img/s and their ratio. No model: this is the data path alone. The device path exists to be
faster: the script exits 1 if it is not `--target` times as fast as the DataLoader for every case.

    python benchmarks/data_path_speed.py [--workers 2] [--passes 3] [--target 2.0]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from harness.config import resolve
from harness.data import build_loaders

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "digits, recipe small (translate + normalise)": {"data": {"dataset": "digits"}, "recipe": "small"},
    "CIFAR-10 1k, recipe convmixer_cifar10 (flip + RandAugment n2)": {
        "data": {"dataset": "packed", "root": str(ROOT / "tests" / "data" / "cifar10_jpegbytes_1k1k.npz")},
        "recipe": "convmixer_cifar10"},
}


def passes(loader, n: int) -> list[float]:
    """img/s of n full passes (the first pass of each loader is a warm-up and not counted)."""
    rates = []
    for i in range(n + 1):
        t0 = time.perf_counter()
        count = sum(x.shape[0] for x, _, _ in loader)
        if i:
            rates.append(count / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--target", type=float, default=2.0, help="least ratio, device path / DataLoader img/s")
    args = parser.parse_args()
    device = torch.device("cpu")
    print(f"{torch.get_num_threads()} threads, DataLoader with {args.workers} workers, median of {args.passes} passes")
    print("| data | device path img/s | DataLoader img/s | ratio |\n|---|---:|---:|---:|")
    missed = []
    for name, raw in CASES.items():
        rates = {}
        for kind in ("device", "dataloader"):
            cfg = resolve({**raw, "data": {**raw["data"], "loader": kind, "num_workers": args.workers}})
            loaders = build_loaders(cfg.data, cfg.recipe, device, seed=0)
            assert loaders.kind == kind
            rates[kind] = statistics.median(passes(loaders.train, args.passes))
        ratio = rates["device"] / rates["dataloader"]
        print(f"| {name} | {rates['device']:,.0f} | {rates['dataloader']:,.0f} | {ratio:.1f}x |", flush=True)
        if ratio < args.target:
            missed.append(name)
    if missed:
        sys.exit(f"target missed: the device path is less than {args.target}x as fast as the DataLoader for "
                 f"{'; '.join(missed)}")
    print(f"target met: the device path is {args.target}x as fast as the DataLoader or more in every case")


if __name__ == "__main__":
    main()

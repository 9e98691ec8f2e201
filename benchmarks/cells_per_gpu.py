"""Cells per hour with 1, 2 and 4 cells per device (`run.cells_per_gpu`): ConvMixer-256/8 (k5, p2) cells on the packed
CIFAR-10, one study per setting through `run-study` and the local executor, as a user runs it.

For each setting it prints the study's wall time, its training span (first attempt start to last attempt end, from
the ledger, in whole seconds), cells per hour over that span, and the cells' median per-epoch training img/s (measured
while sharing) beside their throughput measured alone (result.json `throughput.train_img_s`). On one GPU:

    python benchmarks/cells_per_gpu.py --data /path/to/cifar10_jpegbytes_full.npz

and on a CPU, at a tiny size, to check the script itself (the CPU counts as one device):

    python benchmarks/cells_per_gpu.py --data ../shared/data/cifar10_jpegbytes_1k1k.npz --device cpu \
        --dim 16 --depth 1 --epochs 1 --cells 4 --train-limit 256 --batch-size 64
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def study(name: str, args: argparse.Namespace, cells_per_gpu: int, results: Path) -> dict:
    """`args.cells` cells (seeds) of the same model: only how many share a device changes between settings."""
    return {
        "name": name,
        "base": {"model": {"block": "convmixer", "dim": args.dim, "depth": args.depth, "kernel_size": 5,
                           "patch_size": 2},
                 "data": {"dataset": "packed", "root": str(Path(args.data).resolve()), "val_fraction": 0.0,
                          **({"train_limit": args.train_limit} if args.train_limit else {})},
                 "recipe": {"name": "convmixer_cifar10", "epochs": args.epochs,
                            **({"batch_size": args.batch_size} if args.batch_size else {})},
                 "system": {"device": args.device}, "bench": {"erf": False}},
        "grid": {"model.mixer": ["dwconv"]},
        "seeds": args.cells,
        "run": {"executor": "local", "cells_per_gpu": cells_per_gpu, "results": str(results)},
    }


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def measure(args: argparse.Namespace, cells_per_gpu: int, folder: Path) -> dict:
    name = f"cells_per_gpu_{cells_per_gpu}"
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study(name, args, cells_per_gpu, folder / "results"), sort_keys=False))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "runner", str(path)], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{name}: run-study failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    records = [json.loads(f.read_text()) for f in (folder / "results" / name).glob("runs/*/result.json")]
    attempts = [a for f in (folder / "results" / name).glob("runs/*/state.json")  # the ledger: every attempt's end
                for a in json.loads(f.read_text())["attempts_log"]]
    span = max(seconds(a["end"]) for a in attempts) - min(seconds(a["start"]) for a in attempts)
    shared = statistics.median(h["train_img_s"] for r in records for h in r["history"])
    alone = statistics.median(r["throughput"]["train_img_s"] for r in records)
    return {"cells_per_gpu": cells_per_gpu, "cells": len(records), "wall_s": wall, "span_s": span,
            "cells_per_hour": len(records) / max(span, 1.0) * 3600, "epoch_train_img_s": shared,
            "alone_train_img_s": alone, "mps": (records[0]["execution"]["sharing"] or {}).get("mps", False),
            "device": records[0]["env"]["device_name"], "torch": records[0]["env"]["torch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the packed CIFAR-10 .npz")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--settings", type=int, nargs="+", default=[1, 2, 4], help="cells per device to compare")
    parser.add_argument("--cells", type=int, default=8, help="cells per study (a multiple of every setting)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--train-limit", type=int, default=None, help="train on N images only (a quick check)")
    parser.add_argument("--batch-size", type=int, default=None, help="the recipe's by default (512)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cells-per-gpu-") as tmp:
        for n in args.settings:
            rows.append(measure(args, n, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{rows[0]['device']}, torch {rows[0]['torch']}; ConvMixer-{args.dim}/{args.depth} k5 p2, {args.epochs} "
          f"epochs, {args.cells} cells per setting")
    print("| cells per device | MPS | training span s | cells per hour | per-epoch train img/s (shared, median) "
          "| train img/s measured alone (median) | run-study wall s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        mps = "yes" if r["mps"] else "no"
        print(f"| {r['cells_per_gpu']} | {mps} | {r['span_s']:.0f} | {r['cells_per_hour']:,.0f} "
              f"| {r['epoch_train_img_s']:,.0f} | {r['alone_train_img_s']:,.0f} | {r['wall_s']:.1f} |")


if __name__ == "__main__":
    main()

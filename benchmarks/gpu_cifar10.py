"""The GPU check of the training path: the public convmixer-cifar10 recipe with the toolkit, on the packed CIFAR-10.

Runs ConvMixer-256/8 (k5, p2) for 25 epochs and ConvMixer-256/8 (k9, p1) for a few epochs, each with the execution
setting the toolkit's probe chooses and the device-resident data path, and prints seconds per epoch, end-to-end
img/s, the bare training step's img/s and test accuracy. One call of under 8 minutes on an H100 or H200:

    python benchmarks/gpu_cifar10.py --data /path/to/cifar10_jpegbytes_full.npz --out /tmp/gpu-check
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from harness.config import resolve
from harness.train import train

MODELS = {  # name -> (kernel size, patch size, epochs)
    "ConvMixer-256/8 k5 p2": (5, 2, 25),
    "ConvMixer-256/8 k9 p1": (9, 1, 2),
}


def check_augment_on_device(data: str, device: str, recipe: str) -> None:
    """The device path's augmented batch equals the CPU one for the same seed, and how fast it is there."""
    import torch

    from harness.augment import BatchAugment
    from harness.config import RECIPES, RecipeConfig
    from harness.data import augment_spec
    from harness.datasets import create_dataset
    images, _ = create_dataset("packed", data).load("train")
    x = torch.from_numpy(images[:512])
    augment = BatchAugment(augment_spec(RecipeConfig(**RECIPES[recipe]), (0.5,) * 3, (0.25,) * 3), 32)
    cpu = augment(x, torch.Generator().manual_seed(0))
    gpu = augment(x.to(device), torch.Generator().manual_seed(0))
    diff = (gpu.cpu() - cpu).abs()
    print(f"augment: CPU vs {device} on 512 CIFAR-10 images, same seed: max |diff| {diff.max():.2e}, "
          f"pixels differing by > 1/255 of the range: {(diff > 4 / 255).float().mean():.2%}", flush=True)
    xd, generator = x.to(device), torch.Generator().manual_seed(1)
    for _ in range(3):
        augment(xd, generator)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        augment(xd, generator)
    torch.cuda.synchronize()
    print(f"augment on {device}: {20 * 512 / (time.perf_counter() - t0):,.0f} img/s (batches of 512, "
          f"the {recipe} recipe)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the packed CIFAR-10 .npz (all 60,000 images)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", default="convmixer_cifar10",
                        choices=["convmixer_cifar10", "convmixer_cifar10_timm"],
                        help="convmixer_cifar10: the reference script's torchvision RandAugment; the other: timm's ops")
    parser.add_argument("--k9-epochs", type=int, default=MODELS["ConvMixer-256/8 k9 p1"][2])
    # for a quick check of this script on a CPU: --device cpu --epochs 1 --dim 32 --depth 2
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    parser.add_argument("--only", choices=["k5", "k9"], default=None, help="run one of the two models")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--depth", type=int, default=8)
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        check_augment_on_device(args.data, args.device, args.recipe)
    rows = []
    for name, (k, p, epochs) in MODELS.items():
        if args.only and f"k{k}" != args.only:
            continue
        epochs = args.epochs or (args.k9_epochs if k == 9 else epochs)
        cfg = resolve({"model": {"mixer": "dwconv", "block": "convmixer", "dim": args.dim, "depth": args.depth,
                                 "kernel_size": k,
                                 "patch_size": p},
                       # the reference trains on all 50,000 training images: no validation hold-out
                       "data": {"dataset": "packed", "root": args.data, "val_fraction": 0.0},
                       "recipe": {"name": args.recipe, "epochs": epochs},
                       "system": {"device": args.device}, "bench": {"enabled": False, "erf": False}})
        t0 = time.perf_counter()
        result = train(cfg, args.out / f"k{k}_p{p}", log=lambda line: print(line, flush=True))
        wall = time.perf_counter() - t0
        history = [json.loads(line) for line in (args.out / f"k{k}_p{p}" / "metrics.jsonl").read_text().splitlines()]
        steady = history[1:] or history  # the first epoch also compiles the model
        ex = result["execution"]
        chosen = next((m for m in ex["probe"] if m["layout"] == ex["layout"] and m["precision"] == ex["precision"]
                       and m["compiled"] == ex["compiled"]), None)
        rows.append({
            "model": name, "epochs": epochs,
            "setting": f"{ex['layout']}/{ex['precision']}{'/compiled' if ex['compiled'] else ''}",
            "s_per_epoch": statistics.median(h["epoch_s"] for h in steady),
            "first_epoch_s": history[0]["epoch_s"],
            "epoch_img_s": statistics.median(h["train_img_s"] * h["train_s"] / h["epoch_s"] for h in steady),
            "train_img_s": statistics.median(h["train_img_s"] for h in steady),
            "step_img_s": chosen["img_s"] if chosen else None,
            "test_top1": result["metrics"]["test_top1"], "wall_s": wall,
            "probe": [f"{m['layout']}/{m['precision']}{'/c' if m['compiled'] else ''}: "
                      f"{m['img_s'] or 0:,.0f}" for m in ex["probe"]],
            "device": result["env"]["device_name"], "torch": result["env"]["torch"],
        })
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{rows[0]['device']}, torch {rows[0]['torch']}")
    print("| model | epochs | setting | s/epoch (median, after the first) | first epoch s | whole-epoch img/s "
          "| train-loop img/s (data + steps) | bare step img/s | test top-1 | run wall s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['epochs']} | {r['setting']} | {r['s_per_epoch']:.2f} | {r['first_epoch_s']:.1f} "
              f"| {r['epoch_img_s']:,.0f} | {r['train_img_s']:,.0f} | {r['step_img_s'] or 0:,.0f} "
              f"| {r['test_top1']:.2f} | {r['wall_s']:.0f} |")
    for r in rows:
        print(f"probe {r['model']}: " + "; ".join(r["probe"]))


if __name__ == "__main__":
    main()

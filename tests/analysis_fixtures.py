"""Result files of a study in the exact layout the study runner and the training harness write, for tests and
benchmarks of `analysis/` that do not train anything.

The numbers come from a seeded simulation of a ConvMixer-style CIFAR-10 ablation (parameters and FLOPs from the
layer shapes, throughput from FLOPs, accuracy curves from a saturating formula plus per-seed noise). Tests must
read their expected values back from the written files, never from this module's formulas.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DIM, DEPTH, IMG, CLASSES = 256, 8, 32, 10
MIXER_QUALITY = {"dwconv": 94.0, "pool": 91.5, "attention": 90.5, "mlp": 88.0, "fourier": 89.0, "identity": 77.0}
KERNEL_MIXERS = ("dwconv", "pool")              # the others ignore model.kernel_size: one cell, kernel n/a
BEST_LR = {"dwconv": 0.05, "pool": 0.05, "attention": 0.01, "mlp": 0.01, "fourier": 0.05, "identity": 0.1}
SOURCE, OLD_SOURCE = "5e1f0c2d9a7b", "0a1d5e7c3b2f"    # code.source of the latest submission, and of older code
DATA = {"train_size": 45000, "val_size": 5000, "test_size": 10000, "val_fraction": 0.1, "data_seed": 0}

# What can happen to a run, beyond "done":
#   failed      result.json says failed (e.g. OOM), state.json failed
#   diverged    result.json says diverged at epoch 2, with a NaN loss
#   crashed     no result.json; state.json failed with the scheduler's error (killed at the time limit)
#   running     state.json running; metrics.jsonl is being appended (its last line is half written)
#   queued      state.json queued, nothing else
#   unreadable  result.json is truncated
#   missing     no run folder at all
#   interrupted state.json interrupted (stopped on purpose, resumable), metrics.jsonl up to the stop
#   submitting  state.json submitting, nothing else
#   stale       done, but trained under older code (code.source differs from the study's)
OUTCOMES = ("done", "failed", "diverged", "crashed", "running", "queued", "unreadable", "missing", "interrupted",
            "submitting", "stale")


def _params(mixer: str, patch: int, kernel: int, dim: int = DIM) -> int:
    tokens = (IMG // patch) ** 2
    mixer_params = {"dwconv": dim * kernel * kernel + dim, "attention": 4 * dim * dim + 4 * dim,
                    "mlp": tokens * tokens + tokens}.get(mixer, 0)
    block = mixer_params + 2 * dim + dim * dim + dim + 2 * dim
    return 3 * patch * patch * dim + 3 * dim + DEPTH * block + dim * CLASSES + CLASSES


def _flops(mixer: str, patch: int, kernel: int, dim: int = DIM) -> int:
    tokens = (IMG // patch) ** 2
    mixer_flops = {"dwconv": 2 * dim * kernel * kernel * tokens,
                   "attention": 8 * dim * dim * tokens + 4 * tokens * tokens * dim,
                   "mlp": 2 * tokens * tokens * dim, "fourier": int(2.5 * dim * tokens * math.log2(tokens + 1))
                   }.get(mixer, 0)
    return 2 * 3 * patch * patch * dim * tokens + DEPTH * (mixer_flops + 2 * dim * dim * tokens) + 2 * dim * CLASSES


def matched_dim(mixer: str, patch: int, kernel: int, target: float) -> int:
    """The width (a multiple of 8) whose parameter count is closest to `target`, as a matched study solves it."""
    return min(range(8, 2049, 8), key=lambda d: abs(_params(mixer, patch, kernel, d) - target))


def run_config(mixer: str, patch: int, kernel: int | None, seed: int, epochs: int, lr: float = 0.05,
               dim: int = DIM) -> dict[str, Any]:
    return {
        "model": {"mixer": mixer, "block": "convmixer", "dim": dim, "depth": DEPTH, "patch_size": patch,
                  "kernel_size": kernel, "act": "gelu", "mixer_kwargs": {}, "block_kwargs": {},
                  "drop_path_rate": 0.0, "drop_rate": 0.0},
        "data": {"dataset": "cifar10", "root": None, "image_size": None, "loader": "auto", "num_workers": 4,
                 "train_limit": None, "options": {}},
        "recipe": {"name": "convmixer_cifar10", "epochs": epochs, "batch_size": 512, "optimizer": "adamw",
                   "lr": lr, "weight_decay": 0.005, "schedule": "onecycle", "scale": [1.0, 1.0], "hflip": 0.5,
                   "randaugment_n": 2, "randaugment_m": 4.0},
        "system": {"device": "auto", "precision": "auto", "layout": "auto", "compile": "auto",
                   "deterministic": False, "threads": None, "checkpoint": True},
        "bench": {"enabled": True, "batch_size": None, "warmup": None, "iters": None, "img_size": None,
                  "compile": "auto"},
        "seed": seed,
    }


def _epochs(rng: np.random.Generator, final: float, epochs: int, validation: bool) -> list[dict[str, Any]]:
    """Per-epoch records; accuracies on whole images of the splits in DATA (multiples of 100/size)."""
    def on(split: str, value: float) -> float:
        step = 100 / DATA[f"{split}_size"]
        return round(min(value, 100.0) / step) * step

    records = []
    for e in range(epochs):
        shape = (1 - math.exp(-4 * (e + 1) / epochs)) / (1 - math.exp(-4))
        top1 = final if e == epochs - 1 else final * shape + rng.normal(0, 0.3)
        val = top1 + rng.normal(0, 0.3)
        records.append({
            "epoch": e, "train_loss": 2.3 * (1 - shape) + 0.2, "train_top1": on("train", top1 + 3),
            "val_loss": 2.3 * (1 - shape) + 0.24 if validation else None,
            "val_top1": on("val", val) if validation else None,
            "val_top5": on("val", val + 5.4) if validation else None,
            "test_loss": 2.3 * (1 - shape) + 0.25, "test_top1": on("test", top1), "test_top5": on("test", top1 + 5.5),
            "lr": 0.05 * math.sin(math.pi * (e + 1) / (epochs + 1)), "epoch_s": float(rng.uniform(9, 11)),
            "train_s": float(rng.uniform(8, 9)), "train_img_s": float(rng.uniform(4800, 5200)),
        })
    return records


def effective_receptive_field(mixer: str, patch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """ERF-like maps (IMG x IMG, float32): a Gaussian around the centre, wider after training for mixers that
    mix far (attention widest, identity no wider than a patch), plus noise."""
    yy, xx = np.mgrid[:IMG, :IMG] - (IMG - 1) / 2
    def blob(sigma: float) -> np.ndarray:
        return (np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2)) + rng.uniform(0, 0.02, (IMG, IMG))).astype(np.float32)
    reach = {"attention": 10.0, "mlp": 8.0, "fourier": 8.0, "dwconv": 5.0, "pool": 4.0, "identity": 0.6 * patch}
    return {"init": blob(1.0 + patch / 2), "trained": blob(1.0 + patch / 2 + reach.get(mixer, 3.0))}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _write_run(run_dir: Path, run_id: str, study: str, cell: dict[str, Any], config: dict[str, Any],
               outcome: str, quality: Mapping[str, float], noise: float, validation: bool, erf: bool) -> None:
    model = config["model"]
    mixer, patch, kernel, seed = model["mixer"], model["patch_size"], model["kernel_size"], config["seed"]
    epochs, lr = config["recipe"]["epochs"], config["recipe"]["lr"]
    rng = np.random.default_rng(zlib.crc32(f"{mixer}/{patch}/{kernel}/{lr}/{seed}".encode()))
    final = (quality[mixer] - 0.6 * math.log2(patch) ** 2 + (0.3 * (kernel - 5) / 2 if mixer in KERNEL_MIXERS else 0)
             - 2 * abs(math.log10(lr / BEST_LR[mixer])) + rng.normal(0, noise))
    code = {"commit": "3f2c1e0a9b8d", "dirty": False, "source": OLD_SOURCE if outcome == "stale" else SOURCE}
    env = {"torch": "2.14.1", "cuda": "13.0", "device": "cuda", "device_name": "NVIDIA H200", "cpu_count": 16,
           "hostname": f"gpu{seed % 2 + 1:02d}", "python": "3.11.7"}
    _write(run_dir / "config.json", json.dumps({"run_id": run_id, "study": study, "cell": cell, "config": config,
                                                "code": code, "env": env}))
    records = _epochs(rng, final, epochs, validation)
    stop = {"failed": 3, "diverged": 3, "crashed": 4, "running": epochs // 2, "interrupted": epochs // 2, "queued": 0,
            "submitting": 0}.get(outcome, epochs)
    started = outcome not in ("queued", "submitting")
    job = f"{4100 + seed}_{zlib.crc32(run_id.encode()) % 97}"
    why = {"interrupted": "interrupted", "crashed": "failed", "failed": "failed", "diverged": "diverged",
           "running": None}.get(outcome, "done")
    state = {"status": {"crashed": "failed", "stale": "done", "unreadable": "done"}.get(outcome, outcome),
             "attempts": int(started), "job_ids": [job] if started else [],
             "error": "slurmstepd: *** JOB CANCELLED DUE TO TIME LIMIT ***" if outcome == "crashed" else None,
             "last_epoch": stop - 1 if stop else None, "updated": "2026-11-20T03:14:15+00:00",
             "attempts_log": [{"host": env["hostname"], "job_id": job, "start": "2026-11-20T01:00:00+00:00",
                               "end": None if why is None else "2026-11-20T03:14:15+00:00", "epochs": stop,
                               "why": why}] if started else []}
    _write(run_dir / "state.json", json.dumps(state))
    lines = [json.dumps(r) for r in records[:stop]]
    if outcome == "running":  # the harness is appending the next epoch right now
        lines.append(json.dumps(records[stop])[:25])
        _write(run_dir / "metrics.jsonl", "\n".join(lines))
    elif lines:
        _write(run_dir / "metrics.jsonl", "\n".join(lines) + "\n")
    if outcome in ("running", "queued", "crashed", "interrupted", "submitting"):
        return

    last = records[stop - 1]
    kernel_used = kernel if mixer in KERNEL_MIXERS else 5
    flops = _flops(mixer, patch, kernel_used, model["dim"])
    params = _params(mixer, patch, kernel_used, model["dim"])
    selected = max(records[:stop], key=lambda r: r["val_top1"]) if validation else None  # first of equal ones
    infer = min(60000.0, 1.4e13 / flops) * float(rng.uniform(0.98, 1.02))
    status = {"failed": "failed", "diverged": "diverged"}.get(outcome, "done")
    setting = {"layout": "channels_last", "precision": "bf16", "compiled": True, "batch_size": 256}
    result = {
        "run_id": run_id, "status": status,
        "reason": {"failed": "Traceback (most recent call last):\n  File \"harness/train.py\", line 93, in train\n"
                             "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
                   "diverged": "loss is nan at epoch 3"}.get(outcome),
        "diverged_epoch": 3 if outcome == "diverged" else None,
        "config": config,
        "metrics": {"train_loss": last["train_loss"], "train_top1": last["train_top1"],
                    "val_loss": last["val_loss"], "val_top1": last["val_top1"], "val_top5": last["val_top5"],
                    "test_top1": last["test_top1"] if outcome != "diverged" else 10.0,
                    "test_top5": last["test_top5"] if outcome != "diverged" else 50.0,
                    "test_loss": last["test_loss"] if outcome != "diverged" else float("nan"),
                    "selected_epoch": selected and selected["epoch"],
                    "val_top1_selected": selected and selected["val_top1"],
                    "test_top1_selected": selected and selected["test_top1"],
                    "test_top5_selected": selected and selected["test_top5"], "epochs": stop},
        "data": {**DATA, **({} if validation else {"val_size": 0, "val_fraction": 0.0,
                                                   "train_size": DATA["train_size"] + DATA["val_size"]})},
        "model": {"params": params, "flops": flops, "input_size": [3, IMG, IMG]},
        "throughput": {"infer_img_s": infer if status == "done" else None,
                       "train_img_s": infer / 3.2 if status == "done" else None,
                       "infer_setting": setting, "train_setting": {**setting, "compiled": False},
                       "measurements": [{"mode": "infer", **setting, "img_size": IMG, "img_s": infer,
                                         "step_ms": 256 / infer * 1e3, "device": "cuda", "error": None}]},
        "execution": {"layout": "channels_last", "precision": "bf16", "compiled": False, "loader": "device"},
        "timing": {"wall_s": stop * 50000 / (infer / 3.2) + 20, "train_s": stop * 50000 / (infer / 3.2),
                   "epoch_s": [r["epoch_s"] for r in records[:stop]]},
        "memory": {"peak_bytes": int(512 * (IMG // patch) ** 2 * DIM * DEPTH * 4 * 3 + 16 * params),
                   "kind": "cuda_max_allocated"},
        "env": env, "code": code, "finished_at": "2026-11-20T03:14:15+00:00",
    }
    text = json.dumps(result)
    _write(run_dir / "result.json", text[:len(text) // 2] if outcome == "unreadable" else text)
    if erf and status == "done":
        np.savez(run_dir / "erf.npz", **effective_receptive_field(mixer, patch, rng))


def write_study(root: Path, name: str = "mixer_vs_patch", *, mixers: Sequence[str] = ("dwconv", "attention",
                "identity"), patch_sizes: Sequence[int] = (1, 2, 4), kernel_sizes: Sequence[int] = (5,),
                lrs: Sequence[float] = (0.05,), seeds: Sequence[int] = (0, 1, 2), epochs: int = 6,
                outcomes: Mapping[tuple[Any, ...], str] | None = None, report: dict[str, Any] | None = None,
                select: dict[str, Any] | None = None, match_params: float | None = None,
                quality: Mapping[str, float] | None = None, noise: float = 0.4, validation: bool = True,
                erf: bool = False) -> Path:
    """Write results/<name>/ under `root` and return that folder.

    The axes are model.mixer and model.patch_size, plus model.kernel_size and recipe.lr when `kernel_sizes` or
    `lrs` have several values. Mixers that have no kernel are one cell per other setting, with kernel size n/a
    (`ignored`). `outcomes` maps (axis values..., seed) to one of OUTCOMES (an n/a kernel as None); other runs are
    done. `match_params`: each cell's width is solved for this parameter count (`match` in study.yaml).
    `quality` overrides MIXER_QUALITY; `noise` is the seed-to-seed std of the final accuracy; `validation=False`
    holds out no validation data (val_* null); `erf` writes erf.npz for every finished run.
    """
    outcomes = outcomes or {}
    quality = {**MIXER_QUALITY, **(quality or {})}
    varied = {"model.kernel_size": kernel_sizes, "recipe.lr": lrs}
    axes = ["model.mixer", "model.patch_size"] + [a for a, values in varied.items() if len(values) > 1]
    study_dir = root / name
    cells, planned = [], set()
    for mixer, patch, kernel, lr in itertools.product(mixers, patch_sizes, kernel_sizes, lrs):
        ignored = ["model.kernel_size"] if "model.kernel_size" in axes and mixer not in KERNEL_MIXERS else []
        kernel_value = None if ignored else kernel
        point = {"model.mixer": mixer, "model.patch_size": patch, "model.kernel_size": kernel_value, "recipe.lr": lr}
        values = tuple(point[a] for a in axes)
        if values in planned:  # a kernel-free mixer: listed once
            continue
        planned.add(values)
        dim = matched_dim(mixer, patch, kernel, match_params) if match_params else DIM
        for seed in seeds:
            config = run_config(mixer, patch, kernel_value, seed, epochs, lr, dim)
            run_id = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
            cell = {**dict(zip(axes, values)), "seed": seed}
            cells.append({"run_id": run_id, "params": cell, **({"ignored": ignored} if ignored else {})})
            outcome = outcomes.get((*values, seed), "done")
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}; known: {OUTCOMES}")
            if outcome != "missing":
                _write_run(study_dir / "runs" / run_id, run_id, name, cell, config, outcome, quality, noise,
                           validation, erf)
    base = run_config(mixers[0], patch_sizes[0], kernel_sizes[0], 0, epochs, lrs[0])
    base.pop("seed")
    study = {"name": name, "description": "Does the token mixer or the patch size matter more on CIFAR-10?",
             "axes": axes, "seeds": list(seeds), "base": base, "cells": cells,
             "code": {"commit": "3f2c1e0a9b8d", "dirty": False, "source": SOURCE}}
    if report is not None:
        study["report"] = report
    if select is not None:
        study["select"] = select
    if match_params is not None:
        study["match"] = {"params": match_params, "solve": "model.dim"}
    _write(study_dir / "study.yaml", yaml.safe_dump(study, sort_keys=False))
    return study_dir

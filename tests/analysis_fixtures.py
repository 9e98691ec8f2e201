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

# What can happen to a run, beyond "done":
#   failed      result.json says failed (e.g. OOM), state.json failed
#   diverged    result.json says diverged at epoch 2, with a NaN loss
#   crashed     no result.json; state.json failed with the scheduler's error (killed at the time limit)
#   running     state.json running; metrics.jsonl is being appended (its last line is half written)
#   queued      state.json queued, nothing else
#   unreadable  result.json is truncated
#   missing     no run folder at all
OUTCOMES = ("done", "failed", "diverged", "crashed", "running", "queued", "unreadable", "missing")


def _params(mixer: str, patch: int, kernel: int) -> int:
    tokens = (IMG // patch) ** 2
    mixer_params = {"dwconv": DIM * kernel * kernel + DIM, "attention": 4 * DIM * DIM + 4 * DIM,
                    "mlp": tokens * tokens + tokens}.get(mixer, 0)
    block = mixer_params + 2 * DIM + DIM * DIM + DIM + 2 * DIM
    return 3 * patch * patch * DIM + 3 * DIM + DEPTH * block + DIM * CLASSES + CLASSES


def _flops(mixer: str, patch: int, kernel: int) -> int:
    tokens = (IMG // patch) ** 2
    mixer_flops = {"dwconv": 2 * DIM * kernel * kernel * tokens,
                   "attention": 8 * DIM * DIM * tokens + 4 * tokens * tokens * DIM,
                   "mlp": 2 * tokens * tokens * DIM, "fourier": int(2.5 * DIM * tokens * math.log2(tokens + 1))
                   }.get(mixer, 0)
    return 2 * 3 * patch * patch * DIM * tokens + DEPTH * (mixer_flops + 2 * DIM * DIM * tokens) + 2 * DIM * CLASSES


def run_config(mixer: str, patch: int, kernel: int, seed: int, epochs: int) -> dict[str, Any]:
    return {
        "model": {"mixer": mixer, "block": "convmixer", "dim": DIM, "depth": DEPTH, "patch_size": patch,
                  "kernel_size": kernel, "act": "gelu", "mixer_kwargs": {}, "block_kwargs": {},
                  "drop_path_rate": 0.0, "drop_rate": 0.0},
        "data": {"dataset": "cifar10", "root": None, "image_size": None, "loader": "auto", "num_workers": 4,
                 "train_limit": None, "options": {}},
        "recipe": {"name": "convmixer_cifar10", "epochs": epochs, "batch_size": 512, "optimizer": "adamw",
                   "lr": 0.05, "weight_decay": 0.005, "schedule": "onecycle", "scale": [1.0, 1.0], "hflip": 0.5,
                   "randaugment_n": 2, "randaugment_m": 4.0},
        "system": {"device": "auto", "precision": "auto", "layout": "auto", "compile": "auto",
                   "deterministic": False, "threads": None, "checkpoint": True},
        "bench": {"enabled": True, "batch_size": None, "warmup": None, "iters": None, "img_size": None,
                  "compile": "auto"},
        "seed": seed,
    }


def _epochs(rng: np.random.Generator, final: float, epochs: int) -> list[dict[str, Any]]:
    records = []
    for e in range(epochs):
        shape = (1 - math.exp(-4 * (e + 1) / epochs)) / (1 - math.exp(-4))
        top1 = final if e == epochs - 1 else final * shape + rng.normal(0, 0.3)
        records.append({
            "epoch": e, "train_loss": 2.3 * (1 - shape) + 0.2, "train_top1": min(99.9, top1 + 3),
            "test_loss": 2.3 * (1 - shape) + 0.25, "test_top1": top1, "test_top5": min(99.99, top1 + 5.5),
            "lr": 0.05 * math.sin(math.pi * (e + 1) / (epochs + 1)), "epoch_s": float(rng.uniform(9, 11)),
            "train_img_s": float(rng.uniform(4800, 5200)),
        })
    return records


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _write_run(run_dir: Path, run_id: str, study: str, cell: dict[str, Any], config: dict[str, Any],
               outcome: str) -> None:
    model = config["model"]
    mixer, patch, kernel, seed = model["mixer"], model["patch_size"], model["kernel_size"], config["seed"]
    epochs = config["recipe"]["epochs"]
    rng = np.random.default_rng(zlib.crc32(f"{mixer}/{patch}/{kernel}/{seed}".encode()))
    final = MIXER_QUALITY[mixer] - 0.6 * math.log2(patch) ** 2 + 0.3 * (kernel - 5) / 2 + rng.normal(0, 0.4)
    code = {"commit": "3f2c1e0a9b8d", "dirty": False}
    env = {"torch": "2.14.1", "cuda": "13.0", "device": "cuda", "device_name": "NVIDIA H200", "cpu_count": 16,
           "hostname": f"gpu{seed % 2 + 1:02d}", "python": "3.11.7"}
    _write(run_dir / "config.json", json.dumps({"run_id": run_id, "study": study, "cell": cell, "config": config,
                                                "code": code, "env": env}))
    records = _epochs(rng, final, epochs)
    stop = {"failed": 3, "diverged": 3, "crashed": 4, "running": epochs // 2, "queued": 0}.get(outcome, epochs)
    state = {"status": {"crashed": "failed"}.get(outcome, outcome), "attempts": 0 if outcome == "queued" else 1,
             "job_ids": [] if outcome == "queued" else [f"{4100 + seed}_{zlib.crc32(run_id.encode()) % 97}"],
             "error": "slurmstepd: *** JOB CANCELLED DUE TO TIME LIMIT ***" if outcome == "crashed" else None,
             "last_epoch": stop - 1 if stop else None, "updated": "2026-11-20T03:14:15+00:00"}
    if outcome == "unreadable":
        state["status"] = "done"
    _write(run_dir / "state.json", json.dumps(state))
    lines = [json.dumps(r) for r in records[:stop]]
    if outcome == "running":  # the harness is appending the next epoch right now
        lines.append(json.dumps(records[stop])[:25])
        _write(run_dir / "metrics.jsonl", "\n".join(lines))
    elif lines:
        _write(run_dir / "metrics.jsonl", "\n".join(lines) + "\n")
    if outcome in ("running", "queued", "crashed"):
        return

    last = records[stop - 1]
    flops = _flops(mixer, patch, kernel)
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
        "metrics": {"test_top1": last["test_top1"] if outcome != "diverged" else 10.0,
                    "test_top5": last["test_top5"] if outcome != "diverged" else 50.0,
                    "test_loss": last["test_loss"] if outcome != "diverged" else float("nan"),
                    "train_loss": last["train_loss"], "train_top1": last["train_top1"],
                    "best_test_top1": max(r["test_top1"] for r in records[:stop]), "epochs": stop},
        "model": {"params": _params(mixer, patch, kernel), "flops": flops, "input_size": [3, IMG, IMG]},
        "throughput": {"infer_img_s": infer if status == "done" else None,
                       "train_img_s": infer / 3.2 if status == "done" else None,
                       "infer_setting": setting, "train_setting": {**setting, "compiled": False},
                       "measurements": [{"mode": "infer", **setting, "img_size": IMG, "img_s": infer,
                                         "step_ms": 256 / infer * 1e3, "device": "cuda", "error": None}]},
        "execution": {"layout": "channels_last", "precision": "bf16", "compiled": False, "loader": "device"},
        "timing": {"wall_s": stop * 50000 / (infer / 3.2) + 20, "train_s": stop * 50000 / (infer / 3.2),
                   "epoch_s": [r["epoch_s"] for r in records[:stop]]},
        "memory": {"peak_bytes": int(512 * (IMG // patch) ** 2 * DIM * DEPTH * 4 * 3 + 16 * _params(mixer, patch,
                                                                                                         kernel)),
                   "kind": "cuda_max_allocated"},
        "env": env, "code": code, "finished_at": "2026-11-20T03:14:15+00:00",
    }
    text = json.dumps(result)
    _write(run_dir / "result.json", text[:len(text) // 2] if outcome == "unreadable" else text)


def write_study(root: Path, name: str = "mixer_vs_patch", *, mixers: Sequence[str] = ("dwconv", "attention",
                "identity"), patch_sizes: Sequence[int] = (1, 2, 4), kernel_sizes: Sequence[int] = (5,),
                seeds: Sequence[int] = (0, 1, 2), epochs: int = 6,
                outcomes: Mapping[tuple[Any, ...], str] | None = None,
                report: dict[str, Any] | None = None) -> Path:
    """Write results/<name>/ under `root` and return that folder.

    The axes are model.mixer and model.patch_size, plus model.kernel_size when `kernel_sizes` has several values.
    `outcomes` maps (axis values..., seed) to one of OUTCOMES; other runs are done.
    """
    outcomes = outcomes or {}
    axes = ["model.mixer", "model.patch_size"] + (["model.kernel_size"] if len(kernel_sizes) > 1 else [])
    study_dir = root / name
    cells = []
    for mixer, patch, kernel in itertools.product(mixers, patch_sizes, kernel_sizes):
        values = (mixer, patch, kernel)[:len(axes)]
        for seed in seeds:
            config = run_config(mixer, patch, kernel, seed, epochs)
            run_id = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
            cell = {**dict(zip(axes, values)), "seed": seed}
            cells.append({"run_id": run_id, "params": cell})
            outcome = outcomes.get((*values, seed), "done")
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}; known: {OUTCOMES}")
            if outcome != "missing":
                _write_run(study_dir / "runs" / run_id, run_id, name, cell, config, outcome)
    base = run_config(mixers[0], patch_sizes[0], kernel_sizes[0], 0, epochs)
    base.pop("seed")
    study = {"name": name, "description": "Does the token mixer or the patch size matter more on CIFAR-10?",
             "axes": axes, "seeds": list(seeds), "base": base, "cells": cells,
             "code": {"commit": "3f2c1e0a9b8d", "dirty": False}}
    if report is not None:
        study["report"] = report
    _write(study_dir / "study.yaml", yaml.safe_dump(study, sort_keys=False))
    return study_dir

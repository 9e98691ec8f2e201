"""What a study will cost, up front: device-hours per cell and in total, from measured step times.

A cell's training is `epochs x training images` image-steps. Its seconds per image come from, in this order:
- finished cells of the same model (same model, data and batch size) in this study: their whole wall time (start-up,
  evaluation and benchmark included) per trained image, measured where the study runs;
- a probe: a few training steps of the model on this machine's device (fp32, eager), cached under the toolkit's
  cache folder by model, data geometry, batch size, device class and the torch and timm versions. A probe counts
  training steps only, so it underestimates a little; it also only knows this machine's device class, which is
  named with the estimate (a SLURM study probed on a login node's CPU is estimated in CPU-hours).
`--status` puts the estimate beside what the cell's attempts spent (state.json's `attempts_log`).
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.datasets import cache_dir, create_dataset
from harness.records import atomic_write_json

from .state import CellStatus

PROBE_STEPS, PROBE_WARMUP = 3, 2
CPU_PROBE_BATCH = 8  # seconds per image barely depend on the batch on a CPU, where a big batch would take long


@dataclass(frozen=True)
class Estimate:
    seconds: float | None   # None: no finished cell of this model and no probe allowed
    source: str             # "finished" | "probe" | "none"


def device_class() -> str:
    """This machine's accelerator as a name, without importing torch: the first NVIDIA GPU, else the CPU's model."""
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        for line in info.read_text().splitlines():
            if line.startswith("Model:"):
                return line.split(":", 1)[1].strip()
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor() or "cpu")
    return f"cpu ({cpu})"


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def model_key(config: RunConfig) -> str:
    """What a step time depends on: the model, the data it sees and the batch size (not the seed or the recipe's
    schedule)."""
    c = config.to_dict()
    data = {k: v for k, v in c["data"].items() if k not in ("train_limit", "val_fraction", "data_seed", "num_workers")}
    return json.dumps({"model": c["model"], "data": data, "batch_size": c["recipe"]["batch_size"]}, sort_keys=True)


def _sizes_cache() -> Path:
    return cache_dir() / "cost" / "train_sizes.json"


def train_images(config: RunConfig, known: dict[str, int]) -> int:
    """Images trained per epoch: the training split after the validation hold-out and train_limit, whole batches."""
    data_key = json.dumps({k: v for k, v in config.to_dict()["data"].items()
                           if k in ("dataset", "root", "options")}, sort_keys=True)
    if data_key not in known:
        known[data_key] = create_dataset(config.data.dataset, config.data.root, **config.data.options).train_size()
    n = known[data_key]
    n -= math.ceil(config.data.val_fraction * n)  # as StratifiedShuffleSplit rounds the held-out part
    n = min(n, config.data.train_limit or n)
    return n // config.recipe.batch_size * config.recipe.batch_size


def _versions() -> str:
    return ",".join(f"{name}={_version(name)}" for name in ("torch", "timm"))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def _probe_path(config: RunConfig, device: str) -> Path:
    key = hashlib.sha256(f"{model_key(config)}|{device}|{_versions()}".encode()).hexdigest()[:32]
    return cache_dir() / "cost" / f"probe-{key}.json"


def probe(config: RunConfig) -> float:
    """Seconds per training image of the cell's model: a few fp32 eager steps on random data of its geometry."""
    import torch

    from harness.environment import resolve_device
    from harness.optim import build_optimizer
    from harness.train import build_model
    from harness.validate import check_data
    geometry = check_data(config, download=False)  # the shapes only: a dry run never downloads
    device = resolve_device("auto")
    batch = config.recipe.batch_size if device.type == "cuda" else min(config.recipe.batch_size, CPU_PROBE_BATCH)
    model = build_model(config, geometry.channels, geometry.num_classes, geometry.image_size).to(device)
    optimizer = build_optimizer(model, config.recipe)
    x = torch.randn(batch, geometry.channels, geometry.image_size, geometry.image_size, device=device)
    y = torch.randint(0, geometry.num_classes, (batch,), device=device)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    times = []
    for _ in range(PROBE_WARMUP + PROBE_STEPS):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[PROBE_WARMUP:]) / batch  # the median: a step slowed by another process is left out


def _finished_rates(statuses: list[CellStatus]) -> dict[str, float]:
    """model_key -> seconds per trained image, all included, over the study's finished cells of that model."""
    spent: dict[str, list[float]] = {}
    for s in statuses:
        result = s.run.final_result(s.cell.run_id) if s.status.value == "done" else None
        if not result:
            continue
        images = (result.get("data") or {}).get("train_size")
        epochs = (result.get("metrics") or {}).get("epochs")
        wall = (result.get("timing") or {}).get("wall_s")
        if images and epochs and wall:
            bs = s.cell.config.recipe.batch_size
            devices = (result.get("distributed") or {}).get("world_size") or 1  # device-seconds: every process's
            spent.setdefault(model_key(s.cell.config), []).append(
                wall * devices / (epochs * (images // bs * bs or images)))
    return {key: sum(v) / len(v) for key, v in spent.items()}


def estimate(statuses: list[CellStatus], allow_probe: bool) -> tuple[dict[str, Estimate], str]:
    """run_id -> Estimate of its whole training, and the device class probes ran (or would run) on."""
    device = device_class()
    finished = _finished_rates(statuses)
    sizes_path = _sizes_cache()
    sizes: dict[str, int] = json.loads(sizes_path.read_text()) if sizes_path.exists() else {}
    known_sizes = dict(sizes)
    rates: dict[str, tuple[float | None, str]] = {}
    out: dict[str, Estimate] = {}
    for s in statuses:
        config = s.cell.config
        if config.bench.only:  # a throughput cell trains nothing
            out[s.cell.run_id] = Estimate(0.0, "benchmark only")
            continue
        key = model_key(config)
        if key not in rates:
            if key in finished:
                rates[key] = finished[key], "finished"
            else:
                path = _probe_path(config, device)
                if path.exists():
                    rates[key] = json.loads(path.read_text())["s_per_image"], "probe"
                elif allow_probe:
                    print(f"probing the step time of {config.model.mixer}/{config.model.block} h={config.model.dim} "
                          f"d={config.model.depth} p={config.model.patch_size} on {device} (cached for next time)",
                          file=sys.stderr, flush=True)
                    measured = probe(config)
                    atomic_write_json(path, {"s_per_image": measured, "device": device, "versions": _versions(),
                                             "model": json.loads(key)})
                    rates[key] = measured, "probe"
                else:
                    rates[key] = None, "none"
        rate, source = rates[key]
        seconds = None if rate is None else rate * config.recipe.epochs * train_images(config, sizes)
        out[s.cell.run_id] = Estimate(seconds, source)
    if sizes != known_sizes:
        atomic_write_json(sizes_path, sizes)
    return out, device


def spent_seconds(state: dict[str, Any], processes: int = 1) -> float:
    """Device time of every attempt of a cell so far: wall time x its `processes` (an open attempt counts up to
    now)."""
    total = 0.0
    for attempt in state.get("attempts_log") or []:
        if attempt.get("end") is None and attempt.get("start"):
            total += max(0.0, (datetime.now(timezone.utc) - datetime.fromisoformat(attempt["start"])).total_seconds())
        else:
            total += attempt.get("wall_s") or 0.0
    return total * processes


def hours(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 3600:.2g}"

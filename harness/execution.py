"""Per-model execution settings (memory layout, precision, compilation), chosen by a short measurement.

The best setting depends on the model: on an H200, bf16 + channels_last trains ConvMixer-256/8 (k5, p2) 2x faster
than fp32, but the same setting is 8x slower for k9 at p1, where contiguous memory wins. So "auto" settings are not
guessed: each candidate trains a few steps on a copy of the model, and the fastest over the run's expected number of
steps wins (a compiled candidate pays its compile time).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from .config import SystemConfig
from .throughput import Measurement, Setting, candidate_settings, measure


def choose_setting(model: nn.Module, system: SystemConfig, device: torch.device, batch_size: int,
                   input_size: tuple[int, int, int], num_classes: int, total_steps: int) -> tuple[Setting, list[dict[str, Any]]]:
    """The setting to train with, and the probe's measurements (empty when nothing was left to choose)."""
    candidates = candidate_settings(device, system.precision, system.layout, system.compile)
    if len(candidates) == 1:
        return candidates[0], []
    on_gpu = device.type == "cuda"
    # a CPU probe stays short: a few small steps tell contiguous from channels_last
    batch = batch_size if on_gpu else min(batch_size, 32)
    warmup, iters = (5, 10) if on_gpu else (1, 2)
    probes = [measure(model, "train", s, batch, input_size, device, warmup, iters, num_classes) for s in candidates]

    def run_cost(m: Measurement) -> float:
        return total_steps * (m.step_ms / 1000.0) * batch_size / batch + (m.compile_s or 0.0)

    usable = [m for m in probes if m.img_s is not None]
    if not usable:
        raise RuntimeError("no execution setting could run a training step: "
                           + "; ".join(f"{m.layout}/{m.precision}/compiled={m.compiled}: {m.error}" for m in probes))
    best = min(usable, key=run_cost)
    return Setting(best.layout, best.precision, best.compiled), [asdict(m) for m in probes]

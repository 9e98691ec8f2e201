"""Per-model execution settings (memory layout, precision, compilation), chosen by a short measurement.

The best setting depends on the model: on an H200, bf16 + channels_last trains ConvMixer-256/8 (k5, p2) 2x faster
than fp32, but the same setting is 8x slower for k9 at p1, where contiguous memory wins. So "auto" settings are not
guessed: each eager candidate trains a few steps on a copy of the model, then (on a GPU) the fastest one is compiled
and measured too, and the fastest steady-state step wins. The compile time is spent by then, and torch's compile
cache makes the run's own compile of the same graph quick, so it does not count against the compiled candidate.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import torch
from torch import nn

from .config import SystemConfig
from .throughput import Setting, best, candidate_settings, search, tries_compile


def choose_setting(model: nn.Module, system: SystemConfig, device: torch.device, batch_size: int,
                   input_size: tuple[int, int, int], num_classes: int) -> tuple[Setting, list[dict[str, Any]]]:
    """The setting to train with, and the probe's measurements (empty when nothing was left to choose)."""
    eager = candidate_settings(device, system.precision, system.layout)
    if len(eager) == 1 and not (system.compile == "auto" and tries_compile(device, "auto")):
        return replace(eager[0], compiled=system.compile is True), []
    on_gpu = device.type == "cuda"
    batch = batch_size if on_gpu else min(batch_size, 32)  # a CPU probe stays short: a few small steps
    warmup, iters, budget = (5, 10, 3.0) if on_gpu else (1, 2, 1.0)
    probes = search(model, "train", device, eager, system.compile, batch, input_size, warmup, iters, num_classes,
                    budget)
    top = best(probes, "train")
    if top is None:
        raise RuntimeError("no execution setting could run a training step: "
                           + "; ".join(f"{m.layout}/{m.precision}/compiled={m.compiled}: {m.error}" for m in probes))
    chosen = Setting(top.layout, top.precision, top.compiled or system.compile is True)
    return chosen, [asdict(m) for m in probes]

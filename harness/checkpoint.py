"""Epoch checkpoints that survive any crash: written to a temporary file, synced, then renamed over the latest,
whose previous version is kept. A latest checkpoint that cannot be loaded (truncated, empty, another run's) falls
back to the one before, then to a fresh start, each time with a warning.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable

import torch

from .records import RunDir, _file_mode

REQUIRED = ("epoch", "model", "optimizer", "scaler", "loader", "rng", "history", "setting", "probe", "run_id")


def save_checkpoint(run: RunDir, state: dict[str, Any]) -> None:
    tmp = run.checkpoint.with_name(f".{run.checkpoint.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            os.fchmod(f.fileno(), _file_mode())
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if run.checkpoint.exists():
            os.replace(run.checkpoint, run.previous_checkpoint)
        os.replace(tmp, run.checkpoint)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the renames themselves, durable across a power loss
        fd = os.open(run.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(run: RunDir, run_id: str, device: torch.device,
                    warn: Callable[[str], None]) -> dict[str, Any] | None:
    """The latest loadable checkpoint of `run_id` (the previous one if the latest is damaged), or None."""
    damaged = False
    for path in (run.checkpoint, run.previous_checkpoint):
        if not path.exists():
            continue
        try:
            ckpt = torch.load(path, map_location=device, weights_only=False)
            missing = [k for k in REQUIRED if k not in ckpt] if isinstance(ckpt, dict) else list(REQUIRED)
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)}")
            if ckpt["run_id"] != run_id:
                raise ValueError(f"it belongs to run {ckpt['run_id']}")
            return ckpt
        except Exception as e:  # any way a file can be damaged: unpickling, zip, EOF, our own checks
            damaged = True
            warn(f"warning: {path} cannot be used ({type(e).__name__}: {str(e).strip()[:200]})")
    if damaged:
        warn("warning: no usable checkpoint: training starts afresh")
    return None

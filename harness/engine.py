"""One training epoch and one evaluation pass.

Metrics are accumulated on the device and read once at the end: no host synchronisation per step. A loss that
becomes NaN or infinite is remembered in a device flag and reported with the epoch's metrics. Data-parallel, each
rank sees its share of every batch; the sums are added across ranks once at the end and divided by the global count.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .attempt import Interrupted, never
from .config import RecipeConfig
from .distributed import all_sum
from .optim import LrSchedule
from .throughput import Setting, autocast


def _batches(loader: Any, desc: str, enabled: bool, stop: Callable[[], bool]) -> Iterable[Any]:
    """The loader's batches (with a progress bar when enabled); raises Interrupted as soon as `stop()` is true."""
    for batch in tqdm(loader, desc=desc, total=len(loader), leave=False, disable=not enabled, mininterval=0.5,
                      dynamic_ncols=True):
        if stop():
            raise Interrupted(f"stopped during {desc}")
        yield batch


def train_one_epoch(model: nn.Module, step_model: nn.Module, loader: Any, optimizer: torch.optim.Optimizer,
                    schedule: LrSchedule, scaler: torch.amp.GradScaler, recipe: RecipeConfig, setting: Setting,
                    device: torch.device, epoch: int, progress: bool = False,
                    stop: Callable[[], bool] = never) -> dict[str, Any]:
    """`step_model` runs the steps (it may be `torch.compile(model)`, or the model wrapped for data parallelism);
    `model` holds the parameters."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    nonfinite = torch.zeros((), device=device, dtype=torch.bool)
    step = epoch * len(loader)
    lr = 0.0
    for x, y, soft in _batches(loader, f"epoch {epoch}", progress, stop):
        lr = schedule.set(optimizer, step)
        with autocast(device, setting.precision):
            logits = step_model(x)
        logits = logits.float()
        if soft is not None:
            loss = F.cross_entropy(logits, soft)
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if recipe.clip_grad is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        loss = loss.detach()
        loss_sum += loss * y.shape[0]
        correct += (logits.detach().argmax(1) == y).sum()
        nonfinite |= ~torch.isfinite(loss)
        step += 1
    all_sum(loss_sum, correct, nonfinite)
    n = loader.num_samples
    loss_total, correct_total, bad = (t.item() for t in (loss_sum, correct, nonfinite))
    return {"train_loss": loss_total / n, "train_top1": 100.0 * correct_total / n, "lr": lr, "nonfinite": bool(bad)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, setting: Setting, device: torch.device, split: str = "test",
             progress: bool = False, stop: Callable[[], bool] = never) -> dict[str, float]:
    """`{split}_top1`, `{split}_top5` (percent) and `{split}_loss` (mean cross-entropy) over the whole split."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    for x, y, _ in _batches(loader, f"eval {split}", progress, stop):
        if not len(y):  # this rank's share of a last, small batch
            continue
        with autocast(device, setting.precision):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices == y[:, None]  # (B, k)
        top1 += hits[:, 0].sum()
        top5 += hits.any(1).sum()
    all_sum(loss_sum, top1, top5)
    n = loader.num_samples
    loss_total, c1, c5 = (t.item() for t in (loss_sum, top1, top5))
    return {f"{split}_loss": loss_total / n, f"{split}_top1": 100.0 * c1 / n, f"{split}_top5": 100.0 * c5 / n}

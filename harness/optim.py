"""The optimizer and learning-rate schedule of a recipe.

The schedule is a pure function of the step, set on the optimizer before every step: nothing to save or restore
on resume beyond the step count.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from timm.optim import create_optimizer_v2
from torch import nn

from .config import RecipeConfig


def build_optimizer(model: nn.Module, recipe: RecipeConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) from timm's optimizer factory, whose parameter groups keep weight decay off 1-D
    parameters (biases, norms) and off what the model's `no_weight_decay()` names (position embeddings, global
    filters, layer scales). The lr is set by `LrSchedule` before every step."""
    extra = {"eps": recipe.opt_eps} if recipe.optimizer == "adamw" else {"momentum": recipe.momentum}
    return create_optimizer_v2(model, opt=recipe.optimizer, lr=recipe.lr, weight_decay=recipe.weight_decay, **extra)


class LrSchedule:
    """lr at a (fractional) epoch t in [0, epochs].

    onecycle: locuslab/convmixer-cifar10's piecewise-linear one-cycle, 0 -> lr at 2/5 of training -> lr/20 at 4/5
    -> 0 at the end (the same shape as timm's OneCycle with warmup 0); cosine: linear warm-up, then cosine to 0.
    """

    def __init__(self, recipe: RecipeConfig, steps_per_epoch: int):
        self.recipe, self.steps_per_epoch = recipe, steps_per_epoch

    def at_epoch(self, t: float) -> float:
        r, epochs = self.recipe, self.recipe.epochs
        if r.schedule == "onecycle":
            knots = [0, epochs * 2 // 5, epochs * 4 // 5, epochs]
            return float(np.interp(t, knots, [0.0, r.lr, r.lr / 20.0, 0.0]))
        if r.schedule == "cosine":
            if t < r.warmup_epochs:
                return r.lr * t / r.warmup_epochs
            span = max(epochs - r.warmup_epochs, 1e-8)
            return 0.5 * r.lr * (1 + math.cos(math.pi * min(1.0, (t - r.warmup_epochs) / span)))
        return r.lr

    def set(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set the lr for global `step` (counted from 0); the first step of an epoch sees a small positive lr."""
        lr = self.at_epoch((step + 1) / self.steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

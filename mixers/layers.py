"""Small layers shared by the stem, the blocks and the model: activations, norms, drop path, layer scale."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation")
ACTIVATIONS.register("gelu")(nn.GELU)
ACTIVATIONS.register("relu")(nn.ReLU)
ACTIVATIONS.register("silu")(nn.SiLU)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GroupNorm1(nn.GroupNorm):
    """GroupNorm with one group: normalises over channels and tokens together (PoolFormer's MLN)."""

    def __init__(self, dim: int):
        super().__init__(1, dim)


NORMS: Registry[type[nn.Module]] = Registry("norm")
NORMS.register("layernorm")(LayerNorm2d)
NORMS.register("groupnorm")(GroupNorm1)
NORMS.register("batchnorm")(nn.BatchNorm2d)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class LayerScale2d(nn.Module):
    """Learned per-channel scale of a residual branch (CaiT / MetaFormer)."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def drop_path(p: float) -> nn.Module:
    return DropPath(p) if p > 0 else nn.Identity()


def layer_scale(dim: int, init: float | None) -> nn.Module:
    return LayerScale2d(dim, init) if init is not None else nn.Identity()

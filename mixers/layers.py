"""Small layers shared by the stem, the blocks and the model: activations, norms, drop path, layer scale, resizing.

No module of the model uses `from __future__ import annotations`: FX writes string annotations into the code it
generates, which TorchScript then cannot read (FX followed by TorchScript fails).
"""
import torch
import torch.nn.functional as F
from timm.layers import DropPath
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


class LayerScale2d(nn.Module):
    """Learned per-channel scale of a residual branch (CaiT / MetaFormer)."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma

    def no_weight_decay(self) -> set[str]:
        return {"gamma"}  # decay would pull the branch scale towards zero, i.e. switch the branch off


def drop_path(p: float) -> nn.Module:
    """Stochastic depth (timm's DropPath: drops the whole residual branch per sample), or nothing."""
    return DropPath(p) if p > 0 else nn.Identity()


def layer_scale(dim: int, init: float | None) -> nn.Module:
    return LayerScale2d(dim, init) if init is not None else nn.Identity()


def resize_2d(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """The last two dims of a 4-D tensor resized bilinearly to `size`; `x` itself when it already has that size.

    The size test is control flow on shapes, which FX cannot trace: a module calling this declares it a leaf of
    FX graphs with `torch.fx.wrap("resize_2d")` (which patches that module's name for it).
    """
    if x.shape[-2] == size[0] and x.shape[-1] == size[1]:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)

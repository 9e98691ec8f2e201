"""The patchify stem every model shares."""
import torch
from torch import nn


class PatchStem(nn.Module):
    """Conv(k=p, stride=p) -> activation -> BatchNorm, as in ConvMixer (activation before the norm)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, act_layer: type[nn.Module]):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.act = act_layer()
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.proj(x)))  # (B, in_chans, H, W) -> (B, dim, H/p, W/p)

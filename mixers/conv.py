"""Depthwise convolution: ConvMixer's token mixer."""
import torch
from torch import nn

from .base import register_mixer


@register_mixer("dwconv")
class DWConvMixer(nn.Module):
    """Depthwise k x k convolution with "same" padding (ConvMixer)."""

    def __init__(self, dim: int, kernel_size: int = 9, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same", bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

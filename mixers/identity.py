"""No token mixing at all: the control of every grid (MetaFormer's IdentityFormer)."""
import torch
from torch import nn

from .base import register_mixer


@register_mixer("identity")
class IdentityMixer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

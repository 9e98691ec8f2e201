"""Average pooling minus the input (PoolFormer's token mixer)."""
import torch
from torch import nn

from .base import register_mixer


@register_mixer("pool")
class PoolMixer(nn.Module):
    """k x k average pooling, stride 1, minus the input: the block's residual adds the input back.

    Padding is not counted in the average (PoolFormer). k must be odd so the output keeps its size.
    """

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"mixer 'pool' needs an odd kernel_size to keep the token grid, got {kernel_size}")
        self.pool = nn.AvgPool2d(kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x

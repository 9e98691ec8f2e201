"""A frozen random token-mixing matrix (MetaFormer's RandFormer)."""
import torch
from torch import nn

from .base import register_mixer


@register_mixer("random")
class RandomMixer(nn.Module):
    """Mixes the N tokens with a frozen N x N matrix whose rows are softmax(uniform noise).

    The matrix is a buffer, not a parameter: it is saved with the model but never trained and not counted in
    the parameters. It is sized for one token grid, so any other grid raises `TokenGridError`.
    """

    layout = "NLC"
    fixed_grid = True

    def __init__(self, dim: int, grid_size: tuple[int, int] = (14, 14)):
        super().__init__()
        self.grid_size = tuple(grid_size)  # ToTokens refuses any other grid
        n = grid_size[0] * grid_size[1]
        self.register_buffer("mixing", torch.softmax(torch.rand(n, n), dim=-1))

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return torch.einsum("mn,bnc->bmc", self.mixing.to(x.dtype), x)

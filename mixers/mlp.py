"""Token-mixing MLP across the token grid (MLP-Mixer's token mixer)."""
import torch
from torch import nn

from .base import register_mixer


@register_mixer("mlp")
class TokenMLPMixer(nn.Module):
    """An MLP over the N tokens, shared by all channels: N -> hidden_ratio * N -> N.

    Its weights are sized for one token grid, so any other grid raises `TokenGridError`.
    """

    layout = "NLC"
    fixed_grid = True

    def __init__(self, dim: int, grid_size: tuple[int, int] = (14, 14), hidden_ratio: float = 0.5):
        super().__init__()
        self.grid_size = tuple(grid_size)  # ToTokens refuses any other grid
        n = grid_size[0] * grid_size[1]
        hidden = max(1, round(hidden_ratio * n))
        self.fc1 = nn.Linear(n, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, n)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, N, C) -> (B, C, N)
        x = self.fc2(self.act(self.fc1(x)))
        return x.transpose(1, 2)  # (B, C, N) -> (B, N, C)

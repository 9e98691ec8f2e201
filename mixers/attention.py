"""Multi-head self-attention over all tokens (ViT's token mixer)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import register_mixer


@register_mixer("attention")
class AttentionMixer(nn.Module):
    """Global multi-head self-attention with `scaled_dot_product_attention`.

    The shared stem adds no position information, so by default the mixer adds a learned absolute position
    embedding to its queries and keys' input (not to the residual stream); it is resized bilinearly for another
    token grid, as timm resamples ViT position embeddings. `pos_embed=False` gives plain, permutation-
    equivariant attention.
    """

    layout = "NLC"

    def __init__(self, dim: int, grid_size: tuple[int, int] = (14, 14), num_heads: int = 8, qkv_bias: bool = True,
                 pos_embed: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"mixer 'attention': dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, dim, *grid_size)) if pos_embed else None
        if self.pos is not None:
            nn.init.trunc_normal_(self.pos, std=0.02)

    def position(self, grid: tuple[int, int]) -> torch.Tensor | float:
        if self.pos is None:
            return 0.0
        pos = self.pos if tuple(self.pos.shape[2:]) == grid else F.interpolate(
            self.pos, size=grid, mode="bilinear", align_corners=False)
        return pos.flatten(2).transpose(1, 2)  # (1, C, H, W) -> (1, N, C)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x + self.position(grid))
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, c)
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, h, N, c) -> (B, N, C)
        return self.proj(x)

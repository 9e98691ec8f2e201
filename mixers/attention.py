"""Multi-head self-attention over all tokens (ViT's token mixer)."""
import torch
import torch.nn.functional as F
from torch import nn

from .base import register_mixer
from .layers import resize_2d

torch.fx.wrap("resize_2d")  # a leaf of FX graphs (control flow on shapes inside)


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
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"mixer 'attention': num_heads must be >= 1 and divide dim {dim}, got {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, dim, *grid_size)) if pos_embed else None
        if self.pos is not None:
            nn.init.trunc_normal_(self.pos, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"pos"}  # as timm's ViT: decay would only shrink the position signal

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        qkv_in = x
        if self.pos is not None:
            qkv_in = x + resize_2d(self.pos, grid, False).flatten(2).transpose(1, 2)  # (1, C, H, W) -> (1, N, C)
        qkv = self.qkv(qkv_in)
        qkv = qkv.reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)  # (3, B, h, N, c)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, h, N, c) -> (B, N, C)
        return self.proj(x)

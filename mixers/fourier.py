"""A learned global filter in the frequency domain (GFNet's token mixer)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import register_mixer


@register_mixer("fourier")
class FourierMixer(nn.Module):
    """2-D real FFT over the token grid, times a learned complex filter per channel, inverse FFT.

    The filter is sized for the build grid; for another grid it is resized bilinearly in the frequency domain,
    as GFNet does for other resolutions. The FFT runs in float32 (cuFFT has no bf16 path for most sizes).
    """

    def __init__(self, dim: int, grid_size: tuple[int, int] = (14, 14)):
        super().__init__()
        h, w = grid_size
        self.filter = nn.Parameter(torch.randn(dim, h, w // 2 + 1, 2) * 0.02)  # (C, H, W//2+1, re/im)

    def weight(self, h: int, w: int) -> torch.Tensor:
        weight = self.filter
        if weight.shape[1:3] != (h, w // 2 + 1):
            weight = weight.permute(0, 3, 1, 2)  # (C, H, W', 2) -> (C, 2, H, W')
            weight = F.interpolate(weight, size=(h, w // 2 + 1), mode="bilinear", align_corners=True)
            weight = weight.permute(0, 2, 3, 1)  # back to (C, H, W', 2)
        return torch.view_as_complex(weight.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        H, W = x.shape[2:]
        x = torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, H, W//2+1) complex
        x = x * self.weight(H, W)
        return torch.fft.irfft2(x, s=(H, W), norm="ortho").to(dtype)

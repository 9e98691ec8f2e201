"""A learned global filter in the frequency domain (GFNet's token mixer)."""
import torch
from torch import nn

from .base import register_mixer
from .layers import resize_2d

torch.fx.wrap("resize_2d")  # a leaf of FX graphs (control flow on shapes inside)


@register_mixer("fourier")
class FourierMixer(nn.Module):
    """2-D real FFT over the token grid, times a learned complex filter per channel, inverse FFT.

    The filter is sized for the build grid; for another grid it is resized bilinearly in the frequency domain,
    as GFNet does for other resolutions. The FFT and the filter run in float32 (cuFFT has no bf16 path for most
    sizes, and there is no bf16 complex type), whatever the model's dtype.
    """

    def __init__(self, dim: int, grid_size: tuple[int, int] = (14, 14)):
        super().__init__()
        h, w = grid_size
        self.filter = nn.Parameter(torch.randn(dim, h, w // 2 + 1, 2) * 0.02)  # (C, H, W//2+1, re/im)

    def no_weight_decay(self) -> set[str]:
        return {"filter"}  # a global filter, like a position embedding: decay only damps the frequency response

    def weight(self, h: int, w: int) -> torch.Tensor:
        weight = self.filter.float().permute(0, 3, 1, 2)  # (C, H, W', 2) -> (C, 2, H, W')
        weight = resize_2d(weight, (h, w // 2 + 1), True).permute(0, 2, 3, 1)  # back to (C, H, W', 2)
        return torch.view_as_complex(weight.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        H, W = x.shape[2], x.shape[3]
        x = torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, H, W//2+1) complex
        x = x * self.weight(H, W)
        return torch.fft.irfft2(x, s=(H, W), norm="ortho").to(dtype)

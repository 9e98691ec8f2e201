"""timm's RandAugment op set ("rand-m{m}-n{n}-mstd{mstd}-inc1") for batches of images.

Images are float tensors (G, C, H, W) holding integer values in [0, 255], one op argument per image. Every colour op
rounds as torchvision's uint8 tensor kernels do (which follow PIL), so a chain of ops stays on the integer grid like a
chain of PIL calls. Geometric ops are not applied here: `geometric_matrix` returns their inverse affine maps so that
the caller can fuse them with the crop into one `grid_sample` (see harness/augment.py). `OPS` is index-aligned with
timm's `_RAND_INCREASING_TRANSFORMS`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
    "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)
GEOMETRIC_NAMES = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
GEOMETRIC = tuple(OPS.index(name) for name in GEOMETRIC_NAMES)
APPLY_PROB = 0.5  # timm's default per-op probability for "rand"
MAX_LEVEL = 10.0  # timm's _LEVEL_DENOM, also the default magnitude clip (mmax)
TRANSLATE_PCT = 0.45  # timm's default translate_pct for the *Rel ops


def level_args(level: Tensor, sign: Tensor) -> Tensor:
    """Every op's argument, as timm's inc1 `LEVEL_TO_ARG` computes it, for magnitudes `level` in [0, 10] and random
    signs `sign` in {-1, 1} (timm's `_randomly_negate`). Float64 in, float64 (..., len(OPS)) out; column order = OPS.
    """
    f = level / MAX_LEVEL
    zero = torch.zeros_like(f)
    enhance = (1.0 + sign * (f * 0.9)).clamp(min=0.1)  # factor 1 is the identity
    return torch.stack([
        zero, zero, zero,                          # AutoContrast, Equalize, Invert take no argument
        sign * (f * 30.0),                         # Rotate: degrees, counter-clockwise
        4.0 - torch.floor(f * 4.0),                # PosterizeIncreasing: bits kept, 4 .. 0
        256.0 - torch.floor(f * 256.0),            # SolarizeIncreasing: threshold, 256 (identity) .. 0
        torch.floor(f * 110.0),                    # SolarizeAdd: value added below 128, 0 .. 110
        enhance, enhance, enhance, enhance,        # Color, Contrast, Brightness, Sharpness blend factors
        sign * (f * 0.3), sign * (f * 0.3),        # ShearX, ShearY: shear factor
        sign * (f * TRANSLATE_PCT), sign * (f * TRANSLATE_PCT),  # TranslateX/YRel: fraction of the image size
    ], dim=-1)


def geometric_matrix(op: Tensor, arg: Tensor, size: int) -> Tensor:
    """Inverse affine maps (output -> input pixel) of timm's PIL geometric ops on a size x size image.

    Coordinates are centred pixels: x = column + 0.5 - size / 2, y down. PIL shears and translates about the
    top-left corner and rotates about the centre, hence the size / 2 offsets of the shears. op, arg: (G,) -> (G, 3, 3).
    """
    op, arg = op.to(torch.float64), arg.to(torch.float64)
    rot, shx, shy, tx, ty = (op == i for i in GEOMETRIC)
    theta = torch.deg2rad(arg)
    cos, sin = torch.where(rot, theta.cos(), 1.0), torch.where(rot, theta.sin(), 0.0)
    m = torch.zeros(op.shape[0], 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = cos, cos, 1.0
    m[:, 0, 1] = torch.where(shx, arg, -sin)
    m[:, 1, 0] = torch.where(shy, arg, sin)
    m[:, 0, 2] = torch.where(shx, arg * size / 2, 0.0) + torch.where(tx, arg * size, 0.0)
    m[:, 1, 2] = torch.where(shy, arg * size / 2, 0.0) + torch.where(ty, arg * size, 0.0)
    return m


def grey(img: Tensor) -> Tensor:
    """torchvision's uint8 grey level, floor(0.2989 R + 0.587 G + 0.114 B); (G, C, H, W) -> (G, 1, H, W)."""
    if img.shape[1] == 1:
        return img
    r, g, b = img.unbind(1)
    return (r * 0.2989 + g * 0.587 + b * 0.114).floor_().unsqueeze(1)


def blend(img: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """PIL ImageEnhance / torchvision `_blend` on uint8: factor * img + (1 - factor) * other, clamped, truncated."""
    return (img * factor + other * (1.0 - factor)).clamp_(0.0, 255.0).floor_()


def auto_contrast(img: Tensor, _: Tensor) -> Tensor:
    lo, hi = img.amin((2, 3), keepdim=True), img.amax((2, 3), keepdim=True)
    flat = hi == lo  # a constant channel is left as it is
    inv_scale = torch.where(flat, 1.0, (hi - lo) * (1.0 / 255.0))
    return ((img - torch.where(flat, 0.0, lo)) / inv_scale).clamp_(0.0, 255.0).floor_()


def equalize(img: Tensor, _: Tensor) -> Tensor:
    """PIL's equalize per image and channel, batched through one histogram per (image, channel) row."""
    g, c, h, w = img.shape
    flat = img.reshape(g * c, h * w).long()  # (G*C, HW)
    hist = torch.zeros(g * c, 256, dtype=torch.long, device=img.device).scatter_add_(1, flat, torch.ones_like(flat))
    cum = hist.cumsum(1)
    # PIL leaves the most intense level present out of the step, and leaves channels whose step is 0 as they are.
    top_count = hist.gather(1, cum.argmax(1, keepdim=True))
    step = (h * w - top_count) // 255  # (G*C, 1)
    lut = ((cum[:, :-1] + step // 2) // step.clamp(min=1)).clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], 1)  # lut[k] uses cum[k - 1]
    lut = torch.where(step > 0, lut, torch.arange(256, device=img.device)).to(img.dtype)
    return lut.gather(1, flat).view(g, c, h, w)


def invert(img: Tensor, _: Tensor) -> Tensor:
    return 255.0 - img


def posterize(img: Tensor, bits: Tensor) -> Tensor:
    step = torch.exp2(8.0 - bits)  # keeping b bits zeroes the low 8 - b
    return torch.floor(img / step) * step


def solarize(img: Tensor, threshold: Tensor) -> Tensor:
    # where(img >= threshold, 255 - img, img) as arithmetic on the integer grid: torch.where is ~10x slower on CPU.
    above = (img - threshold + 1.0).clamp_(0.0, 1.0)
    return img + above * (255.0 - 2.0 * img)


def solarize_add(img: Tensor, add: Tensor) -> Tensor:
    below = (128.0 - img).clamp_(0.0, 1.0)  # img < 128, as arithmetic (see solarize)
    return (img + below * add).clamp_(max=255.0)


def color(img: Tensor, factor: Tensor) -> Tensor:
    return img if img.shape[1] == 1 else blend(img, grey(img), factor)


def contrast(img: Tensor, factor: Tensor) -> Tensor:
    return blend(img, grey(img).mean((1, 2, 3), keepdim=True), factor)


def brightness(img: Tensor, factor: Tensor) -> Tensor:
    return (img * factor).clamp_(0.0, 255.0).floor_()


def sharpness(img: Tensor, factor: Tensor) -> Tensor:
    """Blend with PIL's SMOOTH filter (3x3 ones, centre 5, / 13); the one-pixel border is left as it is."""
    rows = img[..., :-2, :] + img[..., 1:-1, :] + img[..., 2:, :]  # 3x3 box sum, separably: (G, C, H-2, W)
    centre = img[..., 1:-1, 1:-1]
    # The sum of integers / 13 is never within float error of a .5 tie, so this rounds as torchvision's conv2d does.
    smooth = ((rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:] + 4.0 * centre) / 13.0).round_()
    out = img.clone()
    inner = out[..., 1:-1, 1:-1]
    inner.add_((smooth - inner) * (1.0 - factor))
    return out.clamp_(0.0, 255.0).floor_()


# Colour ops by index into OPS; geometric ops are None (they go through geometric_matrix).
COLOUR_FNS: tuple[Callable[[Tensor, Tensor], Tensor] | None, ...] = (
    auto_contrast, equalize, invert, None, posterize, solarize, solarize_add,
    color, contrast, brightness, sharpness, None, None, None, None,
)

"""RandAugment for batches of images: timm's op set and torchvision's, each with its own magnitude mapping.

Images are float tensors (G, C, H, W) holding integer values in [0, 255], one op argument per image. Every colour op
computes and rounds as the uint8 tensor kernels of torchvision.transforms.functional (the ones its RandAugment calls),
bit for bit, so a chain of ops stays on the integer grid like a chain of PIL calls. Those kernels differ from PIL's
by one level on some pixels: grey is floor(0.2989 R + 0.587 G + 0.114 B) where PIL uses its fixed-point L conversion,
Contrast blends with the float mean of that grey image where PIL rounds the mean, AutoContrast scales in float32 where
PIL builds its table in float64, and Sharpness blends the one-pixel border with itself where PIL leaves it.

Geometric ops are not applied here: `geometric_matrix` returns their inverse affine maps and the caller resamples
(harness/augment.py). `OP_SETS` holds the two op sets `recipe.randaugment_ops` chooses from:

- "timm": timm's rand-m{m}-n{n}-mstd{mstd}-p{p}-inc1 (the convmixer ImageNet command). 15 ops, index-aligned with
  timm's `_RAND_INCREASING_TRANSFORMS` (Invert and SolarizeAdd, no Identity); the magnitude is a level on a 0..10
  scale, with optional noise, clipped to [0, 10]; bilinear resampling, out-of-image pixels in the mean colour.
- "torchvision": torchvision's `transforms.RandAugment(num_ops=n, magnitude=m)` (the convmixer-cifar10 script).
  14 ops including Identity, in `RandAugment._augmentation_space`'s order; the magnitude is a bin of its 31
  (0..30), each op's argument read from the same float32 tables and signed at random where torchvision signs it;
  nearest-neighbour resampling, out-of-image pixels 0 (its default fill=None).

Arguments are in one set of units for both: Rotate in degrees counter-clockwise, shears as the factor about the
top-left corner, translations in pixels the content moves right or down, Posterize in bits kept, Solarize as the
integer threshold at or above which a level is inverted, SolarizeAdd as the value added below 128, and the four
enhancements (Brightness, Color, Contrast, Sharpness) as the blend factor minus 1 (0 = unchanged): torchvision's own
magnitude, from which its blend computes 1 + m and 1 - (1 + m) = -m exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .config import RANDAUGMENT_MAX_MAGNITUDE

ImageOp = Callable[[Tensor, Tensor], Tensor]  # (G, C, H, W) images, (G, 1, 1, 1) arguments -> (G, C, H, W)
GEOMETRIC_KINDS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
TIMM_TRANSLATE_PCT = 0.45  # timm's default translate_pct for the *Rel ops
TORCHVISION_BINS = 31  # torchvision's num_magnitude_bins


@dataclass(frozen=True)
class Op:
    name: str
    colour: ImageOp | None = None  # the pixel op; None for geometric ops and Identity
    geometric: str | None = None  # one of GEOMETRIC_KINDS


@dataclass(frozen=True)
class OpSet:
    """One library's RandAugment: its ops, how a magnitude becomes each op's argument, and how it resamples."""

    ops: tuple[Op, ...]
    max_magnitude: float  # magnitudes are clipped to [0, max_magnitude]
    args: Callable[[Tensor, Tensor, int], Tensor]  # (level, sign, image side) float64 -> (..., len(ops)) arguments
    nearest: bool  # True: each geometric op resampled on its own, nearest neighbour, fill 0; False: fused bilinear

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.ops)

    @property
    def colour_fns(self) -> tuple[ImageOp | None, ...]:
        return tuple(op.colour for op in self.ops)

    @property
    def kinds(self) -> Tensor:
        """(len(ops),) int64: each op's index into GEOMETRIC_KINDS, -1 for the others."""
        return torch.tensor([GEOMETRIC_KINDS.index(op.geometric) if op.geometric else -1 for op in self.ops])

    @property
    def has_colour(self) -> Tensor:
        return torch.tensor([op.colour is not None for op in self.ops])


def _timm_args(level: Tensor, sign: Tensor, size: int) -> Tensor:
    """timm's inc1 `LEVEL_TO_ARG` for levels in [0, 10] and random signs in {-1, 1} (timm's `_randomly_negate`)."""
    f = level / RANDAUGMENT_MAX_MAGNITUDE["timm"]
    zero = torch.zeros_like(f)
    enhance = (sign * (f * 0.9)).clamp(min=-0.9)  # timm's factor 1 +- f * 0.9, at least 0.1
    # timm moves the content by -pct * size for a drawn sign; the sign is a fair coin, so its direction is the same draw
    shift = sign * (f * TIMM_TRANSLATE_PCT * size)
    return torch.stack([
        zero, zero, zero,                          # AutoContrast, Equalize, Invert take no argument
        sign * (f * 30.0),                         # Rotate
        4.0 - torch.floor(f * 4.0),                # PosterizeIncreasing: bits kept, 4 .. 0
        256.0 - torch.floor(f * 256.0),            # SolarizeIncreasing: threshold, 256 (identity) .. 0
        torch.floor(f * 110.0),                    # SolarizeAdd: value added below 128, 0 .. 110
        enhance, enhance, enhance, enhance,        # Color, Contrast, Brightness, Sharpness
        sign * (f * 0.3), sign * (f * 0.3),        # ShearX, ShearY
        shift, shift,                              # TranslateXRel, TranslateYRel
    ], dim=-1)


def _torchvision_args(level: Tensor, sign: Tensor, size: int) -> Tensor:
    """torchvision's `RandAugment._augmentation_space(31, (size, size))` at bin `level`, negated where `sign` is -1
    for the ops torchvision signs. The tables are float32 as torchvision builds them, so the arguments are its own."""
    i = level.long()

    def table(top: float) -> Tensor:
        return torch.linspace(0.0, top, TORCHVISION_BINS)[i].double()

    zero = torch.zeros_like(level)
    enhance = sign * table(0.9)  # torchvision passes 1 + this as the factor
    shift = torch.trunc(sign * table(150.0 / 331.0 * size))  # torchvision's int() of the signed magnitude
    bits = 8 - (torch.arange(TORCHVISION_BINS) / ((TORCHVISION_BINS - 1) / 4)).round()
    threshold = torch.linspace(255.0, 0.0, TORCHVISION_BINS)[i].double()
    return torch.stack([
        zero,                                      # Identity
        sign * table(0.3), sign * table(0.3),      # ShearX, ShearY
        shift, shift,                              # TranslateX, TranslateY
        sign * table(30.0),                        # Rotate
        enhance, enhance, enhance, enhance,        # Brightness, Color, Contrast, Sharpness
        bits[i].double(),                          # Posterize: bits kept, 8 .. 4
        torch.ceil(threshold),                     # Solarize: level >= t on integers is level >= ceil(t)
        zero, zero,                                # AutoContrast, Equalize
    ], dim=-1)


def geometric_matrix(kind: Tensor, arg: Tensor, size: int) -> Tensor:
    """Inverse affine maps (output -> input pixel) of the geometric ops on a size x size image.

    kind: (G,) index into GEOMETRIC_KINDS, arg: (G,) in the module's units -> (G, 3, 3) float64. Coordinates are
    centred pixels: x = column + 0.5 - size / 2, y down. Shears are about the top-left corner (PIL's and torchvision's
    RandAugment), rotations about the centre, hence the size / 2 offsets of the shears.
    """
    kind, arg = kind.to(torch.float64), arg.to(torch.float64)
    rot, shx, shy, tx, ty = (kind == i for i in range(len(GEOMETRIC_KINDS)))
    theta = torch.deg2rad(arg)
    cos, sin = torch.where(rot, theta.cos(), 1.0), torch.where(rot, theta.sin(), 0.0)
    m = torch.zeros(kind.shape[0], 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = cos, cos, 1.0
    m[:, 0, 1] = torch.where(shx, arg, -sin)
    m[:, 1, 0] = torch.where(shy, arg, sin)
    m[:, 0, 2] = torch.where(shx, arg * size / 2, 0.0) - torch.where(tx, arg, 0.0)
    m[:, 1, 2] = torch.where(shy, arg * size / 2, 0.0) - torch.where(ty, arg, 0.0)
    return m


def grey(img: Tensor) -> Tensor:
    """torchvision's uint8 grey level, floor(0.2989 R + 0.587 G + 0.114 B); (G, C, H, W) -> (G, 1, H, W)."""
    if img.shape[1] == 1:
        return img
    r, g, b = img.unbind(1)
    return (r * 0.2989 + g * 0.587 + b * 0.114).floor_().unsqueeze(1)


def blend(img: Tensor, other: Tensor, enhance: Tensor) -> Tensor:
    """torchvision's `_blend` on uint8 with factor 1 + enhance: (1 + m) img - m other, clamped, truncated. Written
    with m, not the factor, so that 1 - factor is exact, as torchvision computes it in float64 from its magnitude."""
    return (img * (1.0 + enhance) + other * -enhance).clamp_(0.0, 255.0).floor_()


def auto_contrast(img: Tensor, _: Tensor) -> Tensor:
    lo, hi = img.amin((2, 3), keepdim=True), img.amax((2, 3), keepdim=True)
    flat = hi == lo  # a constant channel is left as it is
    scale = torch.where(flat, 1.0, 255.0 / (hi - lo))
    return ((img - torch.where(flat, 0.0, lo)) * scale).clamp_(0.0, 255.0).floor_()


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


def color(img: Tensor, enhance: Tensor) -> Tensor:
    return img if img.shape[1] == 1 else blend(img, grey(img), enhance)


def contrast(img: Tensor, enhance: Tensor) -> Tensor:
    return blend(img, grey(img).mean((1, 2, 3), keepdim=True), enhance)


def brightness(img: Tensor, enhance: Tensor) -> Tensor:
    return (img * (1.0 + enhance)).clamp_(0.0, 255.0).floor_()  # a blend with black


def sharpness(img: Tensor, enhance: Tensor) -> Tensor:
    """Blend with PIL's SMOOTH filter (3x3 ones, centre 5, / 13), rounded; on the one-pixel border the image itself."""
    rows = img[..., :-2, :] + img[..., 1:-1, :] + img[..., 2:, :]  # 3x3 box sum, separably: (G, C, H-2, W)
    centre = img[..., 1:-1, 1:-1]
    # The sum of integers / 13 is never within float error of a .5 tie, so this rounds as torchvision's conv2d does.
    smooth = img.clone()
    smooth[..., 1:-1, 1:-1] = ((rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:] + 4.0 * centre) / 13.0).round_()
    return blend(img, smooth, enhance)

OP_SETS: dict[str, OpSet] = {
    "timm": OpSet(
        ops=(Op("AutoContrast", auto_contrast), Op("Equalize", equalize), Op("Invert", invert),
             Op("Rotate", geometric="rotate"), Op("PosterizeIncreasing", posterize),
             Op("SolarizeIncreasing", solarize), Op("SolarizeAdd", solarize_add), Op("ColorIncreasing", color),
             Op("ContrastIncreasing", contrast), Op("BrightnessIncreasing", brightness),
             Op("SharpnessIncreasing", sharpness), Op("ShearX", geometric="shear_x"),
             Op("ShearY", geometric="shear_y"), Op("TranslateXRel", geometric="translate_x"),
             Op("TranslateYRel", geometric="translate_y")),
        max_magnitude=RANDAUGMENT_MAX_MAGNITUDE["timm"], args=_timm_args, nearest=False),
    "torchvision": OpSet(
        ops=(Op("Identity"), Op("ShearX", geometric="shear_x"), Op("ShearY", geometric="shear_y"),
             Op("TranslateX", geometric="translate_x"), Op("TranslateY", geometric="translate_y"),
             Op("Rotate", geometric="rotate"), Op("Brightness", brightness), Op("Color", color),
             Op("Contrast", contrast), Op("Sharpness", sharpness), Op("Posterize", posterize),
             Op("Solarize", solarize), Op("AutoContrast", auto_contrast), Op("Equalize", equalize)),
        max_magnitude=RANDAUGMENT_MAX_MAGNITUDE["torchvision"], args=_torchvision_args, nearest=True),
}

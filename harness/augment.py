"""Batched image augmentation for a device-resident data path.

The dataset lives on the device as uint8 (N, C, H, W) and each batch is augmented there with whole-batch tensor ops:
no Python loop over images, no worker processes, no host sync per image. The pipeline follows timm's and the
convmixer-cifar10 training transforms, with timm's or torchvision's RandAugment (harness/randaugment.py):

    crop (random resized | reflect-pad translate | none) -> horizontal flip -> RandAugment -> colour jitter
    -> normalise -> random erasing;  then BatchMix: mixup / cutmix with soft targets.

`BatchAugment.sample` draws every random number of a batch from a CPU `torch.Generator`, so one seed gives the same
batch on the CPU and on CUDA. The per-image parameters stay small CPU tensors: `apply` groups images by RandAugment op
with host-side index arithmetic instead of device syncs, and moves a few small tensors per batch to the device. Only
the per-pixel erasing noise is drawn directly on the device, from a seed taken from the generator. `apply` is a pure
function of (images, params), which is what the tests compare against a per-image torchvision reference.

With torchvision's op set, RandAugment is torchvision's `transforms.RandAugment` on uint8 tensors, bit for bit (on
the CPU; tested op by op at every magnitude bin): each geometric op is resampled on its own with nearest neighbours,
through the same grid arithmetic, and fill 0 (its defaults); the colour ops are its tensor kernels. The crop before
it is bilinear as below. The public convmixer-cifar10 script runs the same transform on PIL images, whose colour
kernels round differently on some pixels (see harness/randaugment.py).

Differences from timm's PIL implementation (rand-m{m}-n{n}-mstd{mstd}-p{p}-inc1, RandomResizedCropAndInterpolation,
RandomErasing(mode="pixel"), Mixup(mode="batch")):
- Interpolation is bilinear everywhere (F.grid_sample): timm picks bilinear or bicubic at random per RandAugment op and
  uses the configured interpolation for the crop. A crop larger than out_size is not antialiased (PIL's resize is).
- With timm's op set, consecutive geometric ops (the crop, then rotate / shear / translate in RandAugment slots with
  no colour op between them) are resampled once from the composed affine map instead of once per op: one
  interpolation pass instead of several, so slightly sharper than PIL's chain. Each op still fills where its own
  input is out of bounds.
- Fill colour is round(255 * mean) per channel (what timm's create_transform passes as img_mean), blended over the
  one-pixel boundary band as torchvision's tensor affine does (mask * (zero-padded sample - fill) + fill) instead of
  PIL's hard edge.
- Colour ops are torchvision.transforms.functional's uint8 tensor kernels, bit for bit; harness/randaugment.py lists
  where those differ from PIL's by a level. Equalize, Posterize, Solarize, SolarizeAdd and Invert give PIL's values.
- Magnitudes with noise are clipped to [0, 10] per draw, as timm does (its default mmax).
- Random draws come from the given torch generator, not Python's `random` / numpy's global state: the same
  distributions, different streams. Random erasing noise comes from a device generator, so for one seed it differs
  between CPU and CUDA (every other parameter is identical). Erasing uses one box per image (timm's max_count=1).
- Colour jitter (torchvision ColorJitter(j, j, j), random order per image) runs after RandAugment when both are on,
  as in convmixer-cifar10; timm's create_transform drops jitter when RandAugment is on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness import randaugment as ra
from harness.config import check_randaugment

_TRIES = 10  # torchvision's RandomResizedCrop and timm's RandomErasing try 10 boxes, then fall back
_ERASE_AREA = (0.02, 1 / 3)  # timm RandomErasing defaults: box area as a fraction of the image
_ERASE_ASPECT = (0.3, 1 / 0.3)  # ... and box aspect ratio, drawn log-uniform
_JITTER_FNS = (ra.brightness, ra.contrast, ra.color)  # AugmentParams.jitter's columns


@dataclass(frozen=True)
class AugmentSpec:
    """Train-time augmentation of one run; the defaults are timm's ImageNet transforms without RandAugment."""

    crop: Literal["rrc", "translate", "none"] = "rrc"  # translate = reflect-pad, then random crop (airbench)
    scale: tuple[float, float] = (0.08, 1.0)  # rrc: box area as a fraction of the source
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # rrc: box aspect ratio w / h, drawn log-uniform like torchvision
    translate: int = 4  # crop="translate": reflect padding, i.e. the largest shift in pixels
    hflip: float = 0.5  # probability
    randaugment_n: int = 0  # RandAugment ops per image (0 = off)
    randaugment_m: float = 9.0  # magnitude on the op set's scale: timm's level 0..10, torchvision's bin 0..30
    randaugment_mstd: float = 0.5  # magnitude noise std; 0 = fixed, inf (or > 100, as timm parses it) = U(0, m)
    randaugment_prob: float = 0.5  # probability of applying each of the n ops
    randaugment_ops: str = "timm"  # a key of randaugment.OP_SETS
    color_jitter: float = 0.0  # brightness/contrast/saturation strength like torchvision ColorJitter(j, j, j)
    reprob: float = 0.0  # random erasing probability (timm RandomErasing, mode "pixel": N(0, 1) in normalised space)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # per channel, on the 0..1 scale
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.crop not in ("rrc", "translate", "none"):
            raise ValueError(f"crop must be 'rrc', 'translate' or 'none', got {self.crop!r}")
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std differ in length: {self.mean} vs {self.std}")
        if not all(0 <= p <= 1 for p in (self.hflip, self.reprob, self.randaugment_prob)):
            raise ValueError(f"hflip, reprob and randaugment_prob are probabilities, got {self.hflip}, {self.reprob} "
                             f"and {self.randaugment_prob}")
        if min(self.randaugment_n, self.translate, self.color_jitter, self.randaugment_mstd) < 0:
            raise ValueError("randaugment_n, translate, color_jitter and randaugment_mstd must be >= 0")
        if self.randaugment_ops not in ra.OP_SETS:
            raise ValueError(f"randaugment_ops must be one of {', '.join(ra.OP_SETS)}, got {self.randaugment_ops!r}")
        check_randaugment(self.randaugment_ops, self.randaugment_m, self.randaugment_mstd)


@dataclass(frozen=True)
class AugmentParams:
    """Every random draw for one batch of n images. All tensors are on the CPU except erase_noise.

    Fields of a stage that the spec turns off are None. crop_box is in source pixels and applies before the flip, as
    torchvision crops then flips; for crop="translate" it is the window's place in the reflect-padded image.
    """

    crop_box: Tensor  # (n, 4) int64 top, left, height, width
    flip: Tensor  # (n,) bool
    ra_op: Tensor | None  # (n, N) int64 index into the op set's ops, -1 where the slot's probability draw skipped it
    ra_arg: Tensor | None  # (n, N) float32 the op's argument in randaugment's units (degrees, factor, pixels, bits ...)
    jitter: Tensor | None  # (n, 3) float32 brightness, contrast, saturation enhancements (blend factor - 1)
    jitter_order: Tensor | None  # (n, 3) int64 the order those three apply in (0 brightness, 1 contrast, 2 saturation)
    erase: Tensor | None  # (n,) bool
    erase_box: Tensor | None  # (n, 4) int64 top, left, height, width on the output; zeros where erase is False
    erase_noise: Tensor | None  # (erase.sum(), C, S, S) float32 on the device; row k fills the k-th erased image


class BatchAugment:
    """uint8 (B, C, H, W) batches -> augmented, normalised float32 (B, C, out_size, out_size), on their own device."""

    def __init__(self, spec: AugmentSpec, out_size: int) -> None:
        self.spec = spec
        self.out_size = out_size
        self.ops = ra.OP_SETS[spec.randaugment_ops]
        # RandAugment's out-of-image colour where it resamples bilinearly: timm's create_transform passes
        # img_mean = round(255 * mean). (torchvision's op set fills with 0.)
        self.fill = tuple(float(min(255, round(255 * m))) for m in spec.mean)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return self.apply(x, self.sample(x.shape[0], x.shape[2], x.shape[3], generator, x.device))

    def sample(self, n: int, height: int, width: int, generator: torch.Generator,
               device: torch.device | str) -> AugmentParams:
        """Draw the parameters for n source images of height x width; `device` is where erase_noise is drawn."""
        if generator.device.type != "cpu":
            raise ValueError("BatchAugment draws its parameters on the CPU: pass a CPU torch.Generator")
        s, size = self.spec, self.out_size
        if s.crop == "rrc":
            crop_box = rrc_boxes(n, height, width, s.scale, s.ratio, generator)
        elif s.crop == "translate":
            shift = torch.floor(_uniform(generator, (n, 2)) * (2 * s.translate + 1))
            crop_box = torch.cat([shift, torch.tensor([[height, width]]).expand(n, 2)], 1).long()
        else:
            crop_box = torch.tensor([[0, 0, height, width]]).expand(n, 4).clone()
        flip = _uniform(generator, (n,)) < s.hflip

        ra_op = ra_arg = None
        if s.randaugment_n:
            shape = (n, s.randaugment_n)
            op = torch.floor(_uniform(generator, shape) * len(self.ops.ops)).long()
            applied = _uniform(generator, shape) < s.randaugment_prob
            m, mstd = s.randaugment_m, s.randaugment_mstd
            if mstd > 100:
                level = _uniform(generator, shape, 0.0, m)
            else:
                level = m + mstd * torch.randn(shape, generator=generator, dtype=torch.float64)
            sign = torch.where(_uniform(generator, shape) < 0.5, -1.0, 1.0)
            args = self.ops.args(level.clamp(0.0, self.ops.max_magnitude), sign, size)  # (n, N, len(ops))
            ra_arg = args.gather(2, op[..., None]).squeeze(2).float()
            ra_op = torch.where(applied, op, -1)

        jitter = jitter_order = None
        if s.color_jitter:
            jitter = _uniform(generator, (n, 3), max(-1.0, -s.color_jitter), s.color_jitter).float()  # factor - 1
            jitter_order = _uniform(generator, (n, 3)).argsort(1)

        erase = erase_box = erase_noise = None
        if s.reprob:
            erase, erase_box = _erase_boxes(n, size, s.reprob, generator)
            noise_gen = torch.Generator(device).manual_seed(int(torch.randint(2**62, (), generator=generator)))
            shape = (int(erase.sum()), len(s.mean), size, size)
            erase_noise = torch.randn(shape, generator=noise_gen, device=device)
        return AugmentParams(crop_box, flip, ra_op, ra_arg, jitter, jitter_order, erase, erase_box, erase_noise)

    def apply(self, x: Tensor, params: AugmentParams) -> Tensor:
        """x: uint8 (B, C, H, W) on any device -> normalised float32 (B, C, S, S) on that device."""
        s, size, dev = self.spec, self.out_size, x.device
        b, c, h, w = x.shape
        _check_uint8(x, len(s.mean))
        p = params
        box = p.crop_box
        if s.crop == "translate":  # exact, so done on uint8 (a quarter of the bytes)
            x = _translate(x, box[:, :2] - s.translate, s.translate)
            box = torch.tensor([[0, 0, h, w]]).expand(b, 4)
        crop_pending = (h, w) != (size, size) or not bool((box == torch.tensor([0, 0, h, w])).all())
        if not crop_pending and bool(p.flip.any()):
            # No crop to resample, so flip exactly: pick each image or its mirror with one index_select (on uint8,
            # cheaper than rewriting half the batch in place).
            x = torch.cat([x, x.flip(3)]).index_select(0, _to(torch.arange(b) + b * p.flip, dev))
        img = x.float()  # (B, C, H, W), integer values in [0, 255] after every op
        warp = _LazyWarp(img, box if crop_pending else None, p.flip, size, s.randaugment_n, self.fill)
        if p.ra_op is not None and p.ra_arg is not None:
            _randaugment(warp, p.ra_op, p.ra_arg, self.ops)
        img = warp.resample(torch.ones(b, dtype=torch.bool))  # (B, C, S, S)
        if p.jitter is not None and p.jitter_order is not None:
            # torchvision's ColorJitter ops are RandAugment's Brightness, Contrast and Color with the enhancement given.
            for k in range(3):
                which = p.jitter_order[:, k]
                _apply_grouped(img, which, p.jitter.gather(1, which[:, None]).squeeze(1), _JITTER_FNS)
        out = _normalise(img, s.mean, s.std)
        if p.erase is not None and p.erase_box is not None and p.erase_noise is not None and bool(p.erase.any()):
            _erase(out, p.erase, p.erase_box, p.erase_noise)
        return out


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...], out_size: int | None = None) -> Tensor:
    """The eval path: uint8 (B, C, H, W) -> float32 (B, C, S, S), resized (bilinear, antialiased, rounded to the
    uint8 grid like torchvision's Resize on uint8) only when out_size differs from H x W, then normalised."""
    _check_uint8(x, len(mean))
    img = x.float()
    if out_size is not None and (x.shape[2], x.shape[3]) != (out_size, out_size):
        img = F.interpolate(img, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=True)
        img = img.round_().clamp_(0.0, 255.0)
    return _normalise(img, mean, std)


def _check_uint8(x: Tensor, channels: int) -> None:
    # uint8 is also what makes x.float() a copy, which the in-place ops after it rely on.
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"expected uint8 (B, {channels}, H, W) images, got {x.dtype} {tuple(x.shape)}")


def _to(t: Tensor, device: torch.device) -> Tensor:
    """Host -> device without a stream sync. A blocking copy would wait for all queued GPU work (the previous training
    step included); a pageable source is staged before cudaMemcpyAsync returns, so it can be freed at once."""
    return t.to(device, non_blocking=True)


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> Tensor:
    """U(low, high) in float64, so that box sizes round as torchvision's Python-float arithmetic does."""
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _first_fit(fits: Tensor, *values: Tensor) -> list[Tensor]:
    """Per row, the values at the first try that fits ((n, tries) -> (n,)); rows where none fits get try 0."""
    first = fits.to(torch.uint8).argmax(1, keepdim=True)
    return [v.gather(1, first).squeeze(1) for v in values]


def rrc_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
               generator: torch.Generator) -> Tensor:
    """torchvision's RandomResizedCrop.get_params for n images at once -> (n, 4) int64 top, left, height, width."""
    area = _uniform(generator, (n, _TRIES), scale[0], scale[1]) * (height * width)
    aspect = _uniform(generator, (n, _TRIES), math.log(ratio[0]), math.log(ratio[1])).exp()
    w, h = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    h, w = _first_fit(fits, h, w)
    # No try fits: the whole image, cut to the nearest allowed aspect ratio, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fh, fw = round(width / min(ratio)), width
    elif in_ratio > max(ratio):
        fh, fw = height, round(height * max(ratio))
    else:
        fh, fw = height, width
    found = fits.any(1)
    h, w = torch.where(found, h, fh), torch.where(found, w, fw)
    top = torch.where(found, torch.floor(_uniform(generator, (n,)) * (height - h + 1)), (height - fh) // 2)
    left = torch.where(found, torch.floor(_uniform(generator, (n,)) * (width - w + 1)), (width - fw) // 2)
    return torch.stack([top, left, h, w], 1).long()


def _erase_boxes(n: int, size: int, prob: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """timm RandomErasing's box draw (one box) for n size x size images -> erase (n,) bool, box (n, 4) int64."""
    area = _uniform(generator, (n, _TRIES), *_ERASE_AREA) * (size * size)
    aspect = _uniform(generator, (n, _TRIES), math.log(_ERASE_ASPECT[0]), math.log(_ERASE_ASPECT[1])).exp()
    h, w = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (h < size) & (w < size)
    h, w = _first_fit(fits, h, w)
    erase = (_uniform(generator, (n,)) < prob) & fits.any(1)  # timm erases nothing when no try fits
    top = torch.floor(_uniform(generator, (n,)) * (size - h + 1))
    left = torch.floor(_uniform(generator, (n,)) * (size - w + 1))
    box = torch.stack([top, left, h, w], 1).long()
    return erase, torch.where(erase[:, None], box, 0)


def _translate(img: Tensor, shift: Tensor, pad: int) -> Tensor:
    """Shift each image by integer (dy, dx) = shift[i] in [-pad, pad] (host), reflecting at the border: airbench's crop
    of a reflect-padded batch, exact, any dtype, one gather. img (B, C, H, W) -> (B, C, H, W)."""
    b, c, h, w = img.shape
    # Every window of the padded image, as a view: (B, C, 2 pad + 1, 2 pad + 1, H, W).
    windows = F.pad(img, (pad, pad, pad, pad), mode="reflect").unfold(2, h, 1).unfold(3, w, 1)
    at = _to(shift + pad, img.device)
    return windows[torch.arange(b, device=img.device), :, at[:, 0], at[:, 1]]


def _crop_matrix(box: Tensor, flip: Tensor, height: int, width: int, size: int) -> Tensor:
    """Map output pixels of a size x size resize of each box, mirrored where flip, to source pixels (centred
    coordinates). box (B, 4), flip (B,) -> (B, 3, 3) float64."""
    top, left, bh, bw = box.to(torch.float64).unbind(1)
    m = torch.zeros(box.shape[0], 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 0, 2] = torch.where(flip, -bw, bw) / size, left + bw / 2 - width / 2
    m[:, 1, 1], m[:, 1, 2] = bh / size, top + bh / 2 - height / 2
    m[:, 2, 2] = 1.0
    return m


def _map_centres(m: Tensor, centres: Tensor) -> Tensor:
    """The output pixel centres mapped by affine maps m (G, 3, 3) -> planes (G, 2, S, S) of x and y; centres (S,) in
    centred coordinates. An outer sum of an x part and a y part: a per-image (S*S, 3) @ (3, 2) product is slow on CPU,
    and planes keep every elementwise op after it contiguous."""
    along_x = m[:, :2, 0, None] * centres  # (G, 2, S)
    along_y = m[:, :2, 1, None] * centres + m[:, :2, 2, None]
    return along_x[:, :, None, :] + along_y[:, :, :, None]


def _fill_mask(q: Tensor, size: int) -> Tensor:
    """At input points q (G, 2, S, S) of a size x size image, the weight a bilinear sample puts on in-bounds pixels,
    i.e. a zero-padded sample of an all-ones image -> (G, 1, S, S)."""
    inside = (size / 2 + 0.5 - q.abs()).clamp_(0.0, 1.0)
    return inside[:, :1] * inside[:, 1:]


class _LazyWarp:
    """The batch being augmented, plus per-image affine maps that are not resampled yet.

    `img` holds each image after its last resampling. `total[i]` maps output pixels to pixels of `img[i]`, in centred
    coordinates (x = column + 0.5 - width / 2, y down), and `stage[i, k]` maps output pixels to the input of
    RandAugment slot k, where that op's out-of-bounds fill is decided (identity while slot k has no pending op, which
    makes its fill mask exactly 1). Geometric ops only compose matrices; an image is resampled (one grid_sample, however
    many maps were composed) when a colour op or the end of the pipeline needs its pixels. The crop, with the flip
    folded in, stays pending until the first resampling, which covers the whole batch because it changes the
    resolution to S x S.
    """

    def __init__(self, img: Tensor, crop_box: Tensor | None, flip: Tensor, size: int, slots: int,
                 fill: tuple[float, ...]) -> None:
        """crop_box: host (B, 4) boxes to resize to size x size, mirrored where flip; None when img is already the
        S x S, flipped batch."""
        b, _, h, w = img.shape
        dev = img.device
        self.img, self.size, self.crop_box = img, size, crop_box
        self.fill = _to(torch.tensor(fill).view(1, -1, 1, 1), dev)
        self.centres = torch.arange(size, device=dev, dtype=torch.float32) + 0.5 - size / 2  # (S,)
        self.eye = torch.eye(3, device=dev)
        if crop_box is None:
            self.total = self.eye.repeat(b, 1, 1)  # (B, 3, 3)
        else:
            self.total = _to(_crop_matrix(crop_box, flip, h, w, size).float(), dev)
        self.stage = self.eye.repeat(b, max(slots, 1), 1, 1)  # (B, N, 3, 3)
        self.active = torch.zeros(b, max(slots, 1), dtype=torch.bool)  # host: slot k's map is pending for image i
        self.pending = torch.full((b,), crop_box is not None)  # host

    def compose(self, idx: Tensor, slot: int, inv: Tensor) -> None:
        """Append RandAugment slot `slot`'s geometric op, inverse maps inv (G, 3, 3) on the device, to images idx."""
        d = _to(idx, self.img.device)
        self.total[d] = self.total[d] @ inv
        earlier = self.stage[d, :slot]  # (G, slot, 3, 3)
        pending = _to(self.active[idx, :slot], d.device)[..., None, None]
        self.stage[d, :slot] = torch.where(pending, earlier @ inv[:, None], earlier)
        self.stage[d, slot] = inv
        self.active[idx, slot] = True
        self.pending[idx] = True

    def resample(self, want: Tensor, nearest: bool = False) -> Tensor:
        """Resample the images in `want` (host bool (B,)) that have pending maps; returns the batch. Bilinear with the
        fill colour blended in where an op's input is out of bounds, or with `nearest`, nearest neighbour and 0
        outside the image (torchvision's RandAugment with its default fill)."""
        if self.crop_box is not None:
            want = torch.ones_like(want)
        sel = want & self.pending
        if not bool(sel.any()):
            return self.img
        dev, size = self.img.device, self.size
        every = bool(sel.all())
        idx = sel.nonzero().squeeze(1)
        idx_d = _to(idx, dev)
        img = self.img if every else self.img.index_select(0, idx_d)
        g, _, h, w = img.shape
        total = self.total if every else self.total.index_select(0, idx_d)
        if nearest:
            out = F.grid_sample(img, self._affine_grid(total, h, w), mode="nearest", padding_mode="zeros",
                                align_corners=False)
        else:
            planes = _map_centres(total, self.centres)  # (G, 2, S, S) x, y in img's centred pixels
            if self.crop_box is not None:
                # torchvision crops, then resizes: the samples stay inside the box and its edge pixels repeat.
                top, left, bh, bw = _to(self.crop_box.float(), dev).unbind(1)
                lo = torch.stack([left + 0.5 - w / 2, top + 0.5 - h / 2], 1)[:, :, None, None]  # (B, 2, 1, 1)
                hi = lo + torch.stack([bw - 1, bh - 1], 1)[:, :, None, None]
                planes = torch.minimum(torch.maximum(planes, lo), hi)
            grid = torch.empty(g, size, size, 2, device=dev)  # (G, S, S, 2), normalised for align_corners=False
            torch.mul(planes.permute(0, 2, 3, 1), _to(torch.tensor([2 / w, 2 / h]), dev), out=grid)
            out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
            for rows, mask in self._fill_masks(planes, idx, idx_d):
                part = out if rows is None else out.index_select(0, rows)
                # torchvision: mask * (zero-padded sample - fill) + fill, and zero-padded sample = mask * border sample.
                part.mul_(mask).sub_(self.fill).mul_(mask).add_(self.fill)
                if rows is not None:
                    out.index_copy_(0, rows, part)
        out = out.round_()
        if every:
            self.img = out
        else:
            self.img.index_copy_(0, idx_d, out)
        self.total[idx_d] = self.eye
        self.stage[idx_d] = self.eye
        self.active[idx] = False
        self.pending[idx] = False
        self.crop_box = None
        return self.img

    def _affine_grid(self, total: Tensor, h: int, w: int) -> Tensor:
        """grid_sample's grid for maps total (G, 3, 3) on an h x w input, in the arithmetic of torchvision's
        _gen_affine_grid: theta scaled to [-1, 1] first, then (x theta_x + y theta_y) + theta_1 per pixel, which is what
        its bmm computes. Where a sample falls exactly halfway between two pixels (shears at some magnitudes meet such
        points), the side nearest-neighbour sampling picks depends on that rounding. -> (G, S, S, 2)"""
        theta = total[:, :2, :].transpose(1, 2) / _to(torch.tensor([0.5 * w, 0.5 * h]), total.device)  # (G, 3, 2)
        theta = theta[:, None, None]  # (G, 1, 1, 3, 2): rows for x, y and 1
        x, y = self.centres.view(1, 1, -1, 1), self.centres.view(1, -1, 1, 1)
        return (x * theta[..., 0, :] + y * theta[..., 1, :]) + theta[..., 2, :]

    def _fill_masks(self, planes: Tensor, idx: Tensor, idx_d: Tensor) -> list[tuple[Tensor | None, Tensor]]:
        """Where each op of images idx fills, earliest op first as the ops were applied: (rows of the group, or None
        for all, mask (G', 1, S, S)). planes: the group's sample points (G, 2, S, S)."""
        active = self.active[idx]  # (G, N)
        if self.crop_box is None and bool((active.sum(1) == 1).all()):
            return [(None, _fill_mask(planes, self.size))]  # one op per image: its input points are the samples
        fills: list[tuple[Tensor | None, Tensor]] = []
        for k in active.any(0).nonzero().flatten().tolist():
            rows = _to(active[:, k].nonzero().squeeze(1), idx_d.device)
            fills.append((rows, _fill_mask(_map_centres(self.stage[idx_d[rows], k], self.centres), self.size)))
        return fills


def _randaugment(warp: _LazyWarp, op: Tensor, arg: Tensor, ops: ra.OpSet) -> None:
    """Apply RandAugment slot by slot. op, arg: host (B, N) as in AugmentParams."""
    dev = warp.img.device
    kinds, has_colour = ops.kinds, ops.has_colour
    if ops.nearest:  # each op is resampled on its own, so the crop is too (bilinear, as torchvision's)
        warp.resample(torch.ones(op.shape[0], dtype=torch.bool))
    for slot in range(op.shape[1]):
        o, a = op[:, slot], arg[:, slot]
        kind = torch.where(o >= 0, kinds[o.clamp(min=0)], -1)
        is_geo = kind >= 0
        if bool(is_geo.any()):
            idx = is_geo.nonzero().squeeze(1)
            warp.compose(idx, slot, _to(ra.geometric_matrix(kind[idx], a[idx], warp.size).float(), dev))
            if ops.nearest:
                warp.resample(is_geo, nearest=True)
        colour = (o >= 0) & has_colour[o.clamp(min=0)]
        if not bool(colour.any()):
            continue
        img = warp.resample(colour)  # a colour op needs the pixels as the ops before it left them
        _apply_grouped(img, torch.where(colour, o, -1), a, ops.colour_fns)


def _apply_grouped(img: Tensor, op: Tensor, arg: Tensor, fns: Sequence[ra.ImageOp | None]) -> None:
    """img[i] = fns[op[i]](img[i], arg[i]) in place, one call per op on the images that have it; op -1 leaves an image
    as it is. op, arg: host (B,). The images are sorted by op so that each op's group is a slice: one transfer of
    indices and arguments, not one per op."""
    dev = img.device
    idx = (op >= 0).nonzero().squeeze(1)
    idx = idx[op[idx].argsort(stable=True)]
    counts = torch.bincount(op[idx], minlength=len(fns)).tolist()
    idx_d, arg_d = _to(idx, dev), _to(arg[idx], dev).view(-1, 1, 1, 1)
    start = 0
    for fn, count in zip(fns, counts):
        if fn is not None and count:
            part = idx_d[start:start + count]
            img.index_copy_(0, part, fn(img.index_select(0, part), arg_d[start:start + count]))
        start += count


def _normalise(img: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(img / 255 - mean) / std per channel, in place (a fresh 6 MB buffer per batch costs page faults on CPU)."""
    std_t, mean_t = torch.tensor(std).view(1, -1, 1, 1), torch.tensor(mean).view(1, -1, 1, 1)
    return img.mul_(_to(1.0 / (255.0 * std_t), img.device)).sub_(_to(mean_t / std_t, img.device))


def _erase(out: Tensor, erase: Tensor, box: Tensor, noise: Tensor) -> None:
    """Overwrite each erased image's box with its noise, in place. erase (B,), box (B, 4) host; noise (G, C, S, S)."""
    dev, size = out.device, out.shape[-1]
    idx = erase.nonzero().squeeze(1)
    idx_d = _to(idx, dev)
    top, left, h, w = _to(box[idx], dev).unbind(1)
    r = torch.arange(size, device=dev)
    rows = (r >= top[:, None]) & (r < (top + h)[:, None])  # (G, S)
    cols = (r >= left[:, None]) & (r < (left + w)[:, None])
    inside = (rows[:, :, None] & cols[:, None, :])[:, None].to(out.dtype)  # (G, 1, S, S)
    part = out.index_select(0, idx_d)
    out.index_copy_(0, idx_d, part * (1.0 - inside) + noise * inside)  # exact either way, unlike a lerp


@dataclass(frozen=True)
class MixSpec:
    """timm Mixup's arguments for mode "batch" (with correct_lam); both alphas 0 = no mixing."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0  # probability of mixing a batch
    switch_prob: float = 0.5  # when both are on, probability of cutmix instead of mixup
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class MixParams:
    """One batch's mixing: out = lam * x + (1 - lam) * x.flip(0), or cutmix's box pasted from x.flip(0)."""

    lam: float  # weight of each image's own label; for cutmix, 1 - box area / image area (timm's correct_lam)
    box: tuple[int, int, int, int] | None  # cutmix (y_lo, y_hi, x_lo, x_hi); None for mixup or no mixing


class BatchMix:
    """timm.data.Mixup in mode "batch" (one lambda per batch, mixed with the flipped batch), with soft targets.

    Its draws (Beta lambdas, the box centre) are one per batch, so they come from a numpy generator seeded from the
    given torch generator: torch has no seeded Beta sampler, and numpy's is the one timm uses. Unlike timm, an odd batch
    is accepted (its middle image mixes with itself), and with both alphas 0 it only smooths the labels.
    """

    def __init__(self, spec: MixSpec, num_classes: int) -> None:
        self.spec = spec
        self.num_classes = num_classes

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.apply(x, y, self.sample(x.shape[2], x.shape[3], generator))

    def sample(self, height: int, width: int, generator: torch.Generator) -> MixParams:
        s = self.spec
        rng = np.random.default_rng(int(torch.randint(2**62, (), generator=generator)))
        if (s.mixup_alpha <= 0 and s.cutmix_alpha <= 0) or rng.random() >= s.prob:
            return MixParams(1.0, None)
        use_cutmix = rng.random() < s.switch_prob if s.mixup_alpha > 0 and s.cutmix_alpha > 0 else s.cutmix_alpha > 0
        alpha = s.cutmix_alpha if use_cutmix else s.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        if not use_cutmix:
            return MixParams(lam, None)
        # timm's rand_bbox: a box of (1 - lam) of the area around a uniform centre, clipped to the image.
        ratio = math.sqrt(1 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        y_lo, y_hi = min(max(cy - cut_h // 2, 0), height), min(max(cy + (cut_h + 1) // 2, 0), height)
        x_lo, x_hi = min(max(cx - cut_w // 2, 0), width), min(max(cx + (cut_w + 1) // 2, 0), width)
        lam = 1.0 - (y_hi - y_lo) * (x_hi - x_lo) / (height * width)  # the clipped box sets the label weight
        return MixParams(lam, (y_lo, y_hi, x_lo, x_hi))

    def apply(self, x: Tensor, y: Tensor, params: MixParams) -> tuple[Tensor, Tensor]:
        """x float (B, C, H, W), y int64 (B,) -> mixed x (x itself when lam is 1), soft targets (B, num_classes)."""
        lam = params.lam
        if params.box is not None:
            y_lo, y_hi, x_lo, x_hi = params.box
            x = x.clone()
            x[:, :, y_lo:y_hi, x_lo:x_hi] = x.flip(0)[:, :, y_lo:y_hi, x_lo:x_hi]
        elif lam != 1.0:
            x = x * lam + x.flip(0) * (1.0 - lam)
        off = self.spec.label_smoothing / self.num_classes
        on = 1.0 - self.spec.label_smoothing + off
        target = torch.full((y.shape[0], self.num_classes), off, device=y.device).scatter_(1, y.view(-1, 1), on)
        return x, target * lam + target.flip(0) * (1.0 - lam)

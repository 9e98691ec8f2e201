"""Batched augmentation (harness.augment) against a per-image torchvision reference, on real images.

The reference applies the SAME sampled parameters one image at a time with torchvision on uint8 tensors, in the
pipeline's order: torchvision.transforms.v2.functional for crops, flips and timm's geometric ops, and the kernels of
torchvision.transforms.functional that torchvision's RandAugment calls for the colour ops (for torchvision's op set,
RandAugment's own op function with magnitudes from its own tables). Outputs are compared on the 0..255 scale. Colour
ops and torchvision's nearest-neighbour geometric ops must agree exactly; where both sides interpolate in float32, the
same formula evaluated in a different order can land on the other side of a rounding boundary, so those allow 1 grey
level on a small fraction of pixels (the fraction is stated per test).
"""
from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F1
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode, RandAugment
from torchvision.transforms.autoaugment import _apply_op  # what RandAugment.forward calls for each op

from harness import randaugment as ra
from harness.augment import AugmentParams, AugmentSpec, BatchAugment, BatchMix, MixParams, MixSpec, normalize
from harness.config import RecipeConfig
from harness.data import augment_spec
from harness.recipes import RECIPES

CIFAR_NPZ = Path(__file__).parent / "data" / "cifar10_jpegbytes_1k1k.npz"  # real CIFAR-10 JPEGs, see data/README.md
SIZE = 32
N = 32  # images per comparison: enough to meet every op at many magnitudes, small enough for a per-image loop
STATS_N = 20_000  # draws for the rate checks: 4.5 sigma of a rate near 0.5 is about 0.016
BILINEAR = InterpolationMode.BILINEAR
TORCHVISION = ra.OP_SETS["torchvision"]
OP_NAMES = [(ops, name) for ops, op_set in ra.OP_SETS.items() for name in op_set.names]  # every op of every set
GREY = dict(mean=(0.5,), std=(0.5,))
CIFAR_NORM = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


@pytest.fixture(scope="module")
def cifar() -> Tensor:
    """N real CIFAR-10 train JPEGs, spread over the classes (the file stores them class by class): (N, 3, 32, 32)."""
    data = np.load(CIFAR_NPZ)
    buf, off = data["jpeg_train"], data["offsets_train"]
    picks = np.linspace(0, len(off) - 2, N).astype(int)
    images = [Image.open(io.BytesIO(buf[off[i]:off[i + 1]].tobytes())).convert("RGB") for i in picks]
    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def digits8() -> Tensor:
    """N sklearn digits, grey levels 0..16 scaled to 0..255: uint8 (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(np.round(load_digits().images[:N] * (255 / 16)).astype(np.uint8))[:, None]


@pytest.fixture(scope="module")
def digits(digits8: Tensor) -> Tensor:
    """The digits upscaled 4x by pixel repetition to SIZE: uint8 (N, 1, 32, 32)."""
    return digits8.repeat_interleave(4, 2).repeat_interleave(4, 3)


def images(request: pytest.FixtureRequest, name: str) -> tuple[Tensor, dict]:
    """A dataset fixture by name, with the mean/std that go with it."""
    x = request.getfixturevalue(name)
    return x, (GREY if x.shape[1] == 1 else CIFAR_NORM)


def _affine(img: Tensor, fill: list[float], **kwargs) -> Tensor:
    return TF.affine(img, **{"angle": 0.0, "translate": [0.0, 0.0], "scale": 1.0, "shear": [0.0, 0.0], **kwargs},
                     interpolation=BILINEAR, fill=fill)


def _solarize_add(img: Tensor, add: float) -> Tensor:  # timm's LUT; torchvision has no such op
    return torch.where(img < 128, (img.int() + int(add)).clamp(max=255), img.int()).to(torch.uint8)


# timm's op (PIL) in torchvision terms, with the arguments in harness.randaugment's units. Shears are about the
# top-left corner as in PIL, which is how torchvision's own RandAugment writes them; translations are the pixels the
# content moves; the enhancements' argument is the blend factor minus 1.
TIMM_REFERENCE: dict[str, Callable[[Tensor, float, list[float]], Tensor]] = {
    "AutoContrast": lambda img, a, fill: F1.autocontrast(img),
    "Equalize": lambda img, a, fill: F1.equalize(img),
    "Invert": lambda img, a, fill: F1.invert(img),
    "Rotate": lambda img, a, fill: TF.rotate(img, a, interpolation=BILINEAR, fill=fill),
    "PosterizeIncreasing": lambda img, a, fill: F1.posterize(img, int(a)),
    "SolarizeIncreasing": lambda img, a, fill: img if a > 255 else F1.solarize(img, a),  # 256: no pixel is >= it
    "SolarizeAdd": lambda img, a, fill: _solarize_add(img, a),
    "ColorIncreasing": lambda img, a, fill: F1.adjust_saturation(img, 1 + a),
    "ContrastIncreasing": lambda img, a, fill: F1.adjust_contrast(img, 1 + a),
    "BrightnessIncreasing": lambda img, a, fill: F1.adjust_brightness(img, 1 + a),
    "SharpnessIncreasing": lambda img, a, fill: F1.adjust_sharpness(img, 1 + a),
    "ShearX": lambda img, a, fill: _affine(img, fill, shear=[math.degrees(math.atan(a)), 0.0], center=[0, 0]),
    "ShearY": lambda img, a, fill: _affine(img, fill, shear=[0.0, math.degrees(math.atan(a))], center=[0, 0]),
    "TranslateXRel": lambda img, a, fill: _affine(img, fill, translate=[a, 0.0]),
    "TranslateYRel": lambda img, a, fill: _affine(img, fill, translate=[0.0, a]),
}
JITTER = (F1.adjust_brightness, F1.adjust_contrast, F1.adjust_saturation)
TORCHVISION_SPACE = RandAugment()._augmentation_space(ra.TORCHVISION_BINS, (SIZE, SIZE))  # op -> (magnitudes, signed)


def torchvision_op(img: Tensor, name: str, magnitude_bin: int, negative: bool) -> Tensor:
    """What torchvision's RandAugment(magnitude=magnitude_bin) does when it draws op `name` and the sign `negative`,
    with the magnitude from its own table (not from the arguments under test)."""
    magnitudes, signed = TORCHVISION_SPACE[name]
    magnitude = float(magnitudes[magnitude_bin]) if magnitudes.ndim > 0 else 0.0
    return _apply_op(img, name, -magnitude if signed and negative else magnitude,
                     interpolation=InterpolationMode.NEAREST, fill=None)  # RandAugment's defaults


def reference(aug: BatchAugment, x: Tensor, p: AugmentParams, magnitude_bins: Tensor | None = None) -> Tensor:
    """`aug.apply(x, p)`, one image at a time with torchvision. For torchvision's op set, `magnitude_bins` (n,) gives
    each image's bin (default: the spec's); the sign is the argument's."""
    s, size = aug.spec, aug.out_size
    fill = [float(min(255, round(255 * m))) for m in s.mean]  # timm's create_transform: img_mean
    out, erased = [], 0
    for i in range(x.shape[0]):
        img = x[i]
        top, left, h, w = p.crop_box[i].tolist()
        if s.crop == "translate":
            img = TF.crop(TF.pad(img, [s.translate] * 4, padding_mode="reflect"), top, left, h, w)
        elif s.crop == "rrc":
            img = TF.crop(img, top, left, h, w)
        if img.shape[-2:] != (size, size):
            img = resize(img, size)
        if p.flip[i]:
            img = TF.horizontal_flip(img)
        if p.ra_op is not None and p.ra_arg is not None:
            for op, arg in zip(p.ra_op[i].tolist(), p.ra_arg[i].tolist()):
                if op < 0:
                    continue
                name = aug.ops.names[op]
                if aug.ops is TORCHVISION:
                    bin_ = int(s.randaugment_m if magnitude_bins is None else magnitude_bins[i])
                    img = torchvision_op(img, name, bin_, arg < 0)
                else:
                    img = TIMM_REFERENCE[name](img, arg, fill)
        if p.jitter is not None and p.jitter_order is not None:
            for k in p.jitter_order[i].tolist():
                img = JITTER[k](img, 1 + float(p.jitter[i, k]))
        img = TF.normalize(TF.to_dtype(img, torch.float32, scale=True), list(s.mean), list(s.std))
        if p.erase is not None and p.erase_box is not None and p.erase_noise is not None and p.erase[i]:
            t, l, h, w = p.erase_box[i].tolist()
            img = TF.erase(img, t, l, h, w, p.erase_noise[erased, :, t:t + h, l:l + w].cpu())
            erased += 1
        out.append(img)
    return torch.stack(out)


def resize(img: Tensor, size: int) -> Tensor:
    """torchvision's float resize rounded to uint8, which is its path on CUDA. Its CPU uint8 path uses fixed-point
    weights, off by one level on about 10% of pixels, so it would test torchvision's approximation, not this code."""
    return TF.resize(img.float(), [size, size], antialias=True).round_().clamp_(0, 255).to(torch.uint8)


def level_diff(got: Tensor, want: Tensor, spec: AugmentSpec) -> Tensor:
    """|got - want| in grey levels (0..255 scale) of two normalised batches."""
    std = torch.tensor(spec.std, dtype=torch.float64).view(1, -1, 1, 1)
    return (got.cpu().double() - want.double()).abs() * std * 255


def assert_matches(got: Tensor, want: Tensor, spec: AugmentSpec, frac_off_by_one: float) -> None:
    """At most 1 grey level apart anywhere, and off by one on at most `frac_off_by_one` of the values."""
    assert got.shape == want.shape and got.dtype == want.dtype == torch.float32
    d = level_diff(got, want, spec)
    assert d.max() <= 1.0 + 1e-3, f"max diff {float(d.max()):.2f} levels"
    assert (d > 1e-3).double().mean() <= frac_off_by_one, f"{float((d > 1e-3).double().mean()):.4%} differ"


def forced(aug: BatchAugment, x: Tensor, op: str, seed: int = 0) -> tuple[AugmentParams, Tensor]:
    """Parameters that apply `op` to every image in slot 0, at magnitudes spread over the op set's scale (every one of
    torchvision's bins) with alternating signs; and those magnitudes."""
    n = x.shape[0]
    p = aug.sample(n, x.shape[2], x.shape[3], torch.Generator().manual_seed(seed), x.device)
    level = torch.linspace(0.0, aug.ops.max_magnitude, n, dtype=torch.float64)
    level = level.round() if aug.ops is TORCHVISION else level
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2 + 1)[:n]
    arg = aug.ops.args(level, sign, aug.out_size)[:, aug.ops.names.index(op)].float()
    op_idx = torch.full((n, aug.spec.randaugment_n), -1)
    op_idx[:, 0] = aug.ops.names.index(op)
    return dataclasses.replace(p, ra_op=op_idx, ra_arg=arg[:, None].expand(n, aug.spec.randaugment_n).clone()), level


@pytest.mark.parametrize("data", ["cifar", "digits"])
@pytest.mark.parametrize("ops,op", OP_NAMES)
def test_each_randaugment_op_matches_its_library(ops: str, op: str, data: str, request: pytest.FixtureRequest) -> None:
    x, norm = images(request, data)
    spec = AugmentSpec(crop="none", hflip=0.0, randaugment_n=1, randaugment_ops=ops, randaugment_mstd=0.0, **norm)
    aug = BatchAugment(spec, SIZE)
    p, level = forced(aug, x, op)
    assert ops != "torchvision" or set(level.long().tolist()) == set(range(ra.TORCHVISION_BINS))
    got, want = aug.apply(x, p), reference(aug, x, p, level)
    # Only timm's geometric ops interpolate: bilinear in float32 in another order (seen: under 0.3% of values off by
    # one level). Colour ops and torchvision's nearest-neighbour ops are the same arithmetic: bit for bit.
    bilinear = aug.ops is not TORCHVISION and aug.ops.ops[aug.ops.names.index(op)].geometric is not None
    assert_matches(got, want, spec, frac_off_by_one=0.01 if bilinear else 0.0)
    plain = normalize(x[:1], spec.mean, spec.std)[0]
    if torch.allclose(want[0], plain):  # where magnitude 0 leaves the image as it is, it does so exactly here too
        assert torch.equal(got[0], plain)


def test_timm_arguments_match_timm_formulas() -> None:
    """timm's inc1 LEVEL_TO_ARG by hand at a few levels (timm is not imported: it costs seconds)."""
    level = torch.tensor([0.0, 5.0, 9.0, 10.0], dtype=torch.float64)
    args = ra.OP_SETS["timm"].args(level, torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64), SIZE)
    col = {name: args[:, i].tolist() for i, name in enumerate(ra.OP_SETS["timm"].names)}
    assert col["Rotate"] == pytest.approx([0.0, -15.0, 27.0, -30.0])
    assert col["PosterizeIncreasing"] == [4.0, 2.0, 1.0, 0.0]  # 4 - int(level / 10 * 4)
    assert col["SolarizeIncreasing"] == [256.0, 128.0, 26.0, 0.0]  # 256 - int(level / 10 * 256)
    assert col["SolarizeAdd"] == [0.0, 55.0, 99.0, 110.0]  # int(level / 10 * 110)
    for name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        assert col[name] == pytest.approx([0.0, -0.45, 0.81, -0.9])  # factor 1 +- level / 10 * 0.9, at least 0.1
    for name in ("ShearX", "ShearY"):
        assert col[name] == pytest.approx([0.0, -0.15, 0.27, -0.3])
    for name in ("TranslateXRel", "TranslateYRel"):
        assert col[name] == pytest.approx([0.0, -7.2, 12.96, -14.4])  # level / 10 * 0.45 of the 32 pixels


@pytest.mark.parametrize("size", [32, 224])
def test_torchvision_arguments_are_its_own_tables(size: int) -> None:
    """Every bin and sign against RandAugment._augmentation_space and what _apply_op makes of each magnitude."""
    space = RandAugment()._augmentation_space(ra.TORCHVISION_BINS, (size, size))
    assert TORCHVISION.names == tuple(space)  # the same 14 ops, in the order its op index draws them
    level = torch.arange(ra.TORCHVISION_BINS, dtype=torch.float64).repeat(2)
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat_interleave(ra.TORCHVISION_BINS)
    args = TORCHVISION.args(level, sign, size)
    for j, (name, (magnitudes, signed)) in enumerate(space.items()):
        for k in range(len(level)):
            m = float(magnitudes[int(level[k])]) if magnitudes.ndim > 0 else 0.0
            m = -m if signed and sign[k] < 0 else m
            want = {"TranslateX": int(m), "TranslateY": int(m), "Posterize": int(m),
                    "Solarize": math.ceil(m)}.get(name, m)  # _apply_op's int(); level >= t is level >= ceil(t)
            assert float(args[k, j]) == want, (name, int(level[k]), float(sign[k]))


@pytest.mark.parametrize("data", ["cifar", "digits"])
def test_random_resized_crop_and_flip_match_torchvision(data: str, request: pytest.FixtureRequest) -> None:
    x, norm = images(request, data)
    spec = AugmentSpec(crop="rrc", hflip=0.5, **norm)
    aug = BatchAugment(spec, SIZE)
    p = aug.sample(N, SIZE, SIZE, torch.Generator().manual_seed(1), "cpu")
    assert 0 < int(p.flip.sum()) < N and bool((p.crop_box[:, 2:] < SIZE).any())  # the test meets both cases
    assert_matches(aug.apply(x, p), reference(aug, x, p), spec, frac_off_by_one=0.01)


def test_translate_crop_matches_reflect_pad_and_crop(cifar: Tensor) -> None:
    spec = AugmentSpec(crop="translate", translate=4, hflip=0.5, **CIFAR_NORM)
    aug = BatchAugment(spec, SIZE)
    p = aug.sample(N, SIZE, SIZE, torch.Generator().manual_seed(2), "cpu")
    assert_matches(aug.apply(cifar, p), reference(aug, cifar, p), spec, frac_off_by_one=0.0)


def test_resize_without_crop_matches_torchvision(digits8: Tensor) -> None:
    spec = AugmentSpec(crop="none", hflip=0.5, **GREY)
    aug = BatchAugment(spec, SIZE)
    p = aug.sample(N, 8, 8, torch.Generator().manual_seed(3), "cpu")
    got = aug.apply(digits8, p)
    assert got.shape == (N, 1, SIZE, SIZE)
    assert_matches(got, reference(aug, digits8, p), spec, frac_off_by_one=0.01)


def test_full_pipeline_matches_torchvision_where_nothing_is_fused(cifar: Tensor) -> None:
    """timm's RandAugment after the convmixer-cifar10 crop and flip, plus jitter and erasing. An off-by-one from one
    bilinear op can grow to 2 levels through the blends after it. Images with two geometric ops in a row are resampled
    once from the composed map instead of twice (by design), which removes a blur pass; they only have to stay near
    the reference."""
    spec = AugmentSpec(crop="rrc", scale=(1.0, 1.0), hflip=0.5, randaugment_n=2, randaugment_m=9,
                       color_jitter=0.4, reprob=0.5, **CIFAR_NORM)
    aug = BatchAugment(spec, SIZE)
    p = aug.sample(N, SIZE, SIZE, torch.Generator().manual_seed(7), "cpu")
    assert p.ra_op is not None and p.erase is not None
    fused = torch.isin(p.ra_op, (aug.ops.kinds >= 0).nonzero().squeeze(1)).all(1)
    assert 0 < int(fused.sum()) < N // 4 and bool(p.erase.any())
    got, want = aug.apply(cifar, p), reference(aug, cifar, p)
    d = level_diff(got[~fused], want[~fused], spec)
    assert d.max() <= 2.0 + 1e-3 and (d > 1e-3).double().mean() < 0.01
    assert level_diff(got[fused], want[fused], spec).mean() < 6.0


def test_fused_crop_and_rotation_stay_close_to_two_resamplings(cifar: Tensor) -> None:
    """A zooming crop then Rotate: one grid_sample of the composed map vs torchvision's crop, then rotate. They differ
    by one bilinear pass (the composed one is sharper); the rotation's fill must land in the same place."""
    spec = AugmentSpec(crop="rrc", scale=(0.25, 0.5), hflip=0.5, randaugment_n=1, **CIFAR_NORM)
    aug = BatchAugment(spec, SIZE)
    p, _ = forced(aug, cifar, "Rotate", seed=5)
    got, want = aug.apply(cifar, p), reference(aug, cifar, p)
    d = level_diff(got, want, spec)
    assert d.mean() < 4.0
    # Where the reference is the fill colour, the fused output is too.
    fill = torch.tensor(aug.fill).view(1, 3, 1, 1) / 255
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    is_fill = ((want * std + mean - fill).abs() < 1e-4).all(1, keepdim=True).expand_as(want)
    assert int(is_fill.sum()) > 0 and d[is_fill].max() <= 1.0


def test_same_seed_same_batch_and_different_seed_different_batch(cifar: Tensor) -> None:
    spec = AugmentSpec(crop="rrc", randaugment_n=2, color_jitter=0.4, reprob=0.25, **CIFAR_NORM)
    aug = BatchAugment(spec, SIZE)
    before = cifar.clone()
    a = aug(cifar, torch.Generator().manual_seed(7))
    b = aug(cifar, torch.Generator().manual_seed(7))
    c = aug(cifar, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.1
    assert torch.equal(cifar, before)  # the dataset on the device is never written to


def test_output_is_float32_normalised_at_out_size(cifar: Tensor, digits8: Tensor) -> None:
    spec = AugmentSpec(crop="none", hflip=0.0, **CIFAR_NORM)
    out = BatchAugment(spec, SIZE)(cifar, torch.Generator().manual_seed(0))
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == cifar.shape
    torch.testing.assert_close(out, (cifar / 255 - mean) / std, atol=1e-5, rtol=0)
    torch.testing.assert_close(normalize(cifar, spec.mean, spec.std), out, atol=1e-5, rtol=0)
    resized = normalize(digits8, (0.5,), (0.5,), out_size=SIZE)
    want = TF.normalize(TF.to_dtype(resize(digits8, SIZE), scale=True), [0.5], [0.5])
    assert resized.shape == (N, 1, SIZE, SIZE)
    assert level_diff(resized, want, AugmentSpec(**GREY)).max() <= 1.0 + 1e-3


def binomial_ok(hits: int, n: int, p: float) -> bool:
    """Within 4.5 standard deviations of n * p."""
    return abs(hits - n * p) <= 4.5 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("prob", [0.5, 0.2])
def test_flip_and_erase_rates(prob: float) -> None:
    aug = BatchAugment(AugmentSpec(crop="none", hflip=prob, reprob=prob), SIZE)
    p = aug.sample(STATS_N, SIZE, SIZE, torch.Generator().manual_seed(9), "cpu")
    assert p.erase is not None and p.erase_box is not None and p.erase_noise is not None
    assert binomial_ok(int(p.flip.sum()), STATS_N, prob)
    # At 32 x 32 one of timm's 10 box tries fits with near certainty, so erasing happens at the stated rate.
    assert binomial_ok(int(p.erase.sum()), STATS_N, prob)
    assert p.erase_noise.shape == (int(p.erase.sum()), 3, SIZE, SIZE)
    box = p.erase_box[p.erase].double()
    area = box[:, 2] * box[:, 3] / SIZE**2
    assert bool((box[:, :2] >= 0).all() and (box[:, :2] + box[:, 2:] <= SIZE).all())
    assert 0.01 < float(area.min()) and float(area.max()) < 0.36  # timm's (0.02, 1/3) up to rounding h and w


def test_random_resized_crop_boxes_follow_torchvision() -> None:
    aug = BatchAugment(AugmentSpec(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)), SIZE)
    box = aug.sample(STATS_N, 48, 64, torch.Generator().manual_seed(10), "cpu").crop_box.double()
    top, left, h, w = box.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all() and (top + h <= 48).all() and (left + w <= 64).all())
    assert float((h * w / (48 * 64)).min()) > 0.07 and float((w / h).min()) > 0.7 and float((w / h).max()) < 1.43
    # scale (1, 1) on a 32 x 64 image: no try fits, so the fallback centre crop cut to the largest ratio, 4/3;
    # on a 64 x 32 image, to the smallest, 3/4
    full = BatchAugment(AugmentSpec(scale=(1.0, 1.0)), SIZE)
    assert full.sample(8, 32, 64, torch.Generator(), "cpu").crop_box.tolist() == [[0, 10, 32, 43]] * 8
    assert full.sample(8, 64, 32, torch.Generator(), "cpu").crop_box.tolist() == [[10, 0, 43, 32]] * 8


def test_convmixer_cifar10_recipe_is_torchvisions_randaugment_bit_for_bit(cifar: Tensor) -> None:
    """The recipe's whole augmentation, two random ops per image: the public script's transform list, image by image
    (its colour jitter and erasing are off), equals the batched one exactly."""
    spec = augment_spec(RecipeConfig(**RECIPES["convmixer_cifar10"]), CIFAR_NORM["mean"], CIFAR_NORM["std"])
    assert spec.randaugment_ops == "torchvision" and spec.randaugment_prob == 1.0
    aug = BatchAugment(spec, SIZE)
    p = aug.sample(N, SIZE, SIZE, torch.Generator().manual_seed(14), "cpu")
    assert p.ra_op is not None and bool((p.ra_op >= 0).all()) and 0 < int(p.flip.sum()) < N
    geometric = (aug.ops.kinds >= 0)[p.ra_op]
    assert bool(geometric.all(1).any())  # images with two resamplings in a row are among them
    assert_matches(aug.apply(cifar, p), reference(aug, cifar, p), spec, frac_off_by_one=0.0)


@pytest.mark.parametrize("ops,prob", [("timm", 0.5), ("torchvision", 1.0), ("torchvision", 0.3)])
def test_randaugment_applies_each_slot_at_its_rate_and_picks_ops_uniformly(ops: str, prob: float) -> None:
    spec = AugmentSpec(crop="none", randaugment_n=2, randaugment_m=8, randaugment_mstd=0.0, randaugment_prob=prob,
                       randaugment_ops=ops)
    aug = BatchAugment(spec, SIZE)
    p = aug.sample(STATS_N, SIZE, SIZE, torch.Generator().manual_seed(15), "cpu")
    assert p.ra_op is not None and p.ra_arg is not None
    applied = p.ra_op >= 0
    assert binomial_ok(int(applied.sum()), 2 * STATS_N, prob)  # with prob 1: every slot, every image
    counts = torch.bincount(p.ra_op[applied], minlength=len(aug.ops.ops))
    assert len(counts) == len(aug.ops.ops) == (14 if ops == "torchvision" else 15)
    assert all(binomial_ok(int(c), int(applied.sum()), 1 / len(aug.ops.ops)) for c in counts)
    rotate = p.ra_arg[p.ra_op == aug.ops.names.index("Rotate")]  # signed at random, magnitude fixed
    assert binomial_ok(int((rotate < 0).sum()), rotate.numel(), 0.5)
    assert bool((rotate.abs() == (8.0 if ops == "torchvision" else 24.0)).all())  # bin 8 = 8 degrees; level 8 = 24


def test_timm_magnitude_noise() -> None:
    def rotate_levels(m: float, mstd: float) -> Tensor:  # |Rotate argument| = level * 3 degrees
        aug = BatchAugment(AugmentSpec(crop="none", randaugment_n=2, randaugment_m=m, randaugment_mstd=mstd), SIZE)
        p = aug.sample(STATS_N, SIZE, SIZE, torch.Generator().manual_seed(11), "cpu")
        assert p.ra_op is not None and p.ra_arg is not None
        return p.ra_arg[p.ra_op == aug.ops.names.index("Rotate")].double().abs() / 3

    level = rotate_levels(9.0, 0.5)
    n = level.numel()
    assert abs(float(level.mean()) - 9.0) < 4.5 * 0.5 / math.sqrt(n)  # N(9, 0.5), clipped at 10 (2 sigma away)
    assert abs(float(level.std()) - 0.5) < 4.5 * 0.5 / math.sqrt(2 * n)
    clipped = rotate_levels(9.8, 0.5)  # timm clips magnitudes to 10: a third of these draws
    assert float(clipped.max()) == pytest.approx(10.0) and binomial_ok(int((clipped > 9.99999).sum()), n, 0.3446)
    uniform = rotate_levels(6.0, math.inf)  # mstd inf: U(0, m)
    assert abs(float(uniform.mean()) - 3.0) < 4.5 * math.sqrt(36 / 12 / uniform.numel())


def test_bad_inputs_are_refused() -> None:
    aug = BatchAugment(AugmentSpec(), SIZE)
    not_cpu = SimpleNamespace(device=torch.device("cuda"))  # a real one needs a GPU; only .device is read first
    with pytest.raises(ValueError, match="CPU"):
        aug.sample(2, SIZE, SIZE, not_cpu, "cpu")  # type: ignore[arg-type]
    x = torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):  # a float batch would be written to in place
        aug(x.float(), torch.Generator())
    with pytest.raises(ValueError, match="uint8"):  # three channels, one mean
        normalize(x, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="crop"):
        AugmentSpec(crop="center")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="randaugment_ops must be one of timm, torchvision, got 'pil'"):
        AugmentSpec(randaugment_ops="pil")
    with pytest.raises(ValueError, match="randaugment_prob"):
        AugmentSpec(randaugment_prob=1.5)
    with pytest.raises(ValueError, match=r"randaugment_m: must be in \[0, 10\] on timm's scale, got 12"):
        AugmentSpec(randaugment_m=12)
    with pytest.raises(ValueError, match="randaugment_m: torchvision's RandAugment takes a magnitude bin"):
        AugmentSpec(randaugment_ops="torchvision", randaugment_m=12.5, randaugment_mstd=0.0)
    with pytest.raises(ValueError, match="randaugment_mstd: torchvision's RandAugment has no magnitude noise"):
        AugmentSpec(randaugment_ops="torchvision", randaugment_m=12)


# the CUDA checks' specs: timm's op set after a zooming crop, with jitter and erasing; torchvision's on the images as
# they are, where every op is exact arithmetic, so the two devices must agree bit for bit
CUDA_SPECS = {
    "timm": AugmentSpec(crop="rrc", randaugment_n=2, color_jitter=0.4, reprob=0.5, **CIFAR_NORM),
    "torchvision": AugmentSpec(crop="none", hflip=0.5, randaugment_n=2, randaugment_ops="torchvision",
                               randaugment_m=9, randaugment_mstd=0.0, randaugment_prob=1.0, **CIFAR_NORM),
}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("ops", list(CUDA_SPECS))
def test_cuda_matches_cpu_for_the_same_params(ops: str, cifar: Tensor) -> None:
    spec = CUDA_SPECS[ops]
    aug = BatchAugment(spec, SIZE)
    p = aug.sample(N, SIZE, SIZE, torch.Generator().manual_seed(12), "cpu")
    cpu = aug.apply(cifar, p)
    noise = None if p.erase_noise is None else p.erase_noise.cuda()
    gpu = aug.apply(cifar.cuda(), dataclasses.replace(p, erase_noise=noise))
    assert gpu.is_cuda
    assert_matches(gpu, cpu, spec, frac_off_by_one=0.0 if aug.ops is TORCHVISION else 0.01)
    again = aug(cifar.cuda(), torch.Generator().manual_seed(12))
    assert torch.equal(again, aug(cifar.cuda(), torch.Generator().manual_seed(12)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("ops", list(CUDA_SPECS))
def test_cuda_batch_never_waits_for_the_device(ops: str, cifar: Tensor) -> None:
    """No host sync while augmenting and mixing a CUDA batch: the training loop can queue the next step meanwhile."""
    aug, mix = BatchAugment(CUDA_SPECS[ops], SIZE), BatchMix(MixSpec(mixup_alpha=0.8, cutmix_alpha=1.0), 10)
    x, y = cifar.cuda(), torch.arange(N, device="cuda") % 10
    generator = torch.Generator().manual_seed(13)
    mix(aug(x, generator), y, generator)  # first calls: lazy CUDA initialisation may sync
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            mix(aug(x, generator), y, generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --- BatchMix ---------------------------------------------------------------------------------------------------


def test_mixup_matches_a_hand_computation() -> None:
    x = torch.arange(4 * 2 * 2, dtype=torch.float32).view(4, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 1])
    out, target = BatchMix(MixSpec(mixup_alpha=1.0, label_smoothing=0.1), 3).apply(x, y, MixParams(0.7, None))
    torch.testing.assert_close(out[0], 0.7 * x[0] + 0.3 * x[3])
    torch.testing.assert_close(out[1], 0.7 * x[1] + 0.3 * x[2])
    off, on = 0.1 / 3, 0.9 + 0.1 / 3  # timm: smoothing / classes off the label, the rest on it
    mine, other = 0.7 * on + 0.3 * off, 0.7 * off + 0.3 * on  # own label, the flipped partner's label
    want = torch.tensor([
        [mine, other, off],  # label 0, partner image 3 (label 1)
        [off, mine, other],  # label 1, partner image 2 (label 2)
        [off, other, mine],  # label 2, partner image 1 (label 1)
        [other, mine, off],  # label 1, partner image 0 (label 0)
    ])
    torch.testing.assert_close(target, want)
    assert torch.allclose(target.sum(1), torch.ones(4))


def test_cutmix_pastes_the_box_from_the_flipped_batch() -> None:
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    out, target = BatchMix(MixSpec(cutmix_alpha=1.0), 4).apply(x, y, MixParams(1 - 6 / 64, (2, 4, 1, 4)))
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[2:4, 1:4] = True
    assert torch.equal(out[:, :, inside], x.flip(0)[:, :, inside])
    assert torch.equal(out[:, :, ~inside], x[:, :, ~inside])
    assert target[0].tolist() == pytest.approx([1 - 6 / 64, 0, 0, 6 / 64])


def test_cutmix_lambda_is_the_clipped_box_area() -> None:
    mix = BatchMix(MixSpec(cutmix_alpha=1.0), 10)
    clipped = 0
    for seed in range(400):
        p = mix.sample(12, 16, torch.Generator().manual_seed(seed))
        assert p.box is not None
        y_lo, y_hi, x_lo, x_hi = p.box
        assert 0 <= y_lo <= y_hi <= 12 and 0 <= x_lo <= x_hi <= 16
        assert p.lam == pytest.approx(1 - (y_hi - y_lo) * (x_hi - x_lo) / (12 * 16))
        clipped += y_lo == 0 or x_lo == 0 or y_hi == 12 or x_hi == 16
    assert clipped > 50  # the correction is exercised: many boxes hit the border


def test_batch_mixing_rates_and_lambda_distribution() -> None:
    mix = BatchMix(MixSpec(mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.6, switch_prob=0.25), 10)
    params = [mix.sample(32, 32, torch.Generator().manual_seed(s)) for s in range(2000)]
    mixed = [p for p in params if p.lam != 1.0]
    assert binomial_ok(len(mixed), len(params), 0.6)
    assert binomial_ok(sum(p.box is not None for p in mixed), len(mixed), 0.25)
    lam = np.array([p.lam for p in mixed if p.box is None])  # Beta(1, 1) = U(0, 1)
    assert abs(lam.mean() - 0.5) < 0.03 and abs(lam.var() - 1 / 12) < 0.01


def test_label_smoothing_alone_leaves_the_images() -> None:
    x, y = torch.randn(5, 3, 4, 4), torch.tensor([0, 4, 2, 2, 1])
    out, target = BatchMix(MixSpec(label_smoothing=0.2), 5)(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(out, x)
    want = torch.full((5, 5), 0.04)
    want[torch.arange(5), y] = 0.84
    torch.testing.assert_close(target, want)

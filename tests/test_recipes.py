"""Named recipes and their RandAugment settings: valid as configs, mistakes named, and the same augmentation on the
device path and on the DataLoader path (harness.data.host_transform), measured on real CIFAR-10 images."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from harness.augment import BatchAugment
from harness.config import RECIPES, RecipeConfig, resolve
from harness.data import augment_spec, host_transform
from harness.schema import ConfigError

CIFAR_NPZ = Path(__file__).parent / "data" / "cifar10_jpegbytes_1k1k.npz"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGES, DRAWS = 16, 64  # augmented views: IMAGES x DRAWS per path and recipe
CIFAR_RECIPES = ["convmixer_cifar10", "convmixer_cifar10_timm"]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_named_recipe_is_a_valid_config(name: str) -> None:
    recipe = resolve({"recipe": name}).recipe
    assert recipe.name == name
    spec = augment_spec(recipe, MEAN, STD)  # the device path accepts it too
    assert (spec.randaugment_ops, spec.randaugment_m) == (recipe.randaugment_ops, recipe.randaugment_m)


def test_convmixer_cifar10_is_the_public_scripts_randaugment() -> None:
    """transforms.RandAugment(num_ops=2, magnitude=12): torchvision's op set at bin 12, every op applied."""
    recipe = resolve({"recipe": "convmixer_cifar10"}).recipe
    assert (recipe.randaugment_ops, recipe.randaugment_n, recipe.randaugment_m) == ("torchvision", 2, 12)
    assert (recipe.randaugment_prob, recipe.randaugment_mstd) == (1.0, 0.0)


@pytest.mark.parametrize("recipe,message", [
    ({"randaugment_ops": "torchvison"},
     r"config.recipe.randaugment_ops: 'torchvison' is not valid \(did you mean 'torchvision'\?\)"),
    ({"name": "convmixer_cifar10", "randaugment_m": 12.5},
     r"config.recipe.randaugment_m: torchvision's RandAugment takes a magnitude bin, an integer 0..30; got 12.5"),
    ({"name": "convmixer_cifar10", "randaugment_m": 31},
     r"config.recipe.randaugment_m: must be in \[0, 30\] on torchvision's scale, got 31"),
    ({"name": "convmixer_cifar10_timm", "randaugment_m": 12},
     r"config.recipe.randaugment_m: must be in \[0, 10\] on timm's scale, got 12"),
    ({"randaugment_ops": "torchvision", "randaugment_m": 9},
     r"config.recipe.randaugment_mstd: torchvision's RandAugment has no magnitude noise: set it to 0 \(got 0.5\)"),
    ({"randaugment_prob": 1.5}, r"config.recipe.randaugment_prob: must be a probability in \[0, 1\]"),
])
def test_bad_randaugment_settings_name_the_field(recipe: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve({"recipe": recipe})


@pytest.fixture(scope="module")
def changes() -> dict[tuple[str, str], Tensor]:
    """(recipe, "host" | "device") -> how far each augmented view is from its source: mean |difference| in grey levels,
    (IMAGES * DRAWS,). The flip is off, so that only RandAugment (and the crop, the identity here) moves pixels."""
    data = np.load(CIFAR_NPZ)
    buf, off = data["jpeg_train"], data["offsets_train"]
    picks = np.linspace(0, len(off) - 2, IMAGES).astype(int)  # the file stores the images class by class
    pils = [Image.open(io.BytesIO(buf[off[i]:off[i + 1]].tobytes())).convert("RGB") for i in picks]
    x = torch.from_numpy(np.stack([np.asarray(im) for im in pils])).permute(0, 3, 1, 2).contiguous()
    source = x.float().repeat(DRAWS, 1, 1, 1)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)

    def distance(normalised: Tensor) -> Tensor:
        return ((normalised * std + mean) * 255 - source).abs().mean((1, 2, 3))

    out = {}
    torch.manual_seed(0)  # the host transforms draw from torch's global generator
    for name in CIFAR_RECIPES:
        recipe = RecipeConfig(**{**RECIPES[name], "hflip": 0.0})
        transform = host_transform(recipe, 32, MEAN, STD)
        out[name, "host"] = distance(torch.stack([transform(im) for _ in range(DRAWS) for im in pils]))
        augment = BatchAugment(augment_spec(recipe, MEAN, STD), 32)
        out[name, "device"] = distance(augment(x.repeat(DRAWS, 1, 1, 1), torch.Generator().manual_seed(0)))
    return out


def same_distribution(a: Tensor, b: Tensor) -> bool:
    """Means of the change within 4.5 standard errors, and so are the fractions of views left (almost) unchanged."""
    se = math.sqrt(float(a.var()) / len(a) + float(b.var()) / len(b))
    ua, ub = (a < 0.5).double().mean(), (b < 0.5).double().mean()
    pooled = float(ua + ub) / 2
    se_u = math.sqrt(max(pooled * (1 - pooled), 1 / len(a)) * 2 / len(a))
    return abs(float(a.mean() - b.mean())) <= 4.5 * se and abs(float(ua - ub)) <= 4.5 * se_u


@pytest.mark.parametrize("name", CIFAR_RECIPES)
def test_the_dataloader_path_augments_as_the_device_path(name: str, changes: dict[tuple[str, str], Tensor]) -> None:
    """PIL kernels in worker processes there, batched tensor kernels here: the same ops at the same rates move the
    images as far, and leave as many unchanged; the other recipe's augmentation is told apart by the same measure."""
    assert same_distribution(changes[name, "host"], changes[name, "device"])
    other = next(r for r in CIFAR_RECIPES if r != name)
    assert not same_distribution(changes[name, "host"], changes[other, "device"])

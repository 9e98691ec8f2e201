"""A model's timm `pretrained_cfg`: the data it is shaped for (input size, statistics, crop), its token grid, and
where its first convolution and classifier are. timm's tools read it (`resolve_model_data_config`, `features_only`,
layer-wise lr decay). There is no weights URL: models of this toolkit are trained by their studies.
"""
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import PretrainedCfg

from .base import MIXERS

# locuslab/convmixer-cifar10's CIFAR-10 statistics (train split, 0..1 scale)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
CIFAR_SIZE = (32, 32)


def pretrained_cfg(mixer: str, img_size: tuple[int, int], patch_size: int, in_chans: int,
                   num_classes: int) -> dict[str, Any]:
    """The cfg of a MixerNet with these arguments, as timm's `build_model_with_cfg` gives it to a model.

    32x32 inputs are CIFAR-shaped (CIFAR-10 statistics, no crop at test time, as convmixer-cifar10 evaluates);
    anything else is ImageNet-shaped (ImageNet statistics, timm's ConvMixer crop of 0.96). For another number of
    input channels than 3, each channel gets the mean of the RGB statistics. A mixer tied to its token grid
    (`fixed_grid`) makes the input size fixed.
    """
    cifar = tuple(img_size) == CIFAR_SIZE
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if cifar else (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    if in_chans != 3:
        mean, std = (sum(mean) / 3,) * in_chans, (sum(std) / 3,) * in_chans
    return PretrainedCfg(
        input_size=(in_chans, *img_size), pool_size=(img_size[0] // patch_size, img_size[1] // patch_size),
        fixed_input_size=getattr(MIXERS.get(mixer), "fixed_grid", False), mean=tuple(mean), std=tuple(std),
        crop_pct=1.0 if cifar else 0.96, crop_mode="center", interpolation="bicubic", num_classes=num_classes,
        first_conv="stem.proj", classifier="head",
    ).to_dict()

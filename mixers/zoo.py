"""Named model variants, registered with timm so `timm.create_model(name)` builds them.

Names follow the paper's ConvMixer-h/d scheme, the block name joined to the width as the paper writes
"ConvMixer-1536/20": `{mixer}_{block}{h}_{d}[_ks{k}]_p{p}`, e.g. `dwconv_convmixer1536_20_ks9_p7` (= timm's
`convmixer_1536_20`) or `attention_metaformer256_8_p2`. The kernel size appears only for mixers that use one.

timm's model tests sort models by name: names matching its non-standard patterns (`*mixer_*` is meant for
MLP-Mixer's token-sequence models, and catches `convmixer_...` too) get looser checks. These models are NCHW convnets
with standard features (a feature map at `pool_size`, `global_pool=''`, one feature per block), so their names keep
clear of those patterns and they take the standard checks; `tests/test_timm_suite.py` checks both.

Each variant has a `pretrained_cfg` (`mixers.cfg`) and is built through timm's `build_model_with_cfg`, so
`features_only=True` (default: the last 3 blocks, through `forward_intermediates`; any of timm's `feature_cls`) and
`out_indices` work. Any
MixerNet argument can still be passed to `create_model`. Importing this module imports timm (seconds); the rest of
`mixers` loads it only with the model.
"""
from typing import Any, Callable

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .base import MIXERS, hyperparameters
from .blocks import BLOCKS
from .cfg import pretrained_cfg
from .model import MixerNet

# (h, d, k, p, act, ImageNet or CIFAR-10 shape): the paper's ImageNet models, as timm names them, and the
# convmixer-cifar10 default
SIZES: list[tuple[int, int, int, int, str, dict[str, int]]] = [
    (1536, 20, 9, 7, "gelu", dict(num_classes=1000, img_size=224)),
    (768, 32, 7, 7, "relu", dict(num_classes=1000, img_size=224)),
    (1024, 20, 9, 14, "gelu", dict(num_classes=1000, img_size=224)),
    (256, 8, 5, 2, "gelu", dict(num_classes=10, img_size=32)),
]


def variant_name(mixer: str, block: str, dim: int, depth: int, kernel_size: int, patch_size: int) -> str:
    uses_kernel = "kernel_size" in hyperparameters(MIXERS.get(mixer))
    ks = f"_ks{kernel_size}" if uses_kernel else ""
    return f"{mixer}_{block}{dim}_{depth}{ks}_p{patch_size}"


def _entrypoint(name: str, defaults: dict[str, Any]) -> Callable[..., MixerNet]:
    def create(pretrained: bool = False, **kwargs: Any) -> MixerNet:
        if pretrained:
            raise ValueError(f"{name} has no pretrained weights of its own; for timm's ConvMixer weights use "
                             f"mixers.timm_compat.convert_timm_convmixer")
        # flatten_sequential: timm's list and dict feature classes then find the blocks inside `blocks`
        features = dict(out_indices=3, feature_cls="getter", flatten_sequential=True)
        return build_model_with_cfg(MixerNet, name, pretrained, feature_cfg=features, **{**defaults, **kwargs})

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"MixerNet({', '.join(f'{k}={v!r}' for k, v in defaults.items())})"
    return create


VARIANTS: dict[str, dict[str, Any]] = {
    variant_name(mixer, block, dim, depth, k, p): dict(mixer=mixer, block=block, dim=dim, depth=depth, kernel_size=k,
                                                       patch_size=p, act=act, **shape)
    for mixer in MIXERS for block in BLOCKS for dim, depth, k, p, act, shape in SIZES}

# timm's register_model reads the module's `default_cfgs`, so they exist before the entrypoints are registered
default_cfgs = generate_default_cfgs({
    name: pretrained_cfg(v["mixer"], (v["img_size"], v["img_size"]), v["patch_size"], 3, v["num_classes"])
    for name, v in VARIANTS.items()})
for _name, _defaults in VARIANTS.items():
    register_model(_entrypoint(_name, _defaults))

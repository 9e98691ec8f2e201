"""Named model variants, registered with timm so `timm.create_model(name)` builds them.

Names follow the paper's ConvMixer-h/d scheme: `{mixer}_{block}_{h}_{d}[_ks{k}]_p{p}`, e.g.
`dwconv_convmixer_1536_20_ks9_p7` (= timm's `convmixer_1536_20`) or `attention_metaformer_256_8_p2`. The kernel
size appears only for mixers that use one. Any MixerNet argument can still be passed to `create_model`.
Importing this module imports timm (several seconds); the rest of `mixers` does not.
"""
from __future__ import annotations

from typing import Any, Callable

from timm.models import register_model

from .base import MIXERS, hyperparameters
from .blocks import BLOCKS
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
    return f"{mixer}_{block}_{dim}_{depth}{ks}_p{patch_size}"


def _entrypoint(name: str, defaults: dict[str, Any]) -> Callable[..., MixerNet]:
    def create(pretrained: bool = False, **kwargs: Any) -> MixerNet:
        if pretrained:
            raise ValueError(f"{name} has no pretrained weights of its own; for timm's ConvMixer weights use "
                             f"mixers.timm_compat.convert_timm_convmixer")
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        return MixerNet(**{**defaults, **kwargs}).to(device=device, dtype=dtype)

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"MixerNet({', '.join(f'{k}={v!r}' for k, v in defaults.items())})"
    return create


VARIANTS: dict[str, dict[str, Any]] = {}
for _mixer in MIXERS:
    for _block in BLOCKS:
        for _dim, _depth, _k, _p, _act, _shape in SIZES:
            _name = variant_name(_mixer, _block, _dim, _depth, _k, _p)
            VARIANTS[_name] = dict(mixer=_mixer, block=_block, dim=_dim, depth=_depth, kernel_size=_k,
                                   patch_size=_p, act=_act, **_shape)
            register_model(_entrypoint(_name, VARIANTS[_name]))

"""Loading timm's ConvMixer weights into MixerNet(mixer="dwconv", block="convmixer").

timm's `convmixer_*` models are nested `nn.Sequential`s; MixerNet names the same layers. The mapping is exact:
with it, both models hold the same tensors and compute the same outputs.
"""
from __future__ import annotations

import re

import torch

# timm key pattern -> MixerNet key
_KEY_MAP = [
    (r"^stem\.0\.", "stem.proj."),
    (r"^stem\.2\.", "stem.norm."),
    (r"^blocks\.(\d+)\.0\.fn\.0\.", r"blocks.\1.token_mixer.conv."),
    (r"^blocks\.(\d+)\.0\.fn\.2\.", r"blocks.\1.norm1."),
    (r"^blocks\.(\d+)\.1\.", r"blocks.\1.pwconv."),
    (r"^blocks\.(\d+)\.3\.", r"blocks.\1.norm2."),
    (r"^head\.", "head."),
]


def convert_timm_convmixer(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a timm ConvMixer state dict to MixerNet's keys; an unexpected key raises."""
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _KEY_MAP:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise KeyError(f"no MixerNet equivalent for timm ConvMixer key {key!r}")
    return out

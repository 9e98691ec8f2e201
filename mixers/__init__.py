"""The model zoo: token mixers on one patchify stem, two block skeletons, one model builder.

The names below are imported on first use (PEP 562), so `import mixers` and `mixers.registry` cost nothing and
tools that only validate configs never import torch. `import mixers.zoo` registers the named variants with timm
(it imports timm, which is slow to import).
"""
from importlib import import_module
from typing import Any

_EXPORTS = {
    "MIXERS": "base", "TokenGridError": "base", "ToTokens": "base", "create_mixer": "base", "register_mixer": "base",
    "BLOCKS": "blocks", "ConvMixerBlock": "blocks", "MetaFormerBlock": "blocks",
    "ACTIVATIONS": "layers", "NORMS": "layers",
    "MixerNet": "model",
    "Registry": "registry", "UnknownNameError": "registry",
    "PatchStem": "stem",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)

"""The model zoo: token mixers on one patchify stem, two block skeletons, one model builder.

Every mixer module below registers itself on import; a new mixer is one file plus one import line here.
`import mixers.zoo` registers the named variants with timm (it imports timm, which is slow to import).
"""
from . import attention, conv, fourier, identity, mlp, pooling, random_mixing  # noqa: F401  (registration)
from .base import MIXERS, TokenGridError, ToTokens, create_mixer, register_mixer
from .blocks import BLOCKS, ConvMixerBlock, MetaFormerBlock
from .layers import ACTIVATIONS, NORMS
from .model import MixerNet
from .registry import Registry, UnknownNameError
from .stem import PatchStem

__all__ = [
    "ACTIVATIONS", "BLOCKS", "MIXERS", "NORMS", "ConvMixerBlock", "MetaFormerBlock", "MixerNet", "PatchStem",
    "Registry", "TokenGridError", "ToTokens", "UnknownNameError", "create_mixer", "register_mixer",
]

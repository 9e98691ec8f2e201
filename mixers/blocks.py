"""The two block skeletons any token mixer goes into.

A block is built from `(dim, token_mixer, act_layer, **its own hyper-parameters)`. `head_norm(dim)` gives the
channel norm a model with these blocks applies to its pooled features (none for ConvMixer, as in the paper).
"""
import torch
from torch import nn

from .layers import NORMS, LayerNorm2d, drop_path, layer_scale
from .registry import Registry

BLOCKS: Registry[type[nn.Module]] = Registry("block")


@BLOCKS.register("convmixer")
class ConvMixerBlock(nn.Module):
    """Residual(mixer -> act -> BN), then pointwise conv -> act -> BN (the channel part has no skip)."""

    def __init__(self, dim: int, token_mixer: nn.Module, act_layer: type[nn.Module], drop_path_rate: float = 0.0):
        super().__init__()
        self.token_mixer = token_mixer
        self.act1 = act_layer()
        self.norm1 = nn.BatchNorm2d(dim)
        self.drop_path = drop_path(drop_path_rate)
        self.pwconv = nn.Conv2d(dim, dim, kernel_size=1)
        self.act2 = act_layer()
        self.norm2 = nn.BatchNorm2d(dim)

    @staticmethod
    def head_norm(dim: int) -> nn.Module:
        return nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.norm1(self.act1(self.token_mixer(x))))
        return self.norm2(self.act2(self.pwconv(x)))


class ConvMlp(nn.Module):
    """The channel MLP as two pointwise convolutions: dim -> mlp_ratio * dim -> dim."""

    def __init__(self, dim: int, mlp_ratio: float, act_layer: type[nn.Module]):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@BLOCKS.register("metaformer")
class MetaFormerBlock(nn.Module):
    """x + mixer(norm(x)), then x + MLP(norm(x)), each branch with optional layer scale and drop path."""

    def __init__(self, dim: int, token_mixer: nn.Module, act_layer: type[nn.Module], drop_path_rate: float = 0.0,
                 mlp_ratio: float = 4.0, norm: str = "layernorm", layer_scale_init: float | None = None):
        super().__init__()
        norm_layer = NORMS.get(norm)
        self.norm1 = norm_layer(dim)
        self.token_mixer = token_mixer
        self.scale1 = layer_scale(dim, layer_scale_init)
        self.drop_path1 = drop_path(drop_path_rate)
        self.norm2 = norm_layer(dim)
        self.mlp = ConvMlp(dim, mlp_ratio, act_layer)
        self.scale2 = layer_scale(dim, layer_scale_init)
        self.drop_path2 = drop_path(drop_path_rate)

    @staticmethod
    def head_norm(dim: int) -> nn.Module:
        return LayerNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.scale1(self.token_mixer(self.norm1(x))))
        return x + self.drop_path2(self.scale2(self.mlp(self.norm2(x))))

"""The isotropic model every cell of a study trains: shared patchify stem, d blocks of one skeleton, pooled head.

Only the token mixer (and, where asked, the block skeleton) changes between cells. The methods follow timm's
conventions (`forward_features`, `forward_head(pre_logits=...)`, `reset_classifier`, `get_classifier`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import MIXERS, MODEL_PROVIDED, check_kwargs, create_mixer, hyperparameters
from .blocks import BLOCKS
from .layers import ACTIVATIONS
from .stem import PatchStem

BLOCK_PROVIDED = ("token_mixer", "act_layer", "drop_path_rate")


class MixerNet(nn.Module):
    def __init__(
            self,
            mixer: str = "dwconv",
            block: str = "convmixer",
            dim: int = 256,
            depth: int = 8,
            patch_size: int = 2,
            kernel_size: int = 5,
            act: str = "gelu",
            num_classes: int = 10,
            in_chans: int = 3,
            img_size: int | tuple[int, int] = 32,
            mixer_kwargs: dict[str, Any] | None = None,
            block_kwargs: dict[str, Any] | None = None,
            drop_path_rate: float = 0.0,
            drop_rate: float = 0.0,
    ):
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if patch_size > min(img_size):
            raise ValueError(f"patch_size {patch_size} is larger than the image ({img_size[0]}x{img_size[1]})")
        grid = (img_size[0] // patch_size, img_size[1] // patch_size)
        mixer_cls, block_cls, act_layer = MIXERS.get(mixer), BLOCKS.get(block), ACTIVATIONS.get(act)
        mixer_kwargs, block_kwargs = dict(mixer_kwargs or {}), dict(block_kwargs or {})
        check_kwargs(mixer_cls, mixer_kwargs, f"mixer {mixer!r}", reserved=MODEL_PROVIDED)
        check_kwargs(block_cls, block_kwargs, f"block {block!r}", reserved=BLOCK_PROVIDED)
        provided = {"kernel_size": kernel_size, "grid_size": grid}
        mixer_kwargs.update({k: v for k, v in provided.items() if k in hyperparameters(mixer_cls)})

        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = dim
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.img_size = img_size
        self.stem = PatchStem(in_chans, dim, patch_size, act_layer)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth grows with depth
        self.blocks = nn.Sequential(*[
            block_cls(dim, token_mixer=create_mixer(mixer, dim, **mixer_kwargs), act_layer=act_layer,
                      drop_path_rate=rates[i], **block_kwargs)
            for i in range(depth)])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head_norm = block_cls.head_norm(dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))  # (B, in_chans, H, W) -> (B, dim, H/p, W/p)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.head_norm(self.pool(x)))  # (B, dim, h, w) -> (B, dim)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, "avg"):
            raise ValueError(f"only average pooling is supported, got global_pool={global_pool!r}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

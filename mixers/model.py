"""The isotropic model every cell of a study trains: shared patchify stem, d blocks of one skeleton, pooled head.

Only the token mixer (and, where asked, the block skeleton) changes between cells. The model keeps timm's model
contract, so timm's tools take it as they take timm's own models (its `tests/test_models.py` passes on the zoo):
`pretrained_cfg`, `forward_features` / `forward_head(pre_logits=...)`, `reset_classifier(num_classes, global_pool)`,
`forward_intermediates` / `prune_intermediate_layers` / `feature_info` (one feature per block, as timm's
ConvMixer and ViT), `set_grad_checkpointing`, `group_matcher` (layer-wise lr decay) and `no_weight_decay`.
"""
import contextlib
from typing import Any, Optional, Union

import torch
from timm.layers import SelectAdaptivePool2d, get_device_dtype
from timm.layers.adaptive_avgmax_pool import adaptive_pool_feat_mult
from timm.models import checkpoint, checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from .base import MIXERS, MODEL_PROVIDED, check_kwargs, create_mixer, hyperparameters
from .blocks import BLOCKS
from .cfg import pretrained_cfg
from .layers import ACTIVATIONS
from .stem import PatchStem

BLOCK_PROVIDED = ("token_mixer", "act_layer", "drop_path_rate")
# timm's pool types (SelectAdaptivePool2d); '' keeps the (B, C, H, W) map
GLOBAL_POOLS = ("avg", "max", "avgmax", "catavgmax", "fast", "fastavg", "fastmax", "fastavgmax", "fastcatavgmax", "")
# their parameters are scales and shifts of normalised activations: weight decay would only bias them to zero
NORM_LAYERS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm)


class MixerNet(nn.Module):
    """Patchify stem -> `depth` blocks of width `dim` -> global pool -> head norm -> dropout -> linear classifier.

    `global_pool` is any of timm's pool types ('' keeps the feature map); `device` and `dtype` are where and in what
    float type the parameters are created (timm's `create_model(..., device=, dtype=)`).
    """

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
            global_pool: str = "avg",
            device: torch.device | str | None = None,
            dtype: torch.dtype | None = None,
    ):
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))
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
        self.grad_checkpointing = False
        self.feature_info = [dict(num_chs=dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
        self.pretrained_cfg = self.default_cfg = pretrained_cfg(mixer, img_size, patch_size, in_chans, num_classes)
        with torch.device(device) if device is not None else contextlib.nullcontext():
            self.stem = PatchStem(in_chans, dim, patch_size, act_layer)
            rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth grows with depth
            self.blocks = nn.Sequential(*[
                block_cls(dim, token_mixer=create_mixer(mixer, dim, **mixer_kwargs), act_layer=act_layer,
                          drop_path_rate=rates[i], **block_kwargs)
                for i in range(depth)])
            self.head_norm = block_cls.head_norm(dim)
            self.head_drop = nn.Dropout(drop_rate)
            self.reset_classifier(num_classes, global_pool)
        self.to(dtype=dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, in_chans, H, W) -> (B, dim, H/p, W/p)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)  # keeps only each block's input; recomputes the block in backward
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.flatten(self.head_norm(self.global_pool(x))))  # (B, dim, h, w) -> (B, dim)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, list[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[list[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]:
        """The outputs of the blocks in `indices` (int n: the last n; None: all), and the final features.

        norm: apply the head's channel norm to each (MetaFormer's LayerNorm; ConvMixer has none).
        stop_early: run no block after the last one asked for (the final features are then that block's output).
        output_fmt: 'NCHW' or 'NHWC'.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got '{output_fmt}'")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        x = self.stem(x)
        if torch.jit.is_scripting() or not stop_early:  # TorchScript cannot slice a Sequential
            blocks = self.blocks
        else:
            blocks = self.blocks[:max_index + 1]
        intermediates = []
        for i, blk in enumerate(blocks):
            x = checkpoint(blk, x) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x)
            if i in take_indices:
                y = self.head_norm(x) if norm else x
                intermediates.append(y.permute(0, 2, 3, 1) if output_fmt == "NHWC" else y)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the blocks after the last of `indices` (and the head norm, the classifier); returns the indices."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        if prune_norm:
            self.head_norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for `num_classes` (0: none, the model returns its pooled features); a new pool if
        `global_pool` is given. New layers match the model's device, dtype and train/eval mode."""
        dd = get_device_dtype(self)
        if global_pool is not None:
            if global_pool not in GLOBAL_POOLS:
                raise ValueError(f"global_pool '{global_pool}' is not a pool type; valid: "
                                 f"{', '.join(repr(p) for p in GLOBAL_POOLS)}")
            if adaptive_pool_feat_mult(global_pool) != 1 and not isinstance(self.head_norm, nn.Identity):
                raise ValueError(f"global_pool '{global_pool}' concatenates two poolings, but the head norm takes "
                                 f"{self.num_features} channels; valid here: any pool type without 'cat'")
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool).train(self.training)
            self.flatten = (nn.Flatten(1) if global_pool else nn.Identity()).train(self.training)
        self.num_classes = num_classes
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        head = nn.Linear(self.head_hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head = head.train(self.training)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint every block in training: activations inside a block are recomputed in backward, not kept.

        BatchNorm layers inside a block see its recomputation too, so their running statistics are updated twice
        per step (timm's ConvMixer behaves the same)."""
        self.grad_checkpointing = enable

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Parameter groups from input to output for layer-wise lr decay: the stem, each block, the head (its norm
        and classifier). `coarse` is timm's interface; an isotropic model has the same groups either way."""
        return dict(stem=r"^stem", blocks=r"^blocks\.(\d+)", head=r"^head")

    def no_weight_decay(self) -> set[str]:
        """Parameters that weight decay would only pull towards zero: biases, norm scales and shifts, and what a
        module names in its own `no_weight_decay()` (position embeddings, global filters, layer scales)."""
        names = set()
        for prefix, module in self.named_modules():
            listed = module.no_weight_decay() if module is not self and hasattr(module, "no_weight_decay") else set()
            for name, _ in module.named_parameters(recurse=False):
                if name == "bias" or name in listed or isinstance(module, NORM_LAYERS):
                    names.add(f"{prefix}.{name}" if prefix else name)
        return names

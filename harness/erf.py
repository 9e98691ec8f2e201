"""The effective receptive field of a model (Luo et al., 2016): how much each input pixel moves the centre of the
last block's feature map.

For a batch of real images, the centre position of `forward_features`' (B, C, h, w) map is summed over channels and
differentiated with respect to the input; the gradient's absolute value is summed over input channels and averaged
over the batch, giving one (H, W) map. A run computes it at initialisation and after training (`erf.npz`, arrays
`init` and `trained`); the analysis draws both per mixer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

ERF_IMAGES = 64  # one batch: the maps of 64 images are smooth enough to compare mixers


def effective_receptive_field(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """The (H, W) map of `images` (B, C, H, W), in eval mode and fp32; the model's training mode is restored."""
    was_training = model.training
    model.eval()
    try:
        x = images.detach().float().contiguous().requires_grad_(True)
        with torch.enable_grad():
            features = model.forward_features(x)  # type: ignore[operator]  # (B, C, h, w): every MixerNet
            h, w = features.shape[-2:]
            # Each image's centre depends on that image alone (eval mode), so one backward gives every image's gradient.
            features[:, :, h // 2, w // 2].sum().backward()
        assert x.grad is not None
        grad = x.grad.abs().sum(1).mean(0)  # (H, W)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return grad.cpu().numpy().astype(np.float32)


def erf_images(loader: Iterable[Any]) -> torch.Tensor:
    """The first ERF_IMAGES images of an evaluation loader (normalised, not augmented)."""
    x, _, _ = next(iter(loader))
    return x[:ERF_IMAGES]


def save_erf(path: Path, init: np.ndarray, trained: np.ndarray) -> None:
    """erf.npz, written whole or not at all (a temporary file renamed over it)."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, init=init, trained=trained)
    tmp.replace(path)

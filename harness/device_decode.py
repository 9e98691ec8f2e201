"""JPEG decoding on the device for the DataLoader path (`data.decode: device`).

The workers only read each file's bytes; a batch of encoded JPEGs goes to the device, where
`torchvision.io.decode_jpeg` decodes it in one call (nvJPEG's batched decoder on CUDA, libjpeg-turbo on the CPU) and
the crop, resize, flip, RandAugment, normalisation and erasing run on the batch. On a GPU this takes the decode, the
costliest per-image step of an ImageNet input pipeline, off the CPU workers.

Training follows timm's train transform: a RandomResizedCrop box drawn for each image on its own size (torchvision's
`get_params` rule, `harness.augment.rrc_boxes`), cut and resized to S x S (bilinear, antialiased), then the rest of the
recipe by `BatchAugment` on the stacked batch. Evaluation follows timm's eval transform at crop_pct 1 (the host path's):
the shorter side resized to S, the centre S x S, normalised. Recipes without a random resized crop (`crop: translate |
none`) get the centre square before `BatchAugment` does their own crop.
"""
from __future__ import annotations

import dataclasses

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg

from .augment import AugmentSpec, BatchAugment, normalize, rrc_boxes


class DeviceDecode:
    """A batch of encoded JPEGs (1-D uint8 CPU tensors) -> normalised float32 (B, 3, S, S) on `device`."""

    def __init__(self, device: torch.device, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 augment: AugmentSpec | None = None):
        self.device, self.size, self.mean, self.std = device, size, mean, std
        self.augment: BatchAugment | None = None
        self.rrc: tuple[tuple[float, float], tuple[float, float]] | None = None  # (scale, ratio) of a per-image crop
        if augment is not None:
            if augment.crop == "rrc":  # cropped per image here, before the batch exists
                self.rrc = (augment.scale, augment.ratio)
                augment = dataclasses.replace(augment, crop="none")
            self.augment = BatchAugment(augment, size)

    def __call__(self, encoded: list[Tensor], generator: torch.Generator | None = None) -> Tensor:
        """`generator` (a CPU one) draws every random parameter; evaluation needs none."""
        images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)  # grey and CMYK files as RGB too
        if self.augment is None:
            return normalize(torch.stack([self._centre(img) for img in images]), self.mean, self.std)
        if generator is None:
            raise ValueError("DeviceDecode with augmentation needs a CPU torch.Generator")
        crops = [self._centre(img) if self.rrc is None else self._random_crop(img, *self.rrc, generator)
                 for img in images]
        return self.augment(torch.stack(crops), generator)

    def _centre(self, img: Tensor) -> Tensor:
        return F.center_crop(F.resize(img, [self.size], antialias=True), [self.size, self.size])

    def _random_crop(self, img: Tensor, scale: tuple[float, float], ratio: tuple[float, float],
                     generator: torch.Generator) -> Tensor:
        top, left, height, width = rrc_boxes(1, img.shape[1], img.shape[2], scale, ratio, generator)[0].tolist()
        return F.resized_crop(img, top, left, height, width, size=[self.size, self.size], antialias=True)

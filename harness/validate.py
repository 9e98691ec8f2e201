"""Checks of a run config that need the registries: everything that can fail is tried before any training starts.

`check_data` needs no torch; `check_model` builds the model on the meta device (no memory, no time), so a bad mixer
hyper-parameter, an attention width that the heads do not divide or a patch larger than the image is reported here,
with the key path, and not an hour into a cluster job.
"""
from __future__ import annotations

from .config import RunConfig
from .datasets import DATASETS, DatasetError, Geometry, create_dataset
from .schema import ConfigError


class ModelConfigError(ConfigError):
    """A model or data setting that the registries or the model builder reject."""


def check_data(cfg: RunConfig, path: str = "config") -> Geometry:
    if cfg.data.dataset not in DATASETS:
        raise ModelConfigError(f"{path}.data.dataset: {DATASETS.unknown_message(cfg.data.dataset)}")
    try:
        dataset = create_dataset(cfg.data.dataset, cfg.data.root, **cfg.data.options)
        dataset.check()
        geometry = dataset.geometry()
    except DatasetError as e:
        raise ModelConfigError(f"{path}.data: {e}") from None
    return Geometry(geometry.channels, cfg.data.image_size or geometry.image_size, geometry.num_classes)


def check_model(cfg: RunConfig, geometry: Geometry, path: str = "config") -> None:
    import torch

    from mixers import ACTIVATIONS, BLOCKS, MIXERS
    from mixers.registry import UnknownNameError

    from .train import build_model
    m = cfg.model
    for key, registry in (("mixer", MIXERS), ("block", BLOCKS), ("act", ACTIVATIONS)):
        if getattr(m, key) not in registry:
            raise ModelConfigError(f"{path}.model.{key}: {registry.unknown_message(getattr(m, key))}")
    if m.patch_size > geometry.image_size:
        raise ModelConfigError(f"{path}.model.patch_size: {m.patch_size} is larger than the images "
                               f"({geometry.image_size}x{geometry.image_size} for {cfg.data.dataset}); valid: 1 to "
                               f"{geometry.image_size}")
    try:
        with torch.device("meta"):
            build_model(cfg, geometry.channels, geometry.num_classes, geometry.image_size)
    except (ValueError, UnknownNameError) as e:
        raise ModelConfigError(f"{path}.model: {e}") from None


def check_run(cfg: RunConfig, path: str = "config") -> Geometry:
    geometry = check_data(cfg, path)
    check_model(cfg, geometry, path)
    return geometry

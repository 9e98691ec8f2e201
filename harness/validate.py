"""Checks of a run config that need the registries: everything that can fail is tried before any training starts.

`check_data` needs no torch; `check_model` builds the model on the meta device (no memory, no time), so a bad mixer
hyper-parameter, an attention width that the heads do not divide or a patch larger than the image is reported here,
with the key path, and not an hour into a cluster job.
"""
from __future__ import annotations

import math
import sys

from .config import RunConfig
from .datasets import DATASETS, DatasetError, Geometry, create_dataset
from .schema import ConfigError


class ModelConfigError(ConfigError):
    """A model or data setting that the registries or the model builder reject."""


def check_data(cfg: RunConfig, path: str = "config", download: bool = True) -> Geometry:
    """The data's geometry, its files checked; `download=False` (a dry run) leaves files to be downloaded alone."""
    if cfg.data.dataset not in DATASETS:
        raise ModelConfigError(f"{path}.data.dataset: {DATASETS.unknown_message(cfg.data.dataset)}")
    try:
        dataset = create_dataset(cfg.data.dataset, cfg.data.root, **cfg.data.options)
        if download or not dataset.needs_download():
            dataset.check()
        else:
            print(f"note: {cfg.data.dataset} is not in {dataset.root} yet; it is downloaded when a cell runs",
                  file=sys.stderr)
        geometry = dataset.geometry()
    except DatasetError as e:
        raise ModelConfigError(f"{path}.data: {e}") from None
    return Geometry(geometry.channels, cfg.data.image_size or geometry.image_size, geometry.num_classes)


# what the model passes to every mixer that names it: set as model.<key>, never in mixer_kwargs
MODEL_FILLED = {"kernel_size": "model.kernel_size", "grid_size": "data.image_size / model.patch_size"}
# bytes per parameter while training: fp32 weights, gradients and AdamW's two moments
TRAIN_BYTES_PER_PARAM = 16


def train_split_size(cfg: RunConfig) -> int | None:
    """Images this config trains on (after the validation hold-out and data.train_limit), where the dataset knows its
    size without reading its files."""
    known = create_dataset(cfg.data.dataset, cfg.data.root, **cfg.data.options).known_train_size
    if known is not None:  # StratifiedShuffleSplit holds out ceil(n * val_fraction) images
        known -= math.ceil(known * cfg.data.val_fraction)
    sizes = [n for n in (known, cfg.data.train_limit) if n is not None]
    return min(sizes) if sizes else None


def check_batch(cfg: RunConfig, path: str = "config") -> None:
    """A training batch no larger than the training split (an epoch would have no step)."""
    n = train_split_size(cfg)
    if n is not None and cfg.recipe.batch_size > n and not cfg.bench.only:
        limit = " (data.train_limit)" if n == cfg.data.train_limit else ""
        raise ModelConfigError(f"{path}.recipe.batch_size: {cfg.recipe.batch_size} is larger than the training split "
                               f"of {cfg.data.dataset}, {n} images{limit}; valid: 1 to {n}")


def check_device(cfg: RunConfig, path: str = "config") -> None:
    """system.device names a device this machine has (only where the run executes here)."""
    import torch
    name = cfg.system.device
    if name in ("auto", "cpu"):
        return
    count = torch.cuda.device_count()
    if count == 0:
        raise ModelConfigError(f"{path}.system.device: {name!r}, but torch {torch.__version__} sees no CUDA device "
                               f"on this machine; valid here: auto, cpu")
    try:
        index = torch.device(name).index
    except RuntimeError:
        raise ModelConfigError(f"{path}.system.device: {name!r} is not a device name; valid: auto, cpu, cuda, "
                               f"cuda:0 to cuda:{count - 1}") from None
    if index is not None and index >= count:
        raise ModelConfigError(f"{path}.system.device: {name!r}, but this machine has {count} CUDA devices; valid: "
                               f"cuda:0 to cuda:{count - 1}")


def device_memory(cfg: RunConfig) -> tuple[str, int]:
    """(device, bytes of memory) where this config would train on this machine."""
    import os

    import torch
    name = cfg.system.device
    if name != "cpu" and torch.cuda.is_available():
        device = torch.device("cuda" if name == "auto" else name)
        return str(device), torch.cuda.get_device_properties(device).total_memory
    return "cpu", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(cfg: RunConfig, geometry: Geometry, params: int, path: str = "config") -> None:
    """Refuse a model whose training needs more memory than the device has: parameters x 16 bytes plus the
    activations of one batch (about 8 tensors of the block width per token and block, fp32): an estimate, shown."""
    device, total = device_memory(cfg)
    tokens = (geometry.image_size // cfg.model.patch_size) ** 2
    activations = 4 * 8 * cfg.recipe.batch_size * cfg.model.dim * tokens * cfg.model.depth
    need = TRAIN_BYTES_PER_PARAM * params + activations
    if need > total:
        raise ModelConfigError(f"{path}.model: training needs about {need / 2**30:,.1f} GiB ({params / 1e6:,.1f}M "
                               f"parameters x {TRAIN_BYTES_PER_PARAM} B + {activations / 2**30:,.1f} GiB of "
                               f"activations at batch {cfg.recipe.batch_size}), more than the {total / 2**30:,.1f} GiB "
                               f"of {device}; use a smaller model.dim/depth or batch")


def check_model(cfg: RunConfig, geometry: Geometry, path: str = "config") -> int:
    """Build the model on the meta device; its parameter count, or a ModelConfigError naming the key."""
    import torch

    from mixers import ACTIVATIONS, BLOCKS, MIXERS
    from mixers.registry import UnknownNameError
    from mixers.summary import count_params

    from .train import build_model
    m = cfg.model
    for key, registry in (("mixer", MIXERS), ("block", BLOCKS), ("act", ACTIVATIONS)):
        if getattr(m, key) not in registry:
            raise ModelConfigError(f"{path}.model.{key}: {registry.unknown_message(getattr(m, key))}")
    if m.patch_size > geometry.image_size:
        raise ModelConfigError(f"{path}.model.patch_size: {m.patch_size} is larger than the images "
                               f"({geometry.image_size}x{geometry.image_size} for {cfg.data.dataset}); valid: 1 to "
                               f"{geometry.image_size}")
    for key in m.mixer_kwargs:
        if key in MODEL_FILLED:
            raise ModelConfigError(f"{path}.model.mixer_kwargs.{key}: set by the model for every mixer that takes it; "
                                   f"set {MODEL_FILLED[key]} instead")
    try:
        with torch.device("meta"):
            model = build_model(cfg, geometry.channels, geometry.num_classes, geometry.image_size)
    except (ValueError, UnknownNameError) as e:
        raise ModelConfigError(f"{path}.model: {e}") from None
    except (TypeError, ZeroDivisionError, RuntimeError) as e:  # a hyper-parameter the mixer does not check itself
        raise ModelConfigError(f"{path}.model: the {m.mixer} mixer in {m.block} blocks cannot be built with "
                               f"mixer_kwargs {m.mixer_kwargs}, block_kwargs {m.block_kwargs}: {e}") from None
    return count_params(model)


def check_run(cfg: RunConfig, path: str = "config") -> Geometry:
    """Everything about a run that trains on this machine, before anything is written."""
    geometry = check_data(cfg, path)
    check_batch(cfg, path)
    check_device(cfg, path)
    check_memory(cfg, geometry, check_model(cfg, geometry, path), path)
    return geometry

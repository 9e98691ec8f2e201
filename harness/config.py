"""The typed, validated config of one run, and how it is resolved from files, named recipes and overrides.

A run config has five sections (model, data, recipe, system, bench) and a seed. The recipe may be given by name
(`recipe: convmixer_cifar10`) or as a mapping with an optional `name` whose fields override the named recipe's.
`run_id` is a stable hash of the resolved config (`harness.identity`: settings the model does not use left out):
the same cell always gets the same id.
"""
from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .identity import run_id
from .recipes import RECIPES
from .schema import ConfigError, check, did_you_mean, get_dotted, parse, set_dotted, to_dict
from .yamlio import load_file


@dataclass(frozen=True)
class ModelConfig:
    mixer: str = "dwconv"
    block: str = "convmixer"        # convmixer | metaformer
    dim: int = 256                  # h, the width
    depth: int = 8                  # d, the number of blocks
    patch_size: int = 2             # p
    kernel_size: int = 5            # k, for mixers that use one (dwconv, pool)
    act: str = "gelu"
    mixer_kwargs: dict[str, Any] = field(default_factory=dict)  # the mixer's own hyper-parameters
    block_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. mlp_ratio, norm, layer_scale_init
    drop_path_rate: float = 0.0
    drop_rate: float = 0.0          # dropout before the classifier

    def __post_init__(self) -> None:
        for name, top in (("dim", 2 ** 16), ("depth", 1024), ("patch_size", 1024), ("kernel_size", 1024)):
            check(1 <= getattr(self, name) <= top, name, f"must be 1 to {top:,}, got {getattr(self, name):,}")
        check(0.0 <= self.drop_path_rate < 1.0, "drop_path_rate", "must be in [0, 1)")
        check(0.0 <= self.drop_rate < 1.0, "drop_rate", "must be in [0, 1)")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    root: str | None = None         # where the dataset's files are (None: the dataset's default place)
    image_size: int | None = None   # resize to this side (None: the dataset's own size)
    loader: Literal["auto", "device", "dataloader"] = "auto"  # auto: keep the data on the device when it fits
    num_workers: int = 4            # DataLoader path only: worker processes per rank (torch's DataLoader name)
    prefetch_factor: int = 2        # DataLoader path with workers: batches each worker prepares ahead (torch's default)
    decode: Literal["host", "device"] = "host"  # imagefolder only: JPEGs decoded by the workers, or on the device
    train_limit: int | None = None  # use only N training images (drawn with data_seed, after the validation split)
    val_fraction: float = 0.1       # held out of the training split, stratified, for every selection (0: none)
    data_seed: int = 0              # fixes the validation split and train_limit: the same for every cell of a study
    options: dict[str, Any] = field(default_factory=dict)  # the dataset's own options (e.g. synthetic's shape)

    def __post_init__(self) -> None:
        check(self.image_size is None or self.image_size >= 1, "image_size", "must be >= 1")
        check(self.train_limit is None or self.train_limit >= 1, "train_limit", "must be >= 1")
        check(self.num_workers >= 0, "num_workers", "must be >= 0")
        check(self.prefetch_factor >= 1, "prefetch_factor", f"must be >= 1, got {self.prefetch_factor}")
        check(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")


# RandAugment op set (harness/randaugment.py) -> the top of its magnitude scale: timm's level 0..10, or one of
# torchvision's 31 magnitude bins 0..30. A recipe's randaugment_m is on its op set's own scale, never converted.
RANDAUGMENT_MAX_MAGNITUDE = {"timm": 10.0, "torchvision": 30.0}


def check_randaugment(ops: str, magnitude: float, mstd: float) -> None:
    """A RandAugment magnitude valid for its op set (RecipeConfig's rule, also harness.augment.AugmentSpec's)."""
    top = RANDAUGMENT_MAX_MAGNITUDE[ops]
    check(0.0 <= magnitude <= top, "randaugment_m", f"must be in [0, {top:g}] on {ops}'s scale, got {magnitude:g}")
    if ops == "torchvision":
        check(float(magnitude).is_integer(), "randaugment_m",
              f"torchvision's RandAugment takes a magnitude bin, an integer 0..30; got {magnitude:g}")
        check(mstd == 0, "randaugment_mstd",
              f"torchvision's RandAugment has no magnitude noise: set it to 0 (got {mstd:g})")


@dataclass(frozen=True)
class RecipeConfig:
    name: str | None = None         # the named recipe these fields started from
    epochs: int = 15
    batch_size: int = 64
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 5e-3                # peak learning rate
    weight_decay: float = 0.01
    momentum: float = 0.9           # sgd only
    opt_eps: float = 1e-8           # adamw only
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup_epochs: float = 0.0      # cosine only: linear warm-up
    label_smoothing: float = 0.0
    clip_grad: float | None = None  # max gradient norm
    crop: Literal["rrc", "translate", "none"] = "translate"
    scale: tuple[float, float] = (0.08, 1.0)  # random resized crop area range
    translate: int = 1              # pixels of reflect padding for crop=translate
    hflip: float = 0.0              # probability
    randaugment_n: int = 0          # RandAugment ops per image (0: off)
    randaugment_m: float = 9.0      # magnitude on the op set's scale: timm 0..10, torchvision a bin 0..30
    randaugment_mstd: float = 0.5   # magnitude noise (timm only)
    randaugment_prob: float = 0.5   # probability of applying each of the n ops (timm's default; torchvision's is 1)
    randaugment_ops: Literal["timm", "torchvision"] = "timm"  # whose op set, magnitudes and resampling
    color_jitter: float = 0.0
    reprob: float = 0.0             # random erasing probability
    mixup: float = 0.0              # alpha (0: off)
    cutmix: float = 0.0             # alpha (0: off)

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
        check(0.0 < self.scale[0] <= self.scale[1] <= 1.0, "scale", f"must be 0 < lo <= hi <= 1, got {self.scale}")
        for name in ("hflip", "reprob", "randaugment_prob"):
            check(0.0 <= getattr(self, name) <= 1.0, name, "must be a probability in [0, 1]")
        check_randaugment(self.randaugment_ops, self.randaugment_m, self.randaugment_mstd)
        check(self.clip_grad is None or self.clip_grad > 0, "clip_grad", "must be > 0 or null")


@dataclass(frozen=True)
class SystemConfig:
    """Where and how the run executes. "auto" settings are decided by measurement and recorded in the result."""
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    layout: Literal["auto", "contiguous", "channels_last"] = "auto"
    compile: bool | Literal["auto"] = "auto"
    deterministic: bool = False     # deterministic kernels (exact resume on GPU; slower)
    threads: int | None = None      # CPU threads (None: torch's default, or SLURM's cpus-per-task)
    checkpoint: bool = True         # a checkpoint after every epoch, to resume from
    tracking: list[Literal["tensorboard", "wandb"]] = field(default_factory=list)  # harness/tracking.py; not in run id
    # Data parallelism: processes the cell trains on (a study sets it from run.nodes x run.tasks_per_node; mixer-train
    # from torchrun's WORLD_SIZE), and whether BatchNorm normalises over the global batch rather than each rank's
    # share. With sync_bn the result does not depend on the world size, which then stays out of the run id (a cell
    # resumes at any world size); without it, each rank's batch is part of what is computed and of the run id.
    world_size: int = 1
    sync_bn: bool = True

    def __post_init__(self) -> None:
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), "device",
              f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        check(self.world_size >= 1, "world_size", f"must be >= 1, got {self.world_size}")
        check(self.threads is None or self.threads >= 1, "threads", f"must be >= 1 or null, got {self.threads}")
        for i, sink in enumerate(self.tracking):
            check(importlib.util.find_spec(sink) is not None, f"tracking[{i}]",
                  f"{sink} is not installed: pip install -e '.[{sink}]'")


@dataclass(frozen=True)
class BenchConfig:
    """What a run measures of its model besides accuracy: the throughput benchmark it ends with (like timm's
    benchmark.py) and its effective receptive field."""
    enabled: bool = True
    only: bool = False              # no training: only the model's size and throughput (a throughput study)
    batch_size: int | None = None   # None: 256 on a GPU, 32 on a CPU
    warmup: int | None = None       # None: 10 on a GPU, 2 on a CPU
    iters: int | None = None        # None: 40 on a GPU, 5 on a CPU
    img_size: int | None = None     # None: the training resolution
    compile: bool | Literal["auto"] = "auto"  # also measure compiled (auto: on GPUs only)
    erf: bool = True                # erf.npz: the effective receptive field at initialisation and after training

    def __post_init__(self) -> None:
        for name in ("batch_size", "warmup", "iters", "img_size"):  # null means the default; 0 is a mistake
            value = getattr(self, name)
            check(value is None or value >= 1, name, f"must be >= 1 or null (the default), got {value}")


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        world, batch = self.system.world_size, self.recipe.batch_size
        check(batch % world == 0, "recipe.batch_size", f"{batch} is the global batch, split evenly over "
              f"system.world_size {world} processes: it must be a multiple of {world}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @property
    def per_rank_batch(self) -> int:
        return self.recipe.batch_size // self.system.world_size

    @property
    def world_matters(self) -> bool:
        """Whether the number of processes changes what is computed: only when each rank's BatchNorm sees its own
        share of the batch."""
        return self.system.world_size > 1 and not self.system.sync_bn

    @functools.cached_property
    def run_id(self) -> str:
        """The hash of what is computed. Left out: settings that never change it (NOT_IDENTITY), the world size where
        it changes nothing (`world_matters`), and settings at the value they had before they existed (AT_DEFAULT), so
        that adding a setting keeps every earlier run id."""
        resolved = self.to_dict()
        left_out = [*NOT_IDENTITY, *(() if self.world_matters else WORLD),
                    *(key for key, value in AT_DEFAULT.items() if get_dotted(resolved, key) == value)]
        for key in left_out:
            section, name = key.split(".")
            del resolved[section][name]
        return run_id(resolved)


NOT_IDENTITY = ("system.tracking", "data.prefetch_factor")  # never change what a run computes
WORLD = ("system.world_size", "system.sync_bn")              # change it only when `world_matters`
AT_DEFAULT = {"data.decode": "host"}                         # added later; before, every run decoded on the host


def expand_recipe(raw: Any, path: str = "recipe") -> dict[str, Any]:
    """A recipe given as a name, or a mapping with an optional `name`, as a full mapping of fields."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a recipe name or a mapping, got {raw!r}")
    name = raw.get("name")
    if name is None:
        return dict(raw)
    if name not in RECIPES:
        raise ConfigError(f"{path}.name: unknown recipe {name!r}{did_you_mean(str(name), RECIPES)}; "
                          f"known: {', '.join(sorted(RECIPES))}")
    return {**RECIPES[name], **raw}


def resolve(raw: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
            path: str = "config") -> RunConfig:
    """A RunConfig from a plain mapping plus dotted overrides; every key and type is checked."""
    data = json.loads(json.dumps(raw or {}))  # a deep copy that also rejects what JSON cannot hold
    for key, value in (overrides or {}).items():
        if isinstance(data.get("recipe"), str):  # a recipe name, so that recipe.<field> can override it
            data["recipe"] = {"name": data["recipe"]}
        set_dotted(data, key, value)
    if "recipe" in data:
        data["recipe"] = expand_recipe(data["recipe"], f"{path}.recipe")
    return parse(RunConfig, data, path)


def load_config(file: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    raw: dict[str, Any] = {}
    if file is not None:
        raw = load_file(file, "run config") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: expected a mapping of config sections, got {type(raw).__name__}")
    return resolve(raw, overrides, path=str(file) if file else "config")

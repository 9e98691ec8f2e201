"""Batches for training and evaluation.

Two paths, one interface (iterate -> (x float (B, C, S, S) normalised, y int64 (B,), soft targets or None)):
- `DeviceLoader`: the whole split kept on the device as uint8, shuffled and augmented there in batches by
  `BatchAugment`. The default wherever the data fits (CIFAR, Fashion-MNIST, digits, packed files): no worker
  processes and no host-to-device copy per step.
- `HostLoader`: a torch DataLoader with per-image timm/torchvision transforms on CPU workers, for data that does
  not fit (ImageNet-sized folders), or on request (`data.loader: dataloader`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from .augment import AugmentSpec, BatchAugment, BatchMix, MixSpec, normalize
from .config import DataConfig, RecipeConfig
from .datasets import Dataset, Geometry, Split, create_dataset, holdout
from .schema import ConfigError
from .sharding import ShardedBatches, rank_slice

if TYPE_CHECKING:
    from .device_decode import DeviceDecode

Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CHUNK_BYTES = 64 << 20  # augmented images a DeviceLoader prepares at once


def augment_spec(recipe: RecipeConfig, mean: tuple[float, ...], std: tuple[float, ...]) -> AugmentSpec:
    return AugmentSpec(crop=recipe.crop, scale=recipe.scale, translate=recipe.translate, hflip=recipe.hflip,
                       randaugment_n=recipe.randaugment_n, randaugment_m=recipe.randaugment_m,
                       randaugment_mstd=recipe.randaugment_mstd, randaugment_prob=recipe.randaugment_prob,
                       randaugment_ops=recipe.randaugment_ops, color_jitter=recipe.color_jitter,
                       reprob=recipe.reprob, mean=mean, std=std)


def mix_spec(recipe: RecipeConfig) -> MixSpec | None:
    if recipe.mixup <= 0 and recipe.cutmix <= 0:
        return None
    return MixSpec(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, label_smoothing=recipe.label_smoothing)


class DeviceLoader:
    """A split held on the device as uint8 (N, C, H, W); batches drawn, augmented and mixed there.

    Every random draw comes from one CPU generator seeded by the run, whose state is saved with each checkpoint, so
    a resumed run sees the same batches as an uninterrupted one.

    Data-parallel (`world` > 1): `batch_size` is the global batch. Every rank draws the same order and the same
    augmentation of each global batch from the same generator, then trains on its own slice of it, so the batches,
    their augmentation and the generator's state are those of a single process at any world size (a run resumes
    on more or fewer ranks unchanged). The price is that each rank augments the whole global batch: cheap next to a
    training step on the device path's small images.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, out_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], augment: BatchAugment | None = None,
                 mix: BatchMix | None = None, seed: int = 0, layout: torch.memory_format = torch.contiguous_format,
                 rank: int = 0, world: int = 1):
        self.images, self.labels = images, labels
        self.rank, self.world = rank, world
        self.batch_size, self.out_size, self.mean, self.std = batch_size, out_size, mean, std
        self.augment, self.mix, self.layout = augment, mix, layout
        self.train = augment is not None
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        # training drops the last partial batch (one BN batch size throughout); evaluation sees every image
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    @property
    def size(self) -> int:
        """Images in the split."""
        return len(self.labels)

    @property
    def num_samples(self) -> int:
        """Images seen per pass (training drops the last partial batch)."""
        return len(self) * self.batch_size if self.train else self.size

    def __iter__(self) -> Iterator[Batch]:
        n, bs = len(self.labels), self.batch_size
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        order = order.to(self.images.device)
        # Augment many batches per call: on a GPU, one 512-image batch is too small to hide the CPU's cost of
        # launching the augmentation's kernels (it halved the training rate), while 5,000 images cost about as much.
        per_image = 4 * self.images.shape[1] * self.out_size ** 2  # float32 bytes of one output image
        chunk = max(1, CHUNK_BYTES // (per_image * bs)) * bs
        for start in range(0, self.num_samples, chunk):
            idx = order[start:min(start + chunk, self.num_samples)]
            images = self.images[idx]
            if self.augment is not None:
                images = self.augment(images, self.generator)
            else:
                images = normalize(images, self.mean, self.std, self.out_size)
            images, labels = images.contiguous(memory_format=self.layout), self.labels[idx]
            for b in range(0, len(idx), bs):
                x, y = images[b:b + bs], labels[b:b + bs]
                soft = None
                if self.mix is not None:
                    x, soft = self.mix(x, y, self.generator)
                    x = x.contiguous(memory_format=self.layout)
                mine = rank_slice(len(y), self.rank, self.world)
                yield x[mine], y[mine], soft[mine] if soft is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class ArrayDataset(torch.utils.data.Dataset):
    """uint8 (N, C, H, W) arrays as PIL images through a per-image transform (the host path's in-memory case)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image
        image = self.images[i].transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        return self.transform(pil), int(self.labels[i])


class HostLoader:
    """A DataLoader over per-image CPU transforms; batches are moved to the device and mixed there.

    `batch_size` is the global batch; rank `rank` of `world` data-parallel processes loads its slice of each
    (`harness.sharding`), while `size` and `num_samples` stay global counts. With `decode` (a `DeviceDecode`) the
    dataset yields encoded JPEG bytes, and each batch is decoded and augmented on the device instead.

    The one state (`state_dict`) is a CPU generator shared by every rank: each pass draws the order from it, and a seed
    for this rank's own draws (mixing, augmentation on the device), so it advances alike on every rank and for any
    number of ranks, and a run saved on two ranks resumes on one.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, train: bool, device: torch.device,
                 num_workers: int, mix: BatchMix | None = None, seed: int = 0,
                 layout: torch.memory_format = torch.contiguous_format, prefetch_factor: int = 2,
                 decode: DeviceDecode | None = None, rank: int = 0, world: int = 1):
        self.generator = torch.Generator().manual_seed(seed)
        sampler = ShardedBatches(len(dataset), batch_size, train, self.generator, rank, world)  # type: ignore[arg-type]
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0, prefetch_factor=prefetch_factor if num_workers else None,
            collate_fn=collate_encoded if decode is not None else None,
            generator=torch.Generator().manual_seed(rank_seed(seed, rank)))  # workers' transforms: a stream per rank
        self.batch_size, self.device, self.mix, self.layout, self.train = batch_size, device, mix, layout, train
        self.decode, self.rank = decode, rank

    def __len__(self) -> int:
        """Batches this rank loads per pass (in training, the same on every rank)."""
        return len(self.loader)

    @property
    def size(self) -> int:
        """Images in the split (all ranks together)."""
        return len(self.loader.dataset)  # type: ignore[arg-type]

    @property
    def num_samples(self) -> int:
        """Images seen per pass by all ranks together (training drops the last partial batch)."""
        return len(self) * self.batch_size if self.train else self.size

    def __iter__(self) -> Iterator[Batch]:
        local = torch.Generator().manual_seed(rank_seed(int(torch.randint(2**62, (), generator=self.generator)),
                                                        self.rank)) if self.train else None
        for x, y in self.loader:
            y = y.to(self.device, non_blocking=True)
            if self.decode is not None:
                x = self.decode(split_encoded(x), local)
            else:
                x = x.to(self.device, non_blocking=True)
            soft = None
            if self.mix is not None and local is not None:
                x, soft = self.mix(x, y, local)
            yield x.contiguous(memory_format=self.layout), y, soft

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def rank_seed(seed: int, rank: int) -> int:
    """A seed of its own for each (seed, rank) pair (numpy's SeedSequence: no two pairs collide as seed + rank do)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


def collate_encoded(batch: list[tuple[torch.Tensor, int]]) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """((the batch's files end to end, their lengths), labels): one tensor to pass between processes, not one per
    file (a worker sharing dozens of small tensors runs out of file descriptors)."""
    files = [data for data, _ in batch]
    return (torch.cat(files), torch.tensor([len(f) for f in files])), torch.tensor([label for _, label in batch])


def split_encoded(files: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    """`collate_encoded`'s files, one tensor each again."""
    data, lengths = files
    return list(data.split(lengths.tolist()))


def posterize_zero_bits(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    """timm's posterize op, also for 0 bits kept: a black image, as Pillow gave before version 13 (which raises).
    timm's PosterizeIncreasing keeps 4 - int(level * 0.4) bits, 0 at magnitude 10, which rand-m9-mstd0.5 reaches."""
    from PIL import Image
    from timm.data import auto_augment
    if bits_to_keep < 1:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


def patch_timm_posterize() -> None:
    """Point timm's RandAugment posterize ops at `posterize_zero_bits` (before its transforms are built: each op keeps
    the function it was built with, by name, so worker processes get it too)."""
    from timm.data import auto_augment
    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = posterize_zero_bits


def host_transform(recipe: RecipeConfig | None, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The per-image transform of the host path: timm's create_transform (train: the recipe's augmentation), with
    torchvision's RandAugment in the convmixer-cifar10 script's transform list when the recipe names that op set."""
    from timm.data import create_transform
    from torchvision import transforms as T
    if recipe is None:
        return create_transform(size, is_training=False, mean=mean, std=std, crop_pct=1.0)
    if recipe.crop == "translate":
        steps = [T.Resize(size), T.RandomCrop(size, padding=recipe.translate, padding_mode="reflect"),
                 T.RandomHorizontalFlip(recipe.hflip), T.ToTensor(), T.Normalize(mean, std)]
        return T.Compose(steps)
    scale = recipe.scale if recipe.crop == "rrc" else (1.0, 1.0)
    n, m, prob = recipe.randaugment_n, recipe.randaugment_m, recipe.randaugment_prob
    if recipe.randaugment_ops == "torchvision" and n:
        from timm.data.random_erasing import RandomErasing
        j = recipe.color_jitter
        # n one-op RandAugments, each applied with probability prob: RandAugment(n, m) itself when prob is 1
        randaugment = [T.RandomApply([T.RandAugment(num_ops=1, magnitude=int(m))], p=prob) for _ in range(n)]
        return T.Compose([T.RandomResizedCrop(size, scale=scale), T.RandomHorizontalFlip(recipe.hflip), *randaugment,
                          T.ColorJitter(j, j, j), T.ToTensor(), T.Normalize(mean, std),
                          RandomErasing(recipe.reprob, mode="pixel", device="cpu")])  # the device path's erasing
    aa = f"rand-m{m:g}-n{n}-mstd{recipe.randaugment_mstd:g}-p{prob:g}-inc1" if n else None
    patch_timm_posterize()
    return create_transform(size, is_training=True, scale=scale, hflip=recipe.hflip, auto_augment=aa,
                            color_jitter=recipe.color_jitter or None, re_prob=recipe.reprob, re_mode="pixel",
                            mean=mean, std=std)


@dataclass
class Loaders:
    train: DeviceLoader | HostLoader
    val: DeviceLoader | HostLoader | None  # None: data.val_fraction 0
    test: DeviceLoader | HostLoader
    geometry: Geometry
    kind: str  # "device" | "dataloader"

    @property
    def evaluated(self) -> dict[str, DeviceLoader | HostLoader]:
        """The splits evaluated after every epoch, by name (the metrics' prefix)."""
        return {name: loader for name, loader in (("val", self.val), ("test", self.test)) if loader is not None}

    def set_layout(self, layout: torch.memory_format) -> None:
        for loader in (self.train, *self.evaluated.values()):
            loader.layout = layout

    def sizes(self, data: DataConfig) -> dict[str, Any]:
        """result.json's `data`: the split sizes and what fixed them."""
        return {"train_size": self.train.size, "val_size": self.val.size if self.val is not None else 0,
                "test_size": self.test.size, "val_fraction": data.val_fraction, "data_seed": data.data_seed}


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether `nbytes` of uint8 data may live on `device`: under half of its free memory (a quarter of RAM on CPU)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes < free // 2
    import os
    return nbytes < os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def open_dataset(data: DataConfig) -> Dataset:
    dataset = create_dataset(data.dataset, data.root, **data.options)
    dataset.check()
    return dataset


def split_training(labels: np.ndarray, data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices into the training split: the stratified hold-out, then `train_limit` images of
    what is left, both drawn with `data.data_seed`."""
    train, val = holdout(labels, data.val_fraction, data.data_seed)
    if data.train_limit is not None:
        train = np.sort(np.random.default_rng(data.data_seed).permutation(train)[:data.train_limit])
    return train, val


def build_loaders(data: DataConfig, recipe: RecipeConfig, device: torch.device, seed: int, rank: int = 0,
                  world: int = 1) -> Loaders:
    """The run's train, validation and test batches; their `layout` (memory format) may be set once the model's is
    chosen. Validation and test are evaluated alike (no augmentation, every image). With `world` ranks each yields
    rank `rank`'s share of every (global) batch; sizes and sample counts stay global."""
    dataset = open_dataset(data)
    geometry = dataset.geometry()
    size = data.image_size or geometry.image_size
    geometry = Geometry(geometry.channels, size, geometry.num_classes)
    mix = mix_spec(recipe)
    batch_mix = BatchMix(mix, geometry.num_classes) if mix else None
    eval_batch = max(recipe.batch_size, 1024)
    if data.decode == "device" and dataset.in_memory:
        raise ConfigError(f"data.decode: device decodes the JPEG files of an imagefolder dataset; {data.dataset!r} "
                          f"is decoded once into memory (valid here: host)")

    if dataset.in_memory:
        (xall, yall), (xte, yte) = dataset.load("train"), dataset.load("test")
        train_idx, val_idx = split_training(yall, data)
        (xtr, ytr), (xva, yva) = (xall[train_idx], yall[train_idx]), (xall[val_idx], yall[val_idx])
        mean = tuple(float(m) for m in xtr.mean(axis=(0, 2, 3)) / 255.0)  # per-channel statistics of the train split
        std = tuple(float(s) for s in xtr.std(axis=(0, 2, 3)) / 255.0)
        use_device = data.loader == "device" or (data.loader == "auto" and _fits_on(device, xall.nbytes + xte.nbytes))
        if use_device:
            put = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)
            augment = BatchAugment(augment_spec(recipe, mean, std), size)
            shard = {"rank": rank, "world": world}
            train = DeviceLoader(put(xtr), put(ytr), recipe.batch_size, size, mean, std, augment, batch_mix, seed,
                                 **shard)
            val = DeviceLoader(put(xva), put(yva), eval_batch, size, mean, std, **shard) if len(yva) else None
            test = DeviceLoader(put(xte), put(yte), eval_batch, size, mean, std, **shard)
            return Loaders(train, val, test, geometry, "device")
        train_set = ArrayDataset(xtr, ytr, host_transform(recipe, size, mean, std))
        val_set = ArrayDataset(xva, yva, host_transform(None, size, mean, std)) if len(yva) else None
        test_set = ArrayDataset(xte, yte, host_transform(None, size, mean, std))
        train_decode = eval_decode = None
    else:
        train_set, val_set, test_set, train_decode, eval_decode = _image_folders(dataset, data, recipe, size, device)
    host = dict(device=device, num_workers=data.num_workers, prefetch_factor=data.prefetch_factor, rank=rank,
                world=world)
    train = HostLoader(train_set, recipe.batch_size, True, mix=batch_mix, seed=seed, decode=train_decode, **host)
    val = HostLoader(val_set, eval_batch, False, decode=eval_decode, **host) if val_set is not None else None
    test = HostLoader(test_set, eval_batch, False, decode=eval_decode, **host)
    return Loaders(train, val, test, geometry, "dataloader")


def _image_folders(dataset: Dataset, data: DataConfig, recipe: RecipeConfig, size: int, device: torch.device) -> tuple[
        Any, Any, Any, DeviceDecode | None, DeviceDecode | None]:
    """(train, validation or None, test) torchvision ImageFolders of an `imagefolder` dataset, and the train and eval
    `DeviceDecode` when JPEGs are decoded on the device (the folders then yield each file's bytes, undecoded)."""
    from torchvision.datasets import ImageFolder
    from torchvision.io import read_file

    from .device_decode import DeviceDecode
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    on_device = data.decode == "device"

    def folder(split: Split, train_recipe: RecipeConfig | None) -> ImageFolder:
        if on_device:
            return ImageFolder(str(dataset.folder(split)), loader=read_file)  # type: ignore[attr-defined]
        return ImageFolder(str(dataset.folder(split)), host_transform(train_recipe, size, mean, std))  # type: ignore[attr-defined]

    train_all = folder("train", recipe)
    train_idx, val_idx = split_training(np.asarray(train_all.targets), data)
    val_set = torch.utils.data.Subset(folder("train", None), val_idx.tolist()) if len(val_idx) else None
    train_set = torch.utils.data.Subset(train_all, train_idx.tolist())
    test_set = folder("test", None)
    if not on_device:
        return train_set, val_set, test_set, None, None
    return (train_set, val_set, test_set, DeviceDecode(device, size, mean, std, augment_spec(recipe, mean, std)),
            DeviceDecode(device, size, mean, std))

"""The datasets a run can name, behind one registry. Every one is real data, except `synthetic` (throughput only).

A dataset knows its geometry (channels, image size, classes) and checks that its files are there before any
training starts, saying where to put them if not. In-memory datasets load a split as uint8 arrays (N, C, H, W)
and int64 labels; `imagefolder` is read from disk through a DataLoader. Importing this module is cheap (no torch):
the study runner validates grids with it.
"""
from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from mixers.registry import Registry

Split = Literal["train", "test"]


class DatasetError(ValueError):
    """Missing or unreadable dataset files; the message says where they were looked for and what to do."""


@dataclass(frozen=True)
class Geometry:
    channels: int
    image_size: int
    num_classes: int


def cache_dir() -> Path:
    root = os.environ.get("TOKENMIX_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "tokenmix")
    return Path(root).expanduser()


def cached(key: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`build()`'s arrays, saved once under the cache dir by `key` (written atomically, so never half-read)."""
    import numpy as np
    path = cache_dir() / f"{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return arrays


class Dataset:
    """Base of registered datasets. Subclasses set the class attributes or override `geometry`."""

    in_memory = True
    default_root: str | None = None
    channels = image_size = num_classes = 0
    known_train_size: int | None = None   # images in the training split, where known without reading the files

    def __init__(self, root: str | None = None):
        self.root = Path(root or self.default_root or ".").expanduser()

    def geometry(self) -> Geometry:
        return Geometry(self.channels, self.image_size, self.num_classes)

    def check(self) -> None:
        """Raise DatasetError unless the files are there."""

    def needs_download(self) -> bool:
        """Whether `check` would download the files (a dry run never does)."""
        return False

    def load(self, split: Split) -> tuple[Any, Any]:
        """(images uint8 (N, C, H, W), labels int64 (N,)) as numpy arrays."""
        raise TypeError(f"{type(self).__name__} is read through a DataLoader, not loaded into memory")

    def train_size(self) -> int:
        """Images in the training split (before the validation hold-out), read from the files if not known."""
        return self.known_train_size if self.known_train_size is not None else len(self.load("train")[1])


DATASETS: Registry[type[Dataset]] = Registry("dataset")


def _approximate_mode(class_counts: Any, n_draws: int, rng: Any) -> Any:
    """How many of `n_draws` come from each class: the floored proportional share, plus one for the largest
    remainders, ties broken by `rng` (scikit-learn's `_approximate_mode`, draw for draw)."""
    import numpy as np
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1] if need > 0 else ():
        (tied,) = np.where(remainder == value)
        add = min(len(tied), need)
        floored[rng.choice(tied, size=add, replace=False)] += 1
        need -= add
        if need == 0:
            break
    return floored.astype(int)


def holdout(labels: Any, val_fraction: float, data_seed: int) -> tuple[Any, Any]:
    """(train indices, validation indices) of a training split: a stratified `val_fraction` of it held out, drawn
    with `data_seed` (not the run's seed, so every cell of a study is compared on the same images). Each class keeps
    its share on both sides; `val_fraction` 0 holds out nothing.

    The same indices as scikit-learn's StratifiedShuffleSplit(test_size=val_fraction, random_state=data_seed), draw
    for draw (tests/test_validation_split.py checks it): importing scikit-learn costs every training process 1.5 s."""
    import math

    import numpy as np
    labels = np.asarray(labels)
    if val_fraction == 0:
        return np.arange(len(labels)), np.arange(0)
    n_val = math.ceil(val_fraction * len(labels))
    n_train = len(labels) - n_val
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    problem = (f"class {classes[counts < 2][0]} has only 1 image" if counts.min() < 2 else
               f"{n_train} training images are fewer than the {len(classes)} classes" if n_train < len(classes) else
               f"{n_val} validation images are fewer than the {len(classes)} classes" if n_val < len(classes) else None)
    if problem:
        raise DatasetError(f"data.val_fraction {val_fraction:g} cannot hold out a stratified part of "
                           f"{len(labels)} training images: {problem}")
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(data_seed)
    train_counts = _approximate_mode(counts, n_train, rng)
    val_counts = _approximate_mode(counts - train_counts, n_val, rng)
    train, val = [], []
    for members, n_t, n_v in zip(by_class, train_counts, val_counts):
        shuffled = members.take(rng.permutation(len(members)), mode="clip")
        train.append(shuffled[:n_t])
        val.append(shuffled[n_t:n_t + n_v])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def dataset_options(cls: type[Dataset]) -> dict[str, Any]:
    """The dataset's own options (its constructor's keyword arguments other than root) and their defaults."""
    return {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items() if n not in ("self", "root")}


def create_dataset(name: str, root: str | None = None, **options: Any) -> Dataset:
    from mixers.registry import did_you_mean  # the one "did you mean" of the toolkit's registries
    cls = DATASETS.get(name)
    valid = dataset_options(cls)
    for key in options:
        if key not in valid:
            raise DatasetError(f"dataset {name!r} has no option {key!r}{did_you_mean(key, list(valid))}; "
                               f"valid: {', '.join(valid) or '(none)'}")
    return cls(root, **options)


@DATASETS.register("digits")
class Digits(Dataset):
    """scikit-learn's 1,797 8x8 handwritten digits (bundled with scikit-learn, no download).

    The split is fixed: a permutation drawn with seed 0, the last 360 images (20%) are the test set.
    """

    channels, image_size, num_classes = 1, 8, 10
    test_size = 360
    known_train_size = 1797 - test_size

    def load(self, split: Split) -> tuple[Any, Any]:
        import importlib.util

        import numpy as np
        # load_digits' own file, read without importing scikit-learn (1.5 s): rows of 64 pixels (0..16), then the label
        spec = importlib.util.find_spec("sklearn")
        if spec is None or not spec.submodule_search_locations:
            raise DatasetError("dataset 'digits' comes with scikit-learn, which is not installed here "
                               "(pip install scikit-learn)")
        table = np.loadtxt(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz",
                           delimiter=",")
        pixels, labels = table[:, :-1], table[:, -1]
        images = np.round(pixels.reshape(-1, 1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
        order = np.random.default_rng(0).permutation(len(images))
        idx = order[-self.test_size:] if split == "test" else order[:-self.test_size]
        return images[idx], labels[idx].astype(np.int64)


def _read_idx(path: Path) -> Any:
    """An idx file (MNIST's format), gzipped or not."""
    import numpy as np
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@DATASETS.register("fashion_mnist")
class FashionMNIST(Dataset):
    """Fashion-MNIST, 60,000 + 10,000 28x28 images, from its idx files.

    Debian ships them: `apt-get install dataset-fashion-mnist` puts them in the default root.
    """

    channels, image_size, num_classes, known_train_size = 1, 28, 10, 60_000
    default_root = "/usr/share/datasets/fashion-mnist"
    files = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

    def _path(self, stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (self.root / name).exists():
                return self.root / name
        raise DatasetError(
            f"fashion_mnist: {stem}(.gz) not found in {self.root}; install Debian's dataset-fashion-mnist "
            f"(apt-get install dataset-fashion-mnist) or put the four idx files from "
            f"github.com/zalandoresearch/fashion-mnist there and set data.root")

    def check(self) -> None:
        for stems in self.files.values():
            for stem in stems:
                self._path(stem)

    def load(self, split: Split) -> tuple[Any, Any]:
        import numpy as np
        images, labels = (_read_idx(self._path(stem)) for stem in self.files[split])
        return images[:, None].copy(), labels.astype(np.int64)


class _Cifar(Dataset):
    """CIFAR in torchvision's format (the extracted python pickles), downloaded through torchvision if missing."""

    channels, image_size, known_train_size = 3, 32, 50_000
    default_root = str(cache_dir() / "data")
    folder = ""
    tv_class = ""
    label_key = ""
    split_files: dict[str, list[str]] = {}

    def needs_download(self) -> bool:
        return not (self.root / self.folder).is_dir()

    def check(self) -> None:
        if not self.needs_download():
            return
        try:
            import torchvision.datasets
            getattr(torchvision.datasets, self.tv_class)(str(self.root), train=False, download=True)
        except Exception as e:  # no network, a proxy, a full disk: all end in the same advice
            raise DatasetError(
                f"{self.tv_class}: {self.root / self.folder} not found and the download failed ({e}); "
                f"put the extracted '{self.folder}' folder from https://www.cs.toronto.edu/~kriz/ under "
                f"{self.root} (or set data.root), or use dataset 'packed' with a packed .npz file") from None

    def load(self, split: Split) -> tuple[Any, Any]:
        import numpy as np
        self.check()
        images, labels = [], []
        for name in self.split_files[split]:
            with open(self.root / self.folder / name, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[self.label_key], dtype=np.int64))
        return np.concatenate(images), np.concatenate(labels)


@DATASETS.register("cifar10")
class Cifar10(_Cifar):
    num_classes = 10
    folder, tv_class, label_key = "cifar-10-batches-py", "CIFAR10", "labels"
    split_files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


@DATASETS.register("cifar100")
class Cifar100(_Cifar):
    num_classes = 100
    folder, tv_class, label_key = "cifar-100-python", "CIFAR100", "fine_labels"
    split_files = {"train": ["train"], "test": ["test"]}


@DATASETS.register("packed")
class Packed(Dataset):
    """Images packed as JPEG bytes in one .npz (`jpeg_train`, `offsets_train`, `y_train`, the same for test, and
    `classes`); data.root is the file. Decoded once with Pillow and cached (see `cache_dir`)."""

    def check(self) -> None:
        if not self.root.is_file():
            raise DatasetError(f"packed: data.root must be a packed .npz file; {str(self.root)!r} is not a file")
        import numpy as np
        with np.load(self.root) as f:
            missing = {"jpeg_train", "offsets_train", "y_train", "jpeg_test", "offsets_test", "y_test",
                       "classes"} - set(f.files)
        if missing:
            raise DatasetError(f"packed: {self.root} lacks the arrays {sorted(missing)}")

    def geometry(self) -> Geometry:
        import numpy as np
        from PIL import Image
        self.check()
        with np.load(self.root) as f:
            buf, off = f["jpeg_test"], f["offsets_test"]
            image = Image.open(io.BytesIO(buf[off[0]:off[1]].tobytes()))
            return Geometry(len(image.getbands()), image.size[0], len(f["classes"]))

    def load(self, split: Split) -> tuple[Any, Any]:
        self.check()
        stat = self.root.stat()
        key = hashlib.sha1(f"{self.root.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{split}".encode()).hexdigest()
        arrays = cached(f"packed-{key[:16]}", lambda: self._decode(split))
        return arrays["images"], arrays["labels"]

    def train_size(self) -> int:
        import numpy as np
        self.check()
        with np.load(self.root) as f:
            return len(f["y_train"])

    def _decode(self, split: Split) -> dict[str, Any]:
        import numpy as np
        from PIL import Image
        with np.load(self.root) as f:
            buf, off, labels = f[f"jpeg_{split}"], f[f"offsets_{split}"], f[f"y_{split}"]
        images = np.stack([np.asarray(Image.open(io.BytesIO(buf[a:b].tobytes())).convert("RGB"))
                           for a, b in zip(off[:-1], off[1:])])
        return {"images": images.transpose(0, 3, 1, 2).copy(), "labels": labels.astype(np.int64)}


@DATASETS.register("imagefolder")
class ImageFolder(Dataset):
    """ImageNet layout: root/train/<class>/*.jpg and root/val/<class>/*.jpg, read through a DataLoader."""

    in_memory = False
    channels = 3

    def __init__(self, root: str | None = None, image_size: int = 224):
        super().__init__(root)
        self.image_size = image_size

    def check(self) -> None:
        for split in ("train", "val"):
            if not (self.root / split).is_dir():
                raise DatasetError(f"imagefolder: {self.root / split} is not a folder; data.root must hold "
                                   f"train/<class>/*.jpg and val/<class>/*.jpg")

    def geometry(self) -> Geometry:
        self.check()
        classes = [d for d in os.scandir(self.root / "train") if d.is_dir()]
        return Geometry(3, self.image_size, len(classes))

    def folder(self, split: Split) -> Path:
        return self.root / ("train" if split == "train" else "val")

    def train_size(self) -> int:
        self.check()
        return sum(1 for d in os.scandir(self.folder("train")) if d.is_dir() for f in os.scandir(d) if f.is_file())


@DATASETS.register("synthetic")
class Synthetic(Dataset):
    """Uniform random images and labels of a given shape: for throughput, not accuracy."""

    def __init__(self, root: str | None = None, channels: int = 3, image_size: int = 32, num_classes: int = 10,
                 train_size: int = 1024, test_size: int = 256):
        super().__init__(root)
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.known_train_size = train_size
        self.sizes = {"train": train_size, "test": test_size}

    def load(self, split: Split) -> tuple[Any, Any]:
        import numpy as np
        rng = np.random.default_rng(0 if split == "train" else 1)
        n, c, s = self.sizes[split], self.channels, self.image_size
        return (rng.integers(0, 256, (n, c, s, s), dtype=np.uint8),
                rng.integers(0, self.num_classes, n, dtype=np.int64))

"""The ImageNet path: `imagefolder` through the DataLoader, JPEGs decoded by the workers or batched on the device, and
each data-parallel rank's share of the batches. Real images: the packed CIFAR-10 1k1k written as an ImageFolder."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from harness.config import resolve
from harness.data import HostLoader, build_loaders
from harness.records import RunDir
from harness.schema import ConfigError
from harness.train import train

sys.path.insert(0, str(ROOT))  # benchmarks/ holds scripts, not an installed package
from benchmarks.input_pipeline import PACKED, write_imagefolder  # noqa: E402

SOURCE, SIZE, PER_CLASS = 48, 40, 6  # files at 48 px, trained at 40: both paths resize, as on ImageNet
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)  # ImageNet's, which imagefolder normalises with
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_imagefolder(PACKED, tmp_path_factory.mktemp("imagefolder"), SOURCE, per_class=PER_CLASS)


def config(folder: Path, **data):
    return resolve({"model": {"dim": 16, "depth": 1, "patch_size": 8, "kernel_size": 3},
                    "data": {"dataset": "imagefolder", "root": str(folder), "image_size": SIZE, "loader": "dataloader",
                             "num_workers": 0, "val_fraction": 0, **data},
                    "recipe": {"name": "convmixer_imagenet", "batch_size": 20, "epochs": 1},
                    "system": {"device": "cpu", "layout": "contiguous", "threads": 1},
                    "bench": {"enabled": False}})


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for x, y, _ in loader]


def val_labels(folder: Path) -> list[int]:
    from torchvision.datasets import ImageFolder
    return ImageFolder(str(folder / "val")).targets


@pytest.mark.parametrize("decode", ["host", "device"])
def test_batches_have_the_shapes_and_labels_of_the_folder(folder, decode):
    # one worker: the files go through a worker process, persistent and prefetching, as on a cluster
    cfg = config(folder, decode=decode, num_workers=1, prefetch_factor=3)
    loaders = build_loaders(cfg.data, cfg.recipe, CPU, seed=0)
    assert loaders.kind == "dataloader" and loaders.geometry.num_classes == 10
    train_batches = batches(loaders.train)
    assert len(train_batches) == len(loaders.train) == 60 // 20 and loaders.train.num_samples == 60
    for x, y in train_batches:
        assert x.shape == (20, 3, SIZE, SIZE) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert y.dtype == torch.int64
    assert sorted(torch.cat([y for _, y in train_batches]).tolist()) == sorted(list(range(10)) * PER_CLASS)
    test = batches(loaders.test)
    assert torch.cat([y for _, y in test]).tolist() == val_labels(folder)  # evaluation in the folder's order


def test_decoding_on_the_device_gives_the_host_path_images(folder):
    """Without augmentation (the eval transform: resize the shorter side, centre crop, normalise) both paths decode
    with libjpeg-turbo, and resize bilinearly with antialiasing to the uint8 grid: PIL's and torch's kernels round a
    few pixels to the neighbouring level, so a pixel may differ by one level of 255 and hardly any do."""
    host, device = (build_loaders(config(folder, decode=d).data, config(folder).recipe, CPU, seed=0).test
                    for d in ("host", "device"))
    (xh, yh), = batches(host)
    (xd, yd), = batches(device)
    assert torch.equal(yh, yd)
    levels = ((xh - xd) * STD * 255).abs()  # back on the 0..255 scale
    assert levels.max() <= 1.0 + 1e-3 and (levels > 0.5).double().mean() < 0.01


def test_device_decode_augments_from_the_loaders_generator(folder):
    cfg = config(folder, decode="device")
    a, b = (build_loaders(cfg.data, cfg.recipe, CPU, seed=0).train for _ in range(2))
    first, again = batches(a), batches(b)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(first, again))
    assert not torch.equal(first[0][0], batches(a)[0][0])  # the next pass draws new crops and order
    assert first[0][0].shape == (20, 3, SIZE, SIZE)


def test_decode_on_the_device_needs_an_imagefolder():
    cfg = resolve({"data": {"dataset": "digits", "loader": "dataloader", "decode": "device"}})
    with pytest.raises(ConfigError, match=r"data.decode: device .* 'digits' .*\(valid here: host\)"):
        build_loaders(cfg.data, cfg.recipe, CPU, seed=0)


@pytest.mark.parametrize("data,message", [
    ({"decode": "gpu"}, r"config.data.decode: 'gpu' is not valid; valid: 'host' \| 'device'"),
    ({"prefetch_factor": 0}, r"config.data.prefetch_factor: must be >= 1, got 0"),
])
def test_bad_loader_settings_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        resolve({"data": data})


# --- data-parallel shares ----------------------------------------------------------------------------------------

N = 50  # images; batches of 12 divide over 1, 2 and 3 ranks, and 50 leaves a partial batch of 2


def index_loader(train: bool, rank: int, world: int, batch: int = 12) -> HostLoader:
    """A HostLoader whose images are their own indices."""
    dataset = torch.utils.data.TensorDataset(torch.arange(N)[:, None], torch.arange(N))
    return HostLoader(dataset, batch, train, CPU, num_workers=0, seed=3, rank=rank, world=world)


@pytest.mark.parametrize("world", [2, 3])
def test_training_ranks_together_load_the_single_process_batches(world):
    single = [y for _, y in batches(index_loader(True, 0, 1))]
    ranks = [index_loader(True, r, world) for r in range(world)]
    shares = [[y for _, y in batches(loader)] for loader in ranks]
    assert len(single) == N // 12 and all(len(s) == len(single) for s in shares)
    for step, whole in enumerate(single):
        assert all(len(s[step]) == 12 // world for s in shares)
        assert torch.equal(torch.cat([s[step] for s in shares]), whole)
    assert all(loader.num_samples == 48 and loader.size == N for loader in ranks)  # global counts
    # the generator moved alike on every rank and at any world size: a run saved on `world` ranks resumes on one
    state = ranks[0].state_dict()["generator"]
    resumed = index_loader(True, 0, 1)
    resumed.load_state_dict(ranks[-1].state_dict())
    assert torch.equal(state, ranks[-1].state_dict()["generator"])
    following = [y for _, y in batches(ranks[0])]
    assert torch.equal(torch.cat([y for _, y in batches(resumed)]).view(-1, 12)[:, :12 // world],
                       torch.stack(following))


@pytest.mark.parametrize("world,batch", [(2, 12), (3, 12), (3, 16), (4, 49), (3, 1)])
def test_evaluation_ranks_see_every_image_once(world, batch):
    ranks = [index_loader(False, r, world, batch) for r in range(world)]
    seen = [y for loader in ranks for _, y in batches(loader)]
    assert sorted(torch.cat(seen).tolist()) == list(range(N))
    assert all(loader.num_samples == N and len(loader) == len(batches(loader)) for loader in ranks)


def test_a_global_batch_that_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="global batch 12 does not divide over 5 ranks"):
        index_loader(True, 0, 5)


# --- a whole run ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("decode", ["host", "device"])
def test_an_imagefolder_run_trains_end_to_end(folder, decode, tmp_path):
    cfg = config(folder, decode=decode, num_workers=1, val_fraction=0.2)
    result = train(cfg, tmp_path / "run", log=lambda line: None)
    assert result["status"] == "done" and result["execution"]["loader"] == "dataloader"
    assert result["data"]["train_size"] == 48 and result["data"]["val_size"] == 12
    assert result["data"]["test_size"] == 60
    history = RunDir(tmp_path / "run").read_metrics()
    assert len(history) == 1 and 0.0 <= history[0]["test_top1"] <= 100.0


@pytest.mark.parametrize("study,depth", [("imagenet_convmixer.yaml", 20), ("imagenet_convmixer_768_32.yaml", 32)])
def test_the_imagenet_studies_train_as_the_paper_did(study, depth):
    """Parsed and resolved, not expanded: solving every mixer's width at 224 px takes minutes and needs the folder."""
    from runner.spec import load_spec
    spec = load_spec(ROOT / "studies" / study)
    base = resolve(spec.base)
    assert base.model.depth == depth and base.recipe.batch_size == 640 and base.recipe.lr == 0.01
    assert spec.run.nodes * spec.run.tasks_per_node == 10 and spec.run.gpus_per_node == spec.run.tasks_per_node
    assert base.system.sync_bn is False and base.data.dataset == "imagefolder" and base.data.loader == "dataloader"
    assert base.recipe.batch_size % (spec.run.nodes * spec.run.tasks_per_node) == 0

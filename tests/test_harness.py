"""The training harness: configs, datasets, training, resume, divergence, throughput, bad inputs."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import skip_unless_required

from harness.config import RECIPES, RunConfig, load_config, resolve
from harness.datasets import DATASETS, DatasetError, create_dataset
from harness.records import RunDir
from harness.schema import ConfigError, parse_overrides
from harness.throughput import Setting, benchmark, candidate_settings
from harness.train import build_model, train

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ holds scripts, not an installed package
from benchmarks.record import read_record  # noqa: E402

PACKED_1K = ROOT / "tests" / "data" / "cifar10_jpegbytes_1k1k.npz"  # 100 + 100 CIFAR-10 images per class
FAST = {"model": {"dim": 32, "depth": 2, "patch_size": 1, "kernel_size": 3}, "data": {"dataset": "digits"},
        "recipe": {"name": "small", "epochs": 2, "batch_size": 128},
        "system": {"device": "cpu", "layout": "contiguous", "threads": 1},
        "bench": {"batch_size": 16, "warmup": 1, "iters": 1}}


def fast(**overrides) -> RunConfig:
    return resolve(FAST, overrides)


# --- config ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,message", [
    ({"modle": {}}, r"config.modle: unknown key \(did you mean 'model'\?\); valid: model, data"),
    ({"model": {"dim": "wide"}}, r"config.model.dim: expected int, got 'wide'"),
    ({"model": {"depth": 0}}, r"config.model.depth: must be 1 to 1,024, got 0"),
    ({"recipe": "convmixer_cifar"},
     r"config.recipe.name: unknown recipe 'convmixer_cifar' \(did you mean 'convmixer_cifar10'\?\)"),
    ({"recipe": {"epoch": 3}}, r"config.recipe.epoch: unknown key \(did you mean 'epochs'\?\)"),
    ({"recipe": {"scale": [0.5]}}, r"config.recipe.scale: expected 2 values"),
    ({"recipe": {"hflip": 2}}, r"config.recipe.hflip: must be a probability"),
    ({"system": {"precision": "bf61"}}, r"config.system.precision: 'bf61' is not valid \(did you mean 'bf16'\?\)"),
    ({"system": {"compile": "atuo"}},
     r"config.system.compile: expected bool or 'auto', got 'atuo' \(did you mean 'auto'\?\)"),
    ({"seed": 1.5}, r"config.seed: expected int, got 1.5"),
])
def test_bad_config_names_the_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        resolve(raw)


def test_named_recipe_with_overrides_and_stable_run_id():
    a = resolve({"recipe": "convmixer_cifar10", "model": {"mixer": "pool"}}, parse_overrides(["recipe.epochs=3"]))
    assert a.recipe.name == "convmixer_cifar10" and a.recipe.epochs == 3
    assert a.recipe.lr == RECIPES["convmixer_cifar10"]["lr"] and a.recipe.batch_size == 512
    b = resolve({"model": {"mixer": "pool"}, "recipe": {"epochs": 3, "name": "convmixer_cifar10"}})
    assert a.run_id == b.run_id  # the same resolved config, however it was written
    assert a.run_id != resolve({"recipe": "convmixer_cifar10", "model": {"mixer": "pool"}}).run_id


def test_config_file_and_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("model: {mixer: identity}\nrecipe: small\n")
    cfg = load_config(f, parse_overrides(["model.dim=48", "data.options={train_size: 8}"]))
    assert (cfg.model.mixer, cfg.model.dim, cfg.data.options) == ("identity", 48, {"train_size": 8})
    with pytest.raises(ConfigError, match=r"override 'model\.dim': expected key=value"):
        parse_overrides(["model.dim"])


# --- datasets --------------------------------------------------------------------------------------------------------

def _digit_folder(root: Path) -> Path:
    """An ImageNet-layout folder of real images (sklearn digits as PNGs)."""
    from PIL import Image
    images, labels = create_dataset("digits").load("test")
    for split in ("train", "val"):
        for i, (img, label) in enumerate(zip(images[:40], labels[:40])):
            d = root / split / f"class_{label}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.repeat(img.transpose(1, 2, 0), 3, axis=2)).resize((16, 16)).save(d / f"{i}.png")
    return root


def dataset_root(name: str, tmp_path: Path) -> str | None:
    return {"packed": str(PACKED_1K), "imagefolder": str(_digit_folder(tmp_path)) if name == "imagefolder" else None,
            "cifar10": str(tmp_path), "cifar100": str(tmp_path)}.get(name)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_loads_real_data_or_says_where_to_put_it(name, tmp_path):
    options = {"image_size": 16} if name == "imagefolder" else {}
    root = dataset_root(name, tmp_path)
    ds = create_dataset(name, root, **options)
    try:
        ds.check()
    except DatasetError as e:  # files absent here (CIFAR offline): the message says where they go
        if root is None:  # a dataset read from where a system package installs it (Fashion-MNIST: Debian's)
            skip_unless_required(f"not installed here: {e}", "TOKENMIX_REQUIRE_DATASETS")
        assert str(tmp_path) in str(e) and ("put" in str(e) or "install" in str(e))
        return
    geo = ds.geometry()
    if not ds.in_memory:
        assert geo.num_classes == len(list((tmp_path / "train").iterdir()))
        return
    for split in ("train", "test"):
        images, labels = ds.load(split)
        assert images.dtype == np.uint8 and images.shape[1:] == (geo.channels, geo.image_size, geo.image_size)
        assert labels.dtype == np.int64 and len(labels) == len(images)
        assert set(np.unique(labels)) <= set(range(geo.num_classes))
    if name != "synthetic":
        assert images.std() > 10 and len(np.unique(labels)) == geo.num_classes  # real, varied images of every class


def test_digits_split_is_fixed_and_disjoint():
    ds = create_dataset("digits")
    (xtr, _), (xte, _) = ds.load("train"), ds.load("test")
    assert len(xtr) + len(xte) == 1797 and len(xte) == 360
    train_set = {x.tobytes() for x in xtr}
    assert sum(x.tobytes() in train_set for x in xte) < 5  # sklearn's digits hold a few exact duplicates


def test_unknown_dataset_option_is_named():
    with pytest.raises(
            DatasetError, match=r"dataset 'synthetic' has no option 'image_szie' \(did you mean 'image_size'\?\)"):
        create_dataset("synthetic", image_szie=8)


# --- training --------------------------------------------------------------------------------------------------------

def test_a_run_writes_a_complete_record(tmp_path):
    cfg = fast()
    result = train(cfg, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    stored = json.loads(run.result.read_text())
    assert stored == json.loads(json.dumps(result))
    assert stored["status"] == "done" and stored["run_id"] == cfg.run_id
    assert stored["config"] == cfg.to_dict()
    history = run.read_metrics()
    assert [h["epoch"] for h in history] == [0, 1] and stored["metrics"]["test_top1"] == history[-1]["test_top1"]
    assert "best_test_top1" not in stored["metrics"]  # nothing is chosen on the test set
    best = max(history, key=lambda h: h["val_top1"])
    assert stored["metrics"]["selected_epoch"] == best["epoch"] and stored["metrics"]["val_top1_selected"] == best[
        "val_top1"] and stored["metrics"]["test_top1_selected"] == best["test_top1"]
    assert stored["data"] == {"train_size": 1293, "val_size": 144, "test_size": 360, "val_fraction": 0.1,
                              "data_seed": 0}
    with np.load(run.path / "erf.npz") as erf:
        assert erf["init"].shape == erf["trained"].shape == (8, 8) and not np.array_equal(erf["init"], erf["trained"])
    assert stored["model"]["params"] == sum(p.numel() for p in build_model(cfg, 1, 10, 8).parameters())
    assert stored["model"]["flops"] > 0 and stored["model"]["input_size"] == [1, 8, 8]
    t = stored["throughput"]
    assert t["infer_img_s"] == max(m["img_s"] for m in t["measurements"] if m["mode"] == "infer")
    assert {m["layout"] for m in t["measurements"]} == {"contiguous", "channels_last"}
    assert len(stored["timing"]["epoch_s"]) == 2 and stored["timing"]["wall_s"] >= stored["timing"]["train_s"]
    assert stored["execution"]["loader"] == "device" and stored["memory"]["peak_bytes"] > 0
    assert stored["env"]["torch"] == torch.__version__ and stored["env"]["cpu_count"] == os.cpu_count()
    assert json.loads(run.state.read_text())["status"] == "done"
    assert json.loads(run.config.read_text())["run_id"] == cfg.run_id


def quickstart_p2() -> dict[str, tuple[float, float]]:
    """The quickstart's test top-1 at p2 per mixer, (mean, std) over its seeds, from the record the README quotes
    (results/reference/quickstart.txt; tests/test_readme_figures.py keeps the README equal to it)."""
    figures = {}
    for line in read_record(ROOT / "results" / "reference" / "quickstart.txt").output.splitlines():
        cells = [re.sub(r"\*\*|</?u>", "", c).strip() for c in line.strip().strip("|").split("|")]
        match = len(cells) == 3 and re.fullmatch(r"(\d+\.\d+)(?: ± (\d+\.\d+))?", cells[2])
        if match:
            figures[cells[0]] = (float(match[1]), float(match[2] or 0))
    return figures


QUICKSTART_P2 = quickstart_p2()


@pytest.mark.parametrize("mixer", QUICKSTART_P2)
def test_core_mixers_learn_digits_as_well_as_the_readme_says(mixer, tmp_path):
    # the quickstart's p2 cell with seed 0 must reach the quoted mean, less 3x the largest spread over seeds there
    margin = 3 * max(std for _, std in QUICKSTART_P2.values())
    quickstart = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())["base"]
    cfg = resolve(quickstart, {"model.mixer": mixer, "model.patch_size": 2, "system.threads": 1, "seed": 0,
                               "bench.enabled": False})
    result = train(cfg, tmp_path / mixer)
    assert result["metrics"]["test_top1"] >= QUICKSTART_P2[mixer][0] - margin, (QUICKSTART_P2[mixer], margin)


@pytest.mark.parametrize("data,expected", [
    ({"test_size": 360}, "test top-1 99.2%, top-5 100.0% (n=360)"),       # one image is 0.28 points: 1 decimal
    ({"test_size": 10_000}, "test top-1 99.17%, top-5 100.00% (n=10,000)"),  # 0.01 points: 2 decimals
    ({}, "test top-1 99.17%, top-5 100.00%"),                               # size unknown: 2 decimals, no n
])
def test_mixer_train_prints_accuracy_to_the_resolution_of_its_test_set(data, expected):
    from harness.cli import _test_accuracy
    assert _test_accuracy({"test_top1": 99.1667, "test_top5": 100.0}, data) == expected


def test_divergence_stops_the_run(tmp_path):
    cfg = fast(**{"recipe.optimizer": "sgd", "recipe.lr": 1e12, "recipe.epochs": 4})
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "diverged" and result["diverged_epoch"] == 0
    assert "NaN or infinite at epoch 0" in result["reason"] and result["throughput"] is None
    assert len(RunDir(tmp_path / "run").read_metrics()) == 1


def test_a_directory_holding_another_run_is_refused(tmp_path):
    from harness.records import ConfigMismatchError
    train(fast(**{"recipe.epochs": 1, "bench.enabled": False}), tmp_path / "run")
    with pytest.raises(ConfigMismatchError, match="holds run"):
        train(fast(**{"recipe.epochs": 1, "model.dim": 16, "bench.enabled": False}), tmp_path / "run")


def _mixer_train(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args, "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow
def test_resume_after_a_real_kill_is_exact(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(json.dumps({**FAST, "recipe": {**FAST["recipe"], "epochs": 6},
                                    "system": {**FAST["system"], "deterministic": True},
                                    "bench": {"enabled": False}}))
    whole = _mixer_train([str(cfg_file), "--out", str(tmp_path / "whole")])
    assert whole.wait(timeout=600) == 0, whole.stdout.read()

    killed = _mixer_train([str(cfg_file), "--out", str(tmp_path / "killed")])
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    # wait for the checkpoint after epoch 2 (index 1 or later), then kill -9 mid-training
    deadline = time.monotonic() + 600
    while not (ckpt.exists() and torch.load(ckpt, weights_only=False)["epoch"] >= 2):
        assert killed.poll() is None and time.monotonic() < deadline, killed.stdout.read()
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    stopped_at = torch.load(ckpt, weights_only=False)["epoch"]
    assert stopped_at < 6, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "result.json").exists()

    resumed = _mixer_train([str(cfg_file), "--out", str(tmp_path / "killed")])
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out
    assert f"after epoch {stopped_at - 1}" in out

    def curve(name: str) -> list[dict]:
        return [{k: v for k, v in m.items() if not k.endswith("_s")} for m in RunDir(tmp_path / name).read_metrics()]

    assert curve("killed") == curve("whole") and len(curve("whole")) == 6
    a, b = (json.loads((tmp_path / n / "result.json").read_text())["metrics"] for n in ("whole", "killed"))
    assert a == b


@pytest.mark.parametrize("args,message", [
    (["data.dataset=cifar"], "config.data.dataset: unknown dataset 'cifar' (did you mean 'cifar10'?)"),
    (["data.dataset=packed", "data.root=/nonexistent.npz"], "'/nonexistent.npz' is not a file"),
    (["data.dataset=fashion_mnist", "data.root=/nonexistent"],
     "fashion_mnist: train-images-idx3-ubyte(.gz) not found in /nonexistent"),
    (["model.patch_size=16"], "config.model.patch_size: 16 is larger than the images (8x8 for digits)"),
    (["recipe.epoch=3"], "config.recipe.epoch: unknown key (did you mean 'epochs'?)"),
    (["model.mixer=attention", "model.mixer_kwargs.num_heads=3"], "num_heads must be >= 1 and divide dim 256, got 3"),
])
def test_bad_inputs_fail_before_training(args, message, tmp_path):
    p = _mixer_train([*args, "--out", str(tmp_path / "run")])
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 2 and message in out, out
    assert not (tmp_path / "run").exists()  # nothing was started or written


# --- throughput ------------------------------------------------------------------------------------------------------

def test_throughput_records_every_setting_and_reports_the_best():
    from mixers import MixerNet
    device = torch.device("cpu")
    settings = candidate_settings(device)
    assert settings == [Setting("contiguous", "fp32", False), Setting("channels_last", "fp32", False)]
    model = MixerNet(dim=16, depth=1, img_size=8, in_chans=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = benchmark(model, (1, 8, 8), device, settings, batch_size=4, warmup=1, iters=2, num_classes=10)
    assert len(out["measurements"]) == 4
    assert all(m["img_s"] > 0 and m["batch_size"] == 4 and m["img_size"] == 8 for m in out["measurements"])
    for mode in ("infer", "train"):
        top = max((m for m in out["measurements"] if m["mode"] == mode), key=lambda m: m["img_s"])
        assert out[f"{mode}_img_s"] == top["img_s"] and out[f"{mode}_setting"]["layout"] == top["layout"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # measured on a copy


def test_execution_probe_picks_the_fastest_measured_setting():
    from harness.config import SystemConfig
    from harness.execution import choose_setting
    from mixers import MixerNet
    model = MixerNet(dim=16, depth=1, img_size=8, in_chans=1)
    cpu = torch.device("cpu")
    setting, probes = choose_setting(model, SystemConfig(device="cpu"), cpu, 16, (1, 8, 8), 10)
    assert [(p["layout"], p["compiled"]) for p in probes] == [("contiguous", False), ("channels_last", False)]
    fastest = max(probes, key=lambda p: p["img_s"])
    assert setting == Setting(fastest["layout"], fastest["precision"], False)
    # a fixed choice is not measured
    assert choose_setting(model, SystemConfig(device="cpu", layout="channels_last"), cpu, 16, (1, 8, 8), 10) == (
        Setting("channels_last", "fp32", False), [])


def test_benchmark_only_run_has_size_and_speed_but_no_training(tmp_path):
    cfg = fast(**{"bench.only": True, "data.dataset": "synthetic", "data.options": {"image_size": 16}})
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "done" and result["metrics"] == {"epochs": 0}
    assert result["model"]["input_size"] == [3, 16, 16] and result["throughput"]["train_img_s"] > 0
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and RunDir(tmp_path / "run").read_metrics() == []

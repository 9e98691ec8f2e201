"""The validation split: a stratified part of the training split, fixed by data.data_seed, the same on both data
paths; and the proof that test labels cannot move any selection."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_BASE, run_study, write_study
from test_harness import dataset_root

from harness.config import resolve
from harness.data import build_loaders
from harness.datasets import DATASETS, DatasetError, create_dataset
from harness.train import final_metrics, train

CPU = torch.device("cpu")
# hold-outs big enough for every class of each small dataset (the imagefolder fixture has 40 images of 10 classes)
FRACTIONS = {"imagefolder": 0.5}


def collect(loader) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x, y) for x, y, _ in loader])
    return torch.cat(xs).numpy(), torch.cat(ys).numpy()


def loaders_of(name: str, tmp_path: Path, kind: str, seed: int = 0, **data):
    options = {"image_size": 16} if name == "imagefolder" else {}
    cfg = resolve({"data": {"dataset": name, "root": dataset_root(name, tmp_path), "options": options,
                            "loader": kind, "num_workers": 0, "val_fraction": FRACTIONS.get(name, 0.1), **data},
                   "recipe": {"batch_size": 8, "crop": "none"}})
    try:
        create_dataset(name, cfg.data.root, **options).check()
    except DatasetError as e:
        pytest.skip(f"{name} is not on this machine: {e}")
    return build_loaders(cfg.data, cfg.recipe, CPU, seed), cfg


@pytest.mark.parametrize("name", DATASETS.names())
def test_validation_is_a_stratified_part_of_the_training_split_fixed_by_the_data_seed(name, tmp_path):
    kinds = ["dataloader"] if name == "imagefolder" else ["device", "dataloader"]
    seen = {}
    for kind in kinds:
        loaders, cfg = loaders_of(name, tmp_path, kind)
        assert loaders.kind == kind
        xv, yv = collect(loaders.val)
        n = loaders.train.size + loaders.val.size
        assert loaders.val.size == len(yv) == math.ceil(cfg.data.val_fraction * n)
        assert loaders.sizes(cfg.data) == {"train_size": loaders.train.size, "val_size": len(yv),
                                           "test_size": loaders.test.size, "val_fraction": cfg.data.val_fraction,
                                           "data_seed": 0}
        # stratified: every class keeps its share of the split, to within one image
        if kind == "device":
            ytr = loaders.train.labels.numpy()
            for c in np.unique(np.concatenate([ytr, yv])):
                total = (ytr == c).sum() + (yv == c).sum()
                assert abs((yv == c).sum() - cfg.data.val_fraction * total) <= 1, c
        seen[kind] = (xv, yv)
    if len(seen) == 2:  # both data paths hold out the same images, in the same order
        assert np.array_equal(seen["device"][1], seen["dataloader"][1])
        assert np.allclose(seen["device"][0], seen["dataloader"][0], atol=1e-5)
    kind = kinds[0]
    # the run's seed does not move the split; the data seed does; train_limit takes from what is left
    same = collect(loaders_of(name, tmp_path, kind, seed=7)[0].val)[1]
    assert np.array_equal(same, seen[kind][1])
    other = loaders_of(name, tmp_path, kind, data_seed=1)[0]
    assert not np.array_equal(collect(other.val)[0], seen[kind][0])
    limited, _ = loaders_of(name, tmp_path, kind, train_limit=10)
    assert limited.train.size == 10 and np.array_equal(collect(limited.val)[1], seen[kind][1])


def test_an_impossible_hold_out_names_the_setting():
    cfg = resolve({"data": {"val_fraction": 0.001}})
    with pytest.raises(DatasetError, match=r"data.val_fraction 0.001 cannot hold out a stratified part of 1437"):
        build_loaders(cfg.data, cfg.recipe, CPU, 0)


LABELS = {  # label vectors that exercise every branch: even shares, tied remainders, a rare class, many classes
    "digits": lambda rng: create_dataset("digits").load("train")[1],
    "balanced": lambda rng: np.repeat(np.arange(10), 50),
    "uneven": lambda rng: rng.choice(7, size=333, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.03, 0.02]),
    "rare class": lambda rng: np.concatenate([rng.integers(0, 5, 200), [5, 5]]),
    "strings": lambda rng: np.array(["cat", "dog", "eel"])[rng.integers(0, 3, 101)],
    "many classes": lambda rng: rng.integers(0, 100, 1000),
    "a class of one": lambda rng: np.concatenate([np.repeat(np.arange(3), 10), [3]]),  # refused
    "too few images": lambda rng: np.repeat(np.arange(10), 3),  # refused below a fraction of 1/3
}


@pytest.mark.parametrize("labels", LABELS)
def test_the_hold_out_is_scikit_learns_stratified_split_index_for_index(labels):
    """`holdout` replaces StratifiedShuffleSplit (whose import costs 1.5 s a process): every index must be the same,
    or every validation set and every result of a study would move."""
    from sklearn.model_selection import StratifiedShuffleSplit

    from harness.datasets import holdout
    rng = np.random.default_rng(list(LABELS).index(labels))
    y = LABELS[labels](rng)
    for fraction in (0.1, 0.2, 0.37, 0.5):
        for seed in (0, 1, 7, 12345):
            try:
                expected = [np.sort(part) for part in next(StratifiedShuffleSplit(
                    n_splits=1, test_size=fraction, random_state=seed).split(np.zeros(len(y)), y))]
            except ValueError:  # scikit-learn refuses it: so must we, naming the setting
                with pytest.raises(DatasetError, match=f"data.val_fraction {fraction:g} cannot hold out"):
                    holdout(y, fraction, seed)
                continue
            train, val = holdout(y, fraction, seed)
            assert np.array_equal(train, expected[0]) and np.array_equal(val, expected[1]), (labels, fraction, seed)


def test_digits_are_scikit_learns_read_without_importing_it():
    from sklearn.datasets import load_digits
    digits = load_digits()
    images, labels = np.concatenate([create_dataset("digits").load(s)[0] for s in ("train", "test")]), \
        np.concatenate([create_dataset("digits").load(s)[1] for s in ("train", "test")])
    order = np.random.default_rng(0).permutation(1797)
    assert np.array_equal(labels, digits.target[order])
    assert np.array_equal(images[:, 0], np.round(digits.images[order] * (255.0 / 16.0)).astype(np.uint8))


def epochs(*rows: tuple[float, float, float]) -> list[dict]:
    """Per-epoch records from (val_loss, val_top1, test_top1)."""
    return [{"epoch": e, "train_loss": 1.0, "train_top1": 50.0, "val_loss": loss, "val_top1": val, "val_top5": 99.0,
             "test_loss": 1.0, "test_top1": test, "test_top5": test + 1} for e, (loss, val, test) in enumerate(rows)]


def test_the_selected_epoch_is_the_first_best_on_validation_never_on_test():
    history = epochs((1.0, 50, 60), (1.0, 70, 40), (float("nan"), 90, 10), (1.0, 70, 99))
    m = final_metrics(history, has_val=True)
    # epoch 2 diverged (its validation loss is NaN), epochs 1 and 3 tie on validation: the earlier one; test 99 at
    # epoch 3 is never looked at
    assert (m["selected_epoch"], m["val_top1_selected"], m["test_top1_selected"]) == (1, 70, 40)
    assert m["selected_by"] == "val_top1" and m["test_top1"] == 99 and m["epochs"] == 4


def test_without_validation_the_final_epoch_is_selected_and_said_so(tmp_path):
    cfg = resolve(TINY_BASE, {"data.val_fraction": 0.0, "bench.enabled": False, "bench.erf": False})
    result = train(cfg, tmp_path / "run")
    m = result["metrics"]
    assert result["data"]["val_size"] == 0 and result["data"]["train_size"] == 1437
    assert m["val_top1"] is None and m["val_top1_selected"] is None and m["selected_by"] == "final epoch"
    assert m["selected_epoch"] == m["epochs"] - 1 and m["test_top1_selected"] == m["test_top1"]
    assert not (tmp_path / "run" / "erf.npz").exists()


PERMUTED_TEST = '''
import numpy as np
from harness.datasets import DATASETS, Digits


@DATASETS.register("digits_permuted_test")
class DigitsPermutedTest(Digits):
    """The digits with their test labels shuffled: what a test set that nobody may choose on looks like."""

    def load(self, split):
        images, labels = super().load(split)
        return images, (np.random.default_rng(1).permutation(labels) if split == "test" else labels)
'''


def test_test_labels_cannot_change_any_selection(tmp_path):
    """The same study on the digits and on the digits with their test labels permuted: the validation-selected epoch
    and the `select` choice of learning rate are identical, while every test number moves."""
    (tmp_path / "permuted_test.py").write_text(PERMUTED_TEST)
    base = {**TINY_BASE, "recipe": {**TINY_BASE["recipe"], "epochs": 3}, "bench": {"enabled": False}}
    outcomes = {}
    for dataset in ("digits", "digits_permuted_test"):
        path = write_study(tmp_path, name=dataset, base={**base, "data": {"dataset": dataset}},
                           grid={"recipe.lr": [0.001, 0.01, 0.05]}, seeds=[0, 1], imports=["permuted_test"],
                           select={"metric": "val_top1", "over": ["recipe.lr"]})
        p = run_study(str(path))
        assert p.returncode == 0, p.stdout + p.stderr
        folder = tmp_path / "results" / dataset
        runs = {}
        for result in (json.loads(f.read_text()) for f in folder.glob("runs/*/result.json")):
            runs[(result["config"]["recipe"]["lr"], result["config"]["seed"])] = result["metrics"]
        cells = pd.read_csv(folder / "tables" / "cells.csv")
        outcomes[dataset] = runs, dict(zip(cells["recipe.lr"], cells["selected"]))
    (runs, chosen), (permuted_runs, permuted_chosen) = outcomes.values()
    assert chosen == permuted_chosen and sum(chosen.values()) == 1
    assert runs.keys() == permuted_runs.keys() and len(runs) == 6
    for key, metrics in runs.items():
        other = permuted_runs[key]
        for name in ("selected_epoch", "val_top1", "val_loss", "val_top1_selected", "train_loss"):
            assert metrics[name] == other[name], (key, name)
        assert metrics["test_loss"] != other["test_loss"] and metrics["test_top1"] != other["test_top1"], key

"""The README's claims about resuming and about the torch-free dry run, checked with their stated scope."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_study

from harness.attempt import Interrupted
from harness.config import resolve
from harness.records import RunDir
from harness.train import train
from runner.spec import expand, load_spec
from runner.validation import validate_cells

# the DataLoader path (data.loader: dataloader) on the digits, deterministic settings, on the CPU
DATALOADER_RUN = {"model": {"dim": 32, "depth": 2, "patch_size": 1, "kernel_size": 3},
                  "data": {"dataset": "digits", "loader": "dataloader"},
                  "recipe": {"name": "small", "epochs": 3, "batch_size": 64, "lr": 0.01},
                  "system": {"device": "cpu", "layout": "contiguous", "threads": 1, "deterministic": True},
                  "bench": {"enabled": False}}
# With workers, each worker's random state (the per-image augmentation) is not in the checkpoint: a resumed run
# draws other augmentations from the restart on, so it ends near, not at, the uninterrupted run. The README states
# this tolerance: final test top-1 within 5 points (18 of the 360 test images).
WORKER_TOLERANCE_POINTS = 5.0


def _curve(run: Path) -> list[dict]:
    """Per-epoch metrics without the timings, which differ between any two runs."""
    return [{k: v for k, v in m.items() if not k.endswith("_s")} for m in RunDir(run).read_metrics()]


def _interrupted_then_resumed(cfg, run: Path) -> dict:
    """Train until the first epoch checkpoint exists, stop there (status interrupted), then resume to the end."""
    checkpoint = run / "checkpoint.pt"
    with pytest.raises(Interrupted):
        train(cfg, run, stop=checkpoint.exists)
    assert json.loads(RunDir(run).state.read_text())["status"] == "interrupted"
    assert len(RunDir(run).read_metrics()) == 1
    return train(cfg, run)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_dataloader_path_resumes_exactly_without_workers_and_within_tolerance_with_them(tmp_path, workers):
    cfg = resolve(DATALOADER_RUN, {"data.num_workers": workers})
    whole = train(cfg, tmp_path / "whole")
    resumed = _interrupted_then_resumed(cfg, tmp_path / "resumed")
    assert whole["execution"]["loader"] == resumed["execution"]["loader"] == "dataloader"
    assert whole["status"] == resumed["status"] == "done"
    if workers == 0:  # the transforms draw from the main process's random streams, which the checkpoint holds
        assert _curve(tmp_path / "resumed") == _curve(tmp_path / "whole")
        assert resumed["metrics"] == whole["metrics"]
    else:
        a, b = whole["metrics"]["test_top1"], resumed["metrics"]["test_top1"]
        assert abs(a - b) <= WORKER_TOLERANCE_POINTS, (a, b)
        assert _curve(tmp_path / "resumed")[0] == _curve(tmp_path / "whole")[0]  # epoch 0 ran before the stop


def test_the_validation_cache_is_keyed_by_the_torch_and_timm_versions(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENMIX_CACHE", str(tmp_path / "cache"))
    spec = load_spec(write_study(tmp_path))
    cells = expand(spec)
    verdicts = tmp_path / "cache" / "validated"
    validate_cells(spec, cells, "tiny.yaml")
    validate_cells(spec, cells, "tiny.yaml")
    assert len(list(verdicts.iterdir())) == 1  # the same code, versions and models: checked once
    installed = importlib.metadata.version
    for package in ("torch", "timm"):
        monkeypatch.setattr(importlib.metadata, "version",
                            lambda name, p=package: "0.0.1" if name == p else installed(name))
        validate_cells(spec, cells, "tiny.yaml")
    assert len(list(verdicts.iterdir())) == 3  # another torch, then another timm: each checked again


def test_a_dry_run_imports_torch_and_timm_only_when_its_models_are_not_yet_checked(tmp_path):
    study = write_study(tmp_path)
    probe = ("import json, sys, runner.cli; code = runner.cli.main([sys.argv[1], '--dry-run']); "
             "print(json.dumps([code, sorted(m for m in ('torch', 'timm') if m in sys.modules)]))")

    def dry_run() -> list:
        done = subprocess.run([sys.executable, "-c", probe, str(study)], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "TOKENMIX_CACHE": str(tmp_path / "cache")})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    assert dry_run() == [0, ["timm", "torch"]]  # a cold cache: the models are built on the meta device
    assert dry_run() == [0, []]         # the verdict is cached: neither torch nor timm is imported

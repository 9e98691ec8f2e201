"""Tracking sinks (harness/tracking.py): TensorBoard event files per run of a study, a W&B run per cell in offline
mode with the cell's parameters as its config; neither changes a run id."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY_BASE, write_study

from harness.config import resolve
from runner.cli import main as run_study

pytestmark = pytest.mark.slow  # real training runs


def test_a_study_with_tensorboard_tracking_writes_event_files_per_run(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    study = write_study(tmp_path, run={"executor": "debug", "tracking": ["tensorboard"]})
    assert run_study([str(study)]) == 0
    runs = sorted((tmp_path / "results" / "tiny" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        events = EventAccumulator(str(run / "tensorboard")).Reload()
        curve = [e.value for e in events.Scalars("test_top1")]
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert curve == pytest.approx([e["test_top1"] for e in epochs]) and len(curve) == TINY_BASE["recipe"]["epochs"]
    recorded = yaml.safe_load((tmp_path / "results" / "tiny" / "study.yaml").read_text())
    assert recorded["base"]["system"]["tracking"] == ["tensorboard"]


def test_tracking_does_not_change_the_run_id() -> None:
    plain = resolve(TINY_BASE)
    tracked = resolve(TINY_BASE, {"system.tracking": ["tensorboard"]})
    assert tracked.system.tracking == ["tensorboard"] and tracked.run_id == plain.run_id


def test_wandb_logs_a_cell_offline_with_its_parameters(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(TINY_BASE))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "harness.cli", str(config), "system.tracking=[wandb]", "--out",
                           str(tmp_path / "run"), "--no-progress"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    offline = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    record = next(offline[0].glob("run-*.wandb")).read_bytes()  # W&B's record log: protobufs holding JSON values
    model = json.dumps(resolve(TINY_BASE).to_dict()["model"], separators=(",", ":")).encode()
    assert model in record and record.count(b"test_top1") >= TINY_BASE["recipe"]["epochs"]

"""The worked example of `imports:`: studies/plugin_example.yaml trains a mixer from studies/plugins/, run from
another current folder (module paths are relative to the study file)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_the_plugin_example_study_runs_from_any_folder(tmp_path: Path) -> None:
    env = {**os.environ, "TOKENMIX_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "runner", str(ROOT / "studies" / "plugin_example.yaml"),
                           "recipe.epochs=1", "--results", str(tmp_path / "results")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(tmp_path / "results" / "plugin_example" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["model.mixer"] for r in rows) == ["dwconv", "identity", "shift"]
    assert all(r["status"] == "done" for r in rows)
    shift = next(r for r in rows if r["model.mixer"] == "shift")
    identity = next(r for r in rows if r["model.mixer"] == "identity")
    assert int(shift["params"]) == int(identity["params"])  # shifting has no parameters of its own

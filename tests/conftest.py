"""Shared fixtures: tiny real studies on the digits, and the local SLURM cluster."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# a small ConvMixer on sklearn's digits: a few seconds per cell on one core
TINY_BASE: dict[str, Any] = {
    "model": {"block": "convmixer", "dim": 16, "depth": 1, "patch_size": 2, "kernel_size": 3},
    "data": {"dataset": "digits"},
    "recipe": {"name": "small", "epochs": 2, "batch_size": 256},
    "system": {"device": "cpu", "layout": "contiguous", "threads": 1},
    "bench": {"batch_size": 16, "warmup": 1, "iters": 1},
}


def write_study(folder: Path, name: str = "tiny", **fields: Any) -> Path:
    """A study file under `folder` whose results go to folder/results; `fields` replace the defaults (`run` and
    `report` are merged into them). Its report draws no figures (2.5 s less per finished run-study) unless a test
    asks for them with report={"figures": True}."""
    study = {"name": name, "base": TINY_BASE, "grid": {"model.mixer": ["dwconv", "identity"]}, "seeds": [0],
             "run": {"executor": "local", "results": str(folder / "results")}, "report": {"figures": False}}
    for key, value in fields.items():
        study[key] = {**study[key], **value} if isinstance(value, dict) and key in ("run", "report") else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               process: subprocess.Popen | None = None) -> None:
    """Poll an observable condition (a file another process writes); fail with `what` after `timeout` s, or at once
    when `process` (a run-study under test) has ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            pytest.fail(f"run-study ended before {what}: {out}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_study(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The `run-study` command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The local single-node cluster that slurm/cluster-up.sh starts (CI starts it before the tests).

    Skips where no cluster runs, except under TOKENMIX_REQUIRE_SLURM=1 (CI), where a missing cluster fails."""
    ok = shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).returncode == 0
    if not ok:
        skip_unless_required("no SLURM cluster answers sinfo (start one with: bash slurm/cluster-up.sh)",
                             "TOKENMIX_REQUIRE_SLURM")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/test_slurm*.py needs the cluster: marked `slurm` (`pytest -m "not slurm"` leaves them).
    Tests that need the cluster run one at a time, in one xdist group: its one node has two CPUs, and a test that
    preempts or times out a job must have it to itself."""
    for item in items:
        if item.path.name.startswith("test_slurm"):
            item.add_marker(pytest.mark.slurm)
        if item.get_closest_marker("slurm") or "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))


def skip_unless_required(message: str, require_env: str) -> NoReturn:
    """Skip for want of an outside resource, or fail where `require_env`=1 says it must be there (CI)."""
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{message} ({require_env}=1)")
    pytest.skip(message)

"""The study runner against a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd), through submitit.

CI starts the cluster with slurm/cluster-up.sh and sets TOKENMIX_REQUIRE_SLURM=1, so these tests run there or fail.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, TINY_BASE, run_study, wait_until, write_study

from harness.config import resolve
from harness.records import RunDir
from harness.train import train

pytestmark = pytest.mark.usefixtures("slurm_cluster")
SLURM = {"executor": "slurm", "partition": "debug", "cpus_per_task": 1, "mem_gb": 1, "timeout_min": 60,
         "array_parallelism": 2}
# about a second per epoch on one core: long enough to interrupt, short enough for CI
SLOW_BASE = {**TINY_BASE, "model": {**TINY_BASE["model"], "dim": 48, "depth": 2},
             "recipe": {**TINY_BASE["recipe"], "epochs": 8, "batch_size": 64},
             "system": {**TINY_BASE["system"], "deterministic": True}, "bench": {"enabled": False}}


def slurm_study(tmp_path: Path, name: str, run: dict[str, Any] | None = None, **fields: Any) -> Path:
    return write_study(tmp_path, name, run={**SLURM, **(run or {})}, **fields)


def states(tmp_path: Path, name: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())
            for p in (tmp_path / "results" / name / "runs").glob("*/state.json")}


def checkpoint_epoch(run: Path) -> int:
    try:
        return torch.load(run / "checkpoint.pt", weights_only=False)["epoch"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


def popen_study(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_array_study_lands_every_result(tmp_path):
    # a cluster whose MaxArraySize is 3: the 4 cells go as two arrays, of 3 and 1
    path = slurm_study(tmp_path, "array", run={"max_array_size": 3},
                       grid={"model.mixer": ["dwconv", "identity"], "model.patch_size": [1, 2]})
    p = run_study(str(path), "--wait")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "submitted 3 cells as SLURM array" in p.stdout and "submitted 1 cell as SLURM job" in p.stdout
    found = states(tmp_path, "array")
    assert len(found) == 4 and {s["status"] for s in found.values()} == {"done"}
    job_ids = [s["job_ids"][-1] for s in found.values()]
    arrays: dict[str, list[int]] = {}
    for j in job_ids:  # "<array>_<task>"; a chunk of one cell is a plain job, "<id>"
        array, _, task = j.partition("_")
        arrays.setdefault(array, []).append(int(task or 0))
    assert sorted(sorted(tasks) for tasks in arrays.values()) == [[0], [0, 1, 2]]
    snapshot = tmp_path / "results" / "array" / ".snapshot"
    for run_id in found:
        result = json.loads((tmp_path / "results" / "array" / "runs" / run_id / "result.json").read_text())
        assert result["status"] == "done" and result["env"]["slurm_job_id"] is not None
        assert Path(result["env"]["code_path"]).parent == snapshot.resolve()  # queued jobs ran the snapshot
    status = run_study(str(path), "--status")
    assert "4 cells: 4 done" in status.stdout and all(j in status.stdout for j in job_ids)


@pytest.mark.parametrize("timeout_min", [60, 5])  # 5: submitit alone would take the preemption for a time limit
def test_preempted_cell_resumes_from_its_checkpoint_with_the_same_result(tmp_path, timeout_min):
    # the cell takes both CPUs, so a job in the higher-priority `urgent` partition must preempt it
    path = slurm_study(tmp_path, "preempt", run={"cpus_per_task": 2, "timeout_min": timeout_min}, base=SLOW_BASE,
                       grid={"model.mixer": ["dwconv"]})
    runner = popen_study(str(path), "--wait")
    wait_until(lambda: any((tmp_path / "results" / "preempt" / "runs").glob("*/checkpoint.pt")), 300,
               "the first checkpoint", runner)
    run = next((tmp_path / "results" / "preempt" / "runs").glob("*/checkpoint.pt")).parent
    wait_until(lambda: checkpoint_epoch(run) >= 2, 300, "the checkpoint after epoch 2", runner)
    urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", "2", "--mem=100M", "-o", "/dev/null",
                             "--wrap", "true"], capture_output=True, text=True, check=True)
    out = runner.communicate(timeout=600)[0]
    assert runner.returncode == 0, out
    state = json.loads((run / "state.json").read_text())
    log = (run / "log.txt").read_text()
    # started, preempted, requeued, resumed: two attempts, the first ended by the requeue, nothing charged as a failure
    assert state["status"] == "done" and state["attempts"] == 2 and state["failures"] == 0, state
    first, second = state["attempts_log"]
    assert first["why"] == "preempted" and second["first_epoch"] == first["last_epoch"] + 1, state
    result = json.loads((run / "result.json").read_text())
    assert result["timing"]["train_s"] == pytest.approx(first["train_s"] + second["train_s"], rel=1e-6)
    assert "resumed" in log and "after epoch" in log
    stopped = int(log.split("after epoch ")[1].split()[0])
    assert 1 <= stopped < 7
    sacct = subprocess.run(["sacct", "-n", "-X", "-j", urgent.stdout.strip(), "-o", "State"], capture_output=True,
                           text=True)
    assert "COMPLETED" in sacct.stdout, sacct.stdout  # the preempting job really ran

    # the same cell uninterrupted, in this process
    cfg = resolve(json.loads((run / "config.json").read_text())["config"])
    reference = train(cfg, tmp_path / "reference")
    curve = lambda d: [{k: v for k, v in m.items() if not k.endswith("_s")} for m in RunDir(d).read_metrics()]
    assert curve(run) == curve(tmp_path / "reference")
    assert json.loads((run / "result.json").read_text())["metrics"] == reference["metrics"]


def test_cancelled_cell_shows_interrupted_and_is_the_only_one_resubmitted(tmp_path):
    # the 120-epoch cell is still training when scancel comes; the 4-epoch one finishes
    path = slurm_study(tmp_path, "cancel", base=SLOW_BASE, grid={"recipe.epochs": [4, 120]})
    runner = popen_study(str(path), "--wait")
    running = lambda: [s for s in states(tmp_path, "cancel").values()
                       if s["status"] == "running" and s["job_ids"] and (s.get("last_epoch") or 0) >= 5]
    wait_until(lambda: bool(running()), 300, "a running cell", runner)
    victim = running()[0]["job_ids"][-1]
    subprocess.run(["scancel", victim], check=True)
    out = runner.communicate(timeout=600)[0]
    assert runner.returncode == 1 and "1 cells were interrupted" in out, out

    status = run_study(str(path), "--status")
    assert "1 done" in status.stdout and "1 interrupted" in status.stdout, status.stdout
    assert f"SLURM job {victim}" in status.stdout and "CANCELLED" in status.stdout, status.stdout
    stopped = [s for s in states(tmp_path, "cancel").values() if s["status"] == "interrupted"]
    assert len(stopped) == 1 and victim in stopped[0]["job_ids"] and stopped[0]["failures"] == 0

    again = run_study(str(path), "--wait")
    assert again.returncode == 0 and "submitting 1 of 2 cells" in again.stdout, again.stdout + again.stderr
    assert {s["status"] for s in states(tmp_path, "cancel").values()} == {"done"}


def test_a_cell_that_raises_shows_its_traceback_and_the_others_finish(tmp_path):
    # synthetic data of 0 classes passes validation and raises at run time, drawing its labels
    base = {**TINY_BASE, "data": {"dataset": "synthetic", "options": {"image_size": 8, "train_size": 512}}}
    path = slurm_study(tmp_path, "raises", base=base,
                       grid={"data.options.num_classes": [10, 0], "model.mixer": ["dwconv", "identity"]})
    p = run_study(str(path), "--wait")
    assert p.returncode == 1 and "2 cells failed" in p.stdout, p.stdout + p.stderr
    found = list(states(tmp_path, "raises").values())
    assert sorted(s["status"] for s in found) == ["done", "done", "failed", "failed"]
    status = run_study(str(path), "--status")
    assert status.stdout.count("Traceback (most recent call last)") == 2
    assert "ValueError: high <= 0" in status.stdout

"""A data-parallel cell on the real SLURM cluster: one job of 2 tasks (gloo on the CPU), ranks and rendezvous from
submitit's job environment, matching the single-process run of the same cell."""
from __future__ import annotations

import json
import subprocess

import pytest
from conftest import run_study, wait_until
from test_distributed import DP_BASE, assert_same_training, rank_processes, reference_run
from test_ledger import check_ledger, runs, state
from test_slurm import SLOW_BASE, SLURM, checkpoint_epoch, popen_study, slurm_study

pytestmark = pytest.mark.usefixtures("slurm_cluster")


def test_a_two_task_job_trains_one_cell_like_one_process(tmp_path):
    path = slurm_study(tmp_path, "tiny", run={"tasks_per_node": 2, "mem_gb": 2}, base=DP_BASE,
                       grid={"model.mixer": ["dwconv"]})
    assert SLURM["cpus_per_task"] == 1  # 2 tasks x 1 CPU: the whole node of the test cluster
    p = run_study(str(path), "--wait")
    assert p.returncode == 0, p.stdout + p.stderr
    check_ledger(tmp_path, 3)
    (run,) = runs(tmp_path).values()
    s = state(run)
    assert s["attempts"] == 1 and len(s["job_ids"]) == 1, s
    result = json.loads((run / "result.json").read_text())
    assert result["distributed"] == {"world_size": 2, "per_rank_batch": 32, "sync_bn": True, "backend": "gloo"}
    assert result["env"]["slurm_job_id"] == s["job_ids"][0]  # a cell of its own: a plain job of 2 tasks
    log = (run / "log.txt").read_text()  # rank 0 alone writes the log: each epoch once
    assert [line.split()[1] for line in log.splitlines() if line.startswith("epoch")] == ["0", "1", "2"], log
    assert_same_training(run, reference_run(run, tmp_path / "reference"))
    assert rank_processes(run) == []


def test_a_preempted_two_task_cell_resumes_to_the_single_process_result(tmp_path):
    # the cell's 2 tasks take both CPUs, so a job in the higher-priority `urgent` partition must preempt it
    path = slurm_study(tmp_path, "tiny", run={"tasks_per_node": 2, "mem_gb": 2}, base=SLOW_BASE,
                       grid={"model.mixer": ["dwconv"]})
    runner = popen_study(str(path), "--wait")
    wait_until(lambda: any(checkpoint_epoch(r) >= 2 for r in runs(tmp_path).values()), 300,
               "the checkpoint after epoch 2", runner)
    subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", "2", "--mem=100M", "-o", "/dev/null", "--wrap",
                    "true"], capture_output=True, text=True, check=True)
    out = runner.communicate(timeout=600)[0]
    assert runner.returncode == 0, out
    check_ledger(tmp_path, SLOW_BASE["recipe"]["epochs"])
    (run,) = runs(tmp_path).values()
    s = state(run)
    first, second = s["attempts_log"]  # rank 0 requeued the job; the other rank left without a word
    assert first["why"] == "preempted" and s["failures"] == 0 and second["first_epoch"] == first["last_epoch"] + 1
    assert json.loads((run / "result.json").read_text())["distributed"]["world_size"] == 2
    assert_same_training(run, reference_run(run, tmp_path / "reference"))

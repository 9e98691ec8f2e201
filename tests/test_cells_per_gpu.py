"""Several cells per device (`run.cells_per_gpu`): cells side by side, each measuring its throughput alone.

The lock protocol (harness/share.py) with real processes: a measurer waits for the trainers to pause, a killed
measurer releases them, a cell alone pays nothing. Then real studies: two cells on the CPU at once (local executor),
and on the real SLURM cluster one array task with two cells, requeued under their feet.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, TINY_BASE, run_study, wait_until, write_study

from harness.share import NO_SHARING, SHARE_DIR_ENV, SHARE_ENV, DeviceShare

# a process that holds the CPU "device" as a trainer until `done` exists, then writes its record to `out`
TRAINER = """
import json, sys, time
from pathlib import Path
import torch
from harness.share import DeviceShare
folder, ready, done, out = map(Path, sys.argv[1:])
share = DeviceShare(2, folder)
with share.training(torch.device("cpu")):
    ready.touch()
    while not done.exists():
        share.pause_point()
        sum(range(1000))  # a training step
out.write_text(json.dumps(share.record()))
"""
# a process that measures once: holds the device alone until `release` exists (never, if it is to be killed)
MEASURER = """
import json, sys, time
from pathlib import Path
import torch
from harness.share import DeviceShare
folder, holding, release, out = map(Path, sys.argv[1:])
share = DeviceShare(2, folder)
with share.training(torch.device("cpu")):
    with share.exclusive("throughput"):
        holding.write_text(str(time.time()))
        while not release.exists():
            time.sleep(0.01)
out.write_text(json.dumps(share.record()))
"""


def spawn(script: str, *paths: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, paths)], cwd=ROOT)


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_a_measurer_waits_until_the_trainers_have_paused_and_they_resume_after(tmp_path):
    locks = tmp_path / "locks"
    trainers = [spawn(TRAINER, locks, tmp_path / f"ready{i}", tmp_path / "done", tmp_path / f"trainer{i}.json")
                for i in range(2)]
    for i in range(2):
        wait_until((tmp_path / f"ready{i}").exists, 60, f"trainer {i} to hold the device")
    (tmp_path / "release").touch()  # the measurer measures as soon as it has the device
    measurer = spawn(MEASURER, locks, tmp_path / "holding", tmp_path / "release", tmp_path / "measurer.json")
    assert measurer.wait(timeout=60) == 0
    (tmp_path / "done").touch()
    assert all(t.wait(timeout=60) == 0 for t in trainers)

    measured = json.loads((tmp_path / "measurer.json").read_text())["exclusive"][0]
    alone = (measured["from"], measured["to"])
    for i in range(2):
        record = json.loads((tmp_path / f"trainer{i}.json").read_text())
        assert record["pauses"] == 1, record
        trained = [tuple(t) for t in record["trained"]]
        assert len(trained) == 2 and not any(overlaps(t, alone) for t in trained), (trained, alone)
        assert trained[0][1] <= alone[0] and trained[1][0] >= alone[1]  # it trained before and after


def test_a_killed_measurer_releases_the_trainers_and_the_next_measurer(tmp_path):
    locks = tmp_path / "locks"
    trainer = spawn(TRAINER, locks, tmp_path / "ready", tmp_path / "done", tmp_path / "trainer.json")
    wait_until((tmp_path / "ready").exists, 60, "the trainer to hold the device")
    stuck = spawn(MEASURER, locks, tmp_path / "holding", tmp_path / "never", tmp_path / "stuck.json")
    wait_until((tmp_path / "holding").exists, 60, "the measurer to hold the device alone")
    held_from = float((tmp_path / "holding").read_text())
    killed_at = time.time()
    stuck.send_signal(signal.SIGKILL)
    assert stuck.wait(timeout=30) == -signal.SIGKILL

    (tmp_path / "release").touch()
    second = spawn(MEASURER, locks, tmp_path / "holding2", tmp_path / "release", tmp_path / "second.json")
    assert second.wait(timeout=60) == 0  # the dead measurer's locks went with it
    (tmp_path / "done").touch()
    assert trainer.wait(timeout=60) == 0
    trained = [tuple(t) for t in json.loads((tmp_path / "trainer.json").read_text())["trained"]]
    # the trainer had paused for the killed measurer, and trained again only after the kill
    assert trained[0][1] <= held_from and trained[1][0] >= killed_at, (trained, held_from, killed_at)


def test_a_cell_alone_on_its_device_pays_nothing(tmp_path):
    env = {SHARE_DIR_ENV: str(tmp_path)}
    assert DeviceShare.from_env(env) is NO_SHARING and DeviceShare.from_env({**env, SHARE_ENV: "1"}) is NO_SHARING
    stop = lambda: False  # noqa: E731
    assert NO_SHARING.steps(stop) is stop  # the per-step callback is the trainer's own: no call added
    with NO_SHARING.training(torch.device("cpu")), NO_SHARING.exclusive("throughput"):
        NO_SHARING.pause_point()
    assert NO_SHARING.record() is None and not list(tmp_path.iterdir())  # no lock file, nothing recorded
    shared = DeviceShare.from_env({**env, SHARE_ENV: "2"})
    assert shared.cells == 2 and shared.folder == tmp_path and not shared.mps


@pytest.mark.parametrize("run,message", [({"cells_per_gpu": 0}, "run.cells_per_gpu: must be >= 1"),
                                         ({"cells_per_gpu": 2, "parallel": 2}, "run.cells_per_gpu: set either")])
def test_a_wrong_cells_per_gpu_is_one_clear_error(tmp_path, run, message):
    p = run_study(str(write_study(tmp_path, "wrong", run=run)))
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "results").exists()


def sharing_records(results: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text()) for p in results.glob("runs/*/result.json")}


def assert_measured_alone(records: dict[str, dict[str, Any]]) -> None:
    """Each cell's lock holds: it measured while no other cell trained, and the cells trained at the same time."""
    for run_id, record in records.items():
        sharing = record["execution"]["sharing"]
        assert sharing["cells_per_device"] == 2 and sharing["mps"] is False, sharing
        assert "throughput" in [e["what"] for e in sharing["exclusive"]], sharing
        for other_id, other in records.items():
            if other_id == run_id:
                continue
            theirs = [tuple(t) for t in other["execution"]["sharing"]["trained"]]
            for e in sharing["exclusive"]:
                assert not any(overlaps((e["from"], e["to"]), t) for t in theirs), (run_id, e, other_id, theirs)
            mine = [tuple(t) for t in sharing["trained"]]
            assert any(overlaps(a, b) for a in mine for b in theirs), (mine, theirs)  # side by side


def test_two_cells_share_the_cpu_and_each_measures_its_throughput_alone(tmp_path, monkeypatch):
    monkeypatch.setenv(SHARE_DIR_ENV, str(tmp_path / "locks"))
    # 100 epochs (about 5 s of training) so that the cells overlap however far apart their workers start: with 4, one
    # cell could finish before the other's worker had imported torch
    base = {**TINY_BASE, "recipe": {**TINY_BASE["recipe"], "epochs": 100}}
    path = write_study(tmp_path, "pair", base=base, run={"cells_per_gpu": 2})
    p = run_study(str(path))
    assert p.returncode == 0, p.stdout + p.stderr
    records = sharing_records(tmp_path / "results" / "pair")
    assert len(records) == 2 and all(r["status"] == "done" and r["throughput"] for r in records.values())
    assert all(len(r["attempts"]) == 1 for r in records.values())
    assert_measured_alone(records)
    # two workers, each with half the cores
    assert len(list((tmp_path / "results" / "pair" / ".local").glob("worker-*.log"))) == 2


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.parametrize("requeue", [False, True])
def test_one_slurm_job_trains_two_cells_side_by_side_and_a_requeue_resumes_both_once(tmp_path, requeue):
    from test_slurm import SLOW_BASE, popen_study, slurm_study, states
    # the requeued job's trainers ignore SIGTERM (as a one-cell job's do) and die KillWait (5 s) later: long enough
    # cells that the kill lands mid-training (0.3 s an epoch)
    base = {**SLOW_BASE, "recipe": {**SLOW_BASE["recipe"], "epochs": 40 if requeue else 8},
            "bench": {**TINY_BASE["bench"], "enabled": True}}
    name = "group_requeue" if requeue else "group"
    path = slurm_study(tmp_path, name, base=base, run={"cells_per_gpu": 2},
                       grid={"model.mixer": ["dwconv", "identity"]})
    runner = popen_study(str(path), "--wait")
    epochs = base["recipe"]["epochs"]
    if requeue:
        both = lambda: [s for s in states(tmp_path, name).values()  # noqa: E731
                        if s["status"] == "running" and (s.get("last_epoch") or -1) >= 1]
        wait_until(lambda: len(both()) == 2, 300, "both cells past epoch 1", runner)
        subprocess.run(["scontrol", "requeue", both()[0]["job_ids"][-1]], check=True, capture_output=True)
    out = runner.communicate(timeout=600)[0]
    assert runner.returncode == 0, out
    assert "submitted 2 cells, 2 per job, as SLURM job" in out, out
    final = states(tmp_path, name)
    assert {s["status"] for s in final.values()} == {"done"}, final
    (job,) = {s["job_ids"][-1] for s in final.values()}  # one job for both
    assert all(s["job_ids"] == [job] and s["failures"] == 0 for s in final.values()), final
    assert all(s["attempts"] == (2 if requeue else 1) for s in final.values()), final
    results = tmp_path / "results" / name
    for run in results.glob("runs/*"):
        lines = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert lines == list(range(epochs)), lines  # each epoch once, resumed where it stopped
    records = sharing_records(results)
    assert len(records) == 2 and all(r["status"] == "done" for r in records.values())
    assert_measured_alone(records)  # a record holds its last attempt's lock holds: both cells' are of the same job run


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_a_preemption_warning_requeues_the_group_and_each_cell_resumes_once(tmp_path):
    from test_slurm import SLOW_BASE, popen_study, slurm_study, states
    # SLURM's warning signal, sent by hand (as a preemption sends it): to every process of the job, the group's and
    # its trainers'; far from the time limit, so it is taken for a preemption
    base = {**SLOW_BASE, "recipe": {**SLOW_BASE["recipe"], "epochs": 40}}
    path = slurm_study(tmp_path, "group_warned", base=base, grid={"model.mixer": ["dwconv", "identity"]},
                       run={"cells_per_gpu": 2, "cpus_per_task": 2})
    runner = popen_study(str(path), "--wait")
    both = lambda: [s for s in states(tmp_path, "group_warned").values()  # noqa: E731
                    if s["status"] == "running" and (s.get("last_epoch") or -1) >= 1]
    wait_until(lambda: len(both()) == 2, 300, "both cells past epoch 1", runner)
    subprocess.run(["scancel", "--signal=USR2", both()[0]["job_ids"][-1]], check=True, capture_output=True)
    out = runner.communicate(timeout=600)[0]
    assert runner.returncode == 0, out
    final = states(tmp_path, "group_warned")
    assert len({s["job_ids"][-1] for s in final.values()}) == 1, final
    for run in (tmp_path / "results" / "group_warned").glob("runs/*"):
        state = json.loads((run / "state.json").read_text())
        # the group told each trainer why: each ended its cell `queued` (never failed or interrupted), then resumed
        assert [a["why"] for a in state["attempts_log"]] == ["preempted", "done"], state
        assert state["status"] == "done" and state["failures"] == 0 and state["attempts"] == 2, state
        lines = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert lines == list(range(40)), lines


def test_a_cell_with_no_other_to_share_with_runs_alone_and_records_no_sharing(tmp_path, monkeypatch):
    monkeypatch.setenv(SHARE_DIR_ENV, str(tmp_path / "locks"))
    path = write_study(tmp_path, "single", grid={"model.mixer": ["dwconv"]}, run={"cells_per_gpu": 2})
    p = run_study(str(path))
    assert p.returncode == 0, p.stdout + p.stderr
    (record,) = sharing_records(tmp_path / "results" / "single").values()
    assert record["status"] == "done" and record["execution"]["sharing"] is None, record["execution"]
    assert not (tmp_path / "locks").exists()  # the null protocol: no lock file was made

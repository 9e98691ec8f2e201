"""The study ledger on the real local SLURM cluster under faults caused for real: the runner killed around `sbatch`,
`sbatch` refusing one chunk of several, a requeue of a finished job, slurmctld restarted mid-study, a time limit, a
request no node can meet, and `--wait` coming back later. After each: one result per cell, one job per attempt,
true attempt counts.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_study, wait_until
from test_slurm import SLOW_BASE, popen_study, slurm_study, states

pytestmark = pytest.mark.usefixtures("slurm_cluster")


def counted(command: str, tmp_path: Path, body: str = 'exec $REAL "$@"') -> dict[str, str]:
    """An environment whose `command` is a script: `body` runs with $REAL (the real command) and $N (the call count,
    also in <tmp_path>/<command>.calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / command
    script.write_text(f"#!/bin/bash\nREAL={shutil.which(command)}\nCOUNT={tmp_path}/{command}.calls\n"
                      f"N=$(( $(cat $COUNT 2>/dev/null || echo 0) + 1 )); echo $N > $COUNT\n{body}\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def test_a_refused_chunk_charges_nothing_and_the_chunks_that_went_in_are_not_submitted_again(tmp_path):
    # three one-cell chunks; the second sbatch fails as a busy controller would make it
    path = slurm_study(tmp_path, "refused", run={"max_array_size": 1},
                       grid={"model.mixer": ["dwconv", "identity", "pool"]})
    env = counted("sbatch", tmp_path, 'if [ "$N" = 2 ]; then echo "sbatch: error: Batch job submission failed: '
                                'Socket timed out on send/recv operation" >&2; exit 1; fi\nexec $REAL "$@"')
    first = run_env(str(path), env=env)
    out = first.stdout + first.stderr
    assert first.returncode == 1 and "Traceback" not in out, out
    assert "sbatch refused 1 cells: " in first.stderr and "Socket timed out" in first.stderr, out
    found = states(tmp_path, "refused")
    submitted = [s for s in found.values() if s["job_ids"]]
    assert len(submitted) == 1 and submitted[0]["status"] in ("queued", "running", "done"), found
    untouched = [s for s in found.values() if not s["job_ids"]]  # the third chunk was never tried: no state yet
    assert len(untouched) + 3 - len(found) == 2, found
    assert all(s["status"] == "new" and s["attempts"] == 0 for s in untouched), found

    again = run_study(str(path), "--wait")
    assert again.returncode == 0 and "submitting 2 of 3 cells" in again.stdout, again.stdout + again.stderr
    final = states(tmp_path, "refused")
    assert {s["status"] for s in final.values()} == {"done"}
    assert all(len(s["job_ids"]) == 1 and s["attempts"] == 1 and s["failures"] == 0 for s in final.values()), final


@pytest.mark.parametrize("moment", ["before sbatch", "after sbatch"])
def test_a_runner_killed_around_sbatch_leaves_no_cell_stuck_and_no_second_job(tmp_path, moment):
    name = f"killed_{moment.split()[0]}"
    path = slurm_study(tmp_path, name, grid={"model.mixer": ["dwconv", "identity"]})
    marker = tmp_path / "in-sbatch"
    submit = 'OUT=$($REAL "$@") || exit 1; echo "$OUT"'
    body = (f"touch {marker}; sleep 600; {submit}" if moment == "before sbatch" else
            f'OUT=$($REAL "$@") || exit 1; touch {marker}; sleep 600; echo "$OUT"')
    env = counted("sbatch", tmp_path, body)
    runner = subprocess.Popen([sys.executable, "-m", "runner", str(path)], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(marker.exists, 120, "the runner to be inside sbatch", runner)
    os.killpg(runner.pid, signal.SIGKILL)  # the runner and its sbatch, as a lost node or an OOM kill would
    runner.wait()
    stuck = states(tmp_path, name)
    assert {s["status"] for s in stuck.values()} == {"submitting"}, stuck  # the intent was written first

    status = run_study(str(path), "--status")  # reconciles: finds the job by its name, or hands the cells back
    assert status.returncode == 0, status.stdout + status.stderr
    seen = states(tmp_path, name)
    assert {s["status"] for s in seen.values()} == {"new"} and not any(s["job_ids"] for s in seen.values()), seen
    # after sbatch, the job exists but submitit never handed it its task (the runner died first): it is cancelled
    why = "was submitted but never given its task" if moment == "after sbatch" else "never reached the cluster"
    assert all(why in s["event"] for s in seen.values()), seen
    orphans = {s["event"].split("SLURM job ")[1].split()[0] for s in seen.values() if "SLURM job " in s["event"]}

    again = run_study(str(path), "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    final = states(tmp_path, name)
    assert {s["status"] for s in final.values()} == {"done"}
    assert all(len(s["job_ids"]) == 1 and s["attempts"] == 1 for s in final.values()), final
    assert not orphans & {j for s in final.values() for j in s["job_ids"]}  # the orphaned jobs never trained


def test_a_requeue_after_the_cell_finished_leaves_its_result_untouched(tmp_path):
    path = slurm_study(tmp_path, "requeue", grid={"model.mixer": ["dwconv"]})
    assert run_study(str(path), "--wait").returncode == 0
    (state,) = states(tmp_path, "requeue").values()
    run = next((tmp_path / "results" / "requeue" / "runs").iterdir())
    result = (run / "result.json").read_bytes()
    job = state["job_ids"][-1]
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    runs_of = lambda: subprocess.run(["sacct", "-n", "-X", "-D", "-j", job, "-o", "State"], capture_output=True,
                                     text=True).stdout.split()
    # accounting then has two records of the job: the first run (now REQUEUED) and the second, ended
    wait_until(lambda: len(runs_of()) >= 2 and runs_of()[-1] in ("COMPLETED", "FAILED"), 300,
               "the requeued job to run again")
    assert runs_of()[-1] == "COMPLETED"
    assert (run / "result.json").read_bytes() == result
    after = json.loads((run / "state.json").read_text())
    assert after["status"] == "done" and after["attempts"] == 1, after
    assert "already finished" in (run / "log.txt").read_text()
    status = run_study(str(path), "--status")
    assert "1 cells: 1 done" in status.stdout, status.stdout


def test_wait_after_a_plain_submit_blocks_until_the_cells_end(tmp_path):
    path = slurm_study(tmp_path, "later", grid={"model.mixer": ["dwconv", "identity"]})
    submit = run_study(str(path))
    assert submit.returncode == 0 and "follow with" in submit.stdout, submit.stdout + submit.stderr
    assert {s["status"] for s in states(tmp_path, "later").values()} <= {"queued", "running", "done"}
    wait = run_study(str(path), "--wait")
    assert wait.returncode == 0, wait.stdout + wait.stderr
    assert {s["status"] for s in states(tmp_path, "later").values()} == {"done"}
    assert "2 of 2 runs done" in wait.stdout


@pytest.mark.parametrize("key,value", [("mem_gb", 100000), ("cpus_per_task", 512)])
def test_a_request_no_node_can_meet_is_refused_before_anything_is_written(tmp_path, key, value):
    """... even when sinfo's first answer is an error (a busy controller): it is asked again."""
    path = slurm_study(tmp_path, "huge", run={key: value})
    busy = 'if [ "$N" = 1 ]; then echo "sinfo: error: Socket timed out on send/recv operation" >&2; exit 1; fi\n' \
           'exec $REAL "$@"'
    p = run_env(str(path), env=counted("sinfo", tmp_path, busy))
    assert p.returncode == 2 and f"run.{key}: {value}" in p.stderr and "largest" in p.stderr, p.stdout + p.stderr
    assert int((tmp_path / "sinfo.calls").read_text()) >= 2  # more where the busy cluster itself failed one
    assert "Traceback" not in p.stderr and not (tmp_path / "results").exists()


@pytest.mark.parametrize("daemon,sig", [("slurmctld", "TERM"), ("slurmd", "KILL")])
def test_a_study_survives_a_restart_of_a_slurm_daemon(tmp_path, daemon, sig):
    path = slurm_study(tmp_path, "restart", base=SLOW_BASE, grid={"model.mixer": ["dwconv", "identity"]})
    runner = popen_study(str(path), "--wait")
    wait_until(lambda: any(s["status"] == "running" for s in states(tmp_path, "restart").values()), 300,
               "a running cell", runner)
    pids = subprocess.run(["pgrep", "-x", daemon], capture_output=True, text=True).stdout.split()
    command = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")[:-1]
    subprocess.run(["kill", f"-{sig}", *pids], check=True)
    wait_until(lambda: subprocess.run(["pgrep", "-x", daemon], capture_output=True).returncode != 0, 60,
               f"{daemon} to stop")
    checking = None
    if daemon == "slurmctld":
        assert subprocess.run(["squeue"], capture_output=True).returncode != 0  # the runner polls a silent cluster
        # a study submitted meanwhile waits for sinfo's answer rather than refusing itself for want of a cluster;
        # here its request is too large, which only that answer can show
        checking = subprocess.Popen([sys.executable, "-m", "runner", str(slurm_study(tmp_path, "huge",
                                                                                     run={"mem_gb": 100000}))],
                                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=counted("sinfo", tmp_path))
        wait_until(lambda: (tmp_path / "sinfo.calls").exists(), 120, "the study asking sinfo", checking)
    log = open(tmp_path / f"{daemon}.out", "w")
    subprocess.Popen([c.decode() for c in command], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     start_new_session=True)  # as cluster-up.sh starts it: state recovered from StateSaveLocation
    if checking is not None:
        refused = checking.communicate(timeout=120)[0]
        assert checking.returncode == 2 and "run.mem_gb: 100000" in refused and "largest" in refused, refused
    out = runner.communicate(timeout=600)[0]
    assert runner.returncode == 0, out
    final = states(tmp_path, "restart")
    assert {s["status"] for s in final.values()} == {"done"}, final
    assert all(len(s["job_ids"]) == 1 and s["attempts"] == 1 and s["failures"] == 0 for s in final.values()), final


def test_a_time_limit_requeues_the_cell_which_resumes_and_counts_it(tmp_path):
    # a one-minute limit, the warning 30 s (or, by SLURM's event resolution, more) before it: at most about 24 s of
    # training per job after its start-up. 300 epochs are 40 s of training on an idle 2-core machine (150 were 20 s,
    # which one job finished before the warning): 3 jobs there (each warned after about 100 epochs), more when loaded
    base = {**SLOW_BASE, "recipe": {**SLOW_BASE["recipe"], "epochs": 300}}
    path = slurm_study(tmp_path, "limit", base=base, run={"timeout_min": 1, "signal_delay_s": 30,
                                                          "max_num_timeout": 15}, grid={"model.mixer": ["dwconv"]})
    p = run_study(str(path), "--wait")
    assert p.returncode == 0, p.stdout + p.stderr
    (state,) = states(tmp_path, "limit").values()
    assert state["status"] == "done" and state["failures"] == 0, state
    whys = [a["why"] for a in state["attempts_log"]]
    assert len(whys) >= 2 and set(whys[:-1]) == {"time limit"} and whys[-1] == "done", whys
    assert state["attempts"] == len(whys)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_stopping_a_waiting_runner_leaves_the_jobs_to_the_cluster(tmp_path, sig):
    path = slurm_study(tmp_path, "leave", base=SLOW_BASE, grid={"model.mixer": ["dwconv", "identity"]})
    runner = subprocess.Popen([sys.executable, "-m", "runner", str(path), "--wait"], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: any(s["status"] == "running" for s in states(tmp_path, "leave").values()), 300,
               "a running cell", runner)
    os.killpg(runner.pid, sig)
    out = runner.communicate(timeout=60)[0]
    assert runner.returncode == (130 if sig == signal.SIGINT else -9) and "Traceback" not in out, out
    assert {s["status"] for s in states(tmp_path, "leave").values()} <= {"queued", "running", "done"}
    again = run_study(str(path), "--wait")  # waits for the same jobs; submits nothing
    assert again.returncode == 0 and "submitting" not in again.stdout, again.stdout + again.stderr
    final = states(tmp_path, "leave")
    assert all(s["status"] == "done" and len(s["job_ids"]) == 1 and s["attempts"] == 1 for s in final.values())


@pytest.mark.parametrize("moment", ["running", "finishing"])
def test_a_requeue_of_a_running_job_resumes_the_cell_once(tmp_path, moment):
    path = slurm_study(tmp_path, "requeue_run", base=SLOW_BASE, grid={"model.mixer": ["dwconv"]})
    runner = popen_study(str(path), "--wait")
    epochs = SLOW_BASE["recipe"]["epochs"]
    at = 2 if moment == "running" else epochs - 1  # the last epoch: the job is about to write its result
    reached = lambda: [s for s in states(tmp_path, "requeue_run").values()
                       if s["status"] == "running" and (s.get("last_epoch") or -1) >= at - 1]
    wait_until(lambda: bool(reached()), 300, f"epoch {at}", runner)
    subprocess.run(["scontrol", "requeue", reached()[0]["job_ids"][-1]], check=True, capture_output=True)
    out = runner.communicate(timeout=600)[0]
    assert runner.returncode == 0, out
    run = next((tmp_path / "results" / "requeue_run" / "runs").iterdir())
    state = json.loads((run / "state.json").read_text())
    lines = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert state["status"] == "done" and lines == list(range(epochs)), (state, lines)
    assert state["failures"] == 0 and len(state["job_ids"]) == 1 and state["attempts"] in (1, 2), state
    assert json.loads((run / "result.json").read_text())["status"] == "done"


def test_a_cancelled_pending_job_is_interrupted_uncharged_and_resubmitted(tmp_path):
    # one job at a time: the second cell waits in the queue behind the first
    path = slurm_study(tmp_path, "pending", base=SLOW_BASE, run={"array_parallelism": 1},
                       grid={"model.mixer": ["dwconv", "identity"]})
    runner = popen_study(str(path), "--wait")
    pending = lambda: [s for s in states(tmp_path, "pending").values() if s["status"] == "queued" and s["job_ids"]
                       and any(o["status"] == "running" for o in states(tmp_path, "pending").values())]
    wait_until(lambda: bool(pending()), 300, "a cell pending behind a running one", runner)
    victim = pending()[0]["job_ids"][-1]
    subprocess.run(["scancel", victim], check=True)
    out = runner.communicate(timeout=600)[0]
    assert runner.returncode == 1 and "1 cells were interrupted" in out, out
    stopped = [s for s in states(tmp_path, "pending").values() if s["status"] == "interrupted"]
    assert len(stopped) == 1 and stopped[0]["attempts"] == 0 and stopped[0]["failures"] == 0, stopped
    assert "before it started" in stopped[0]["error"]
    again = run_study(str(path), "--wait")
    assert again.returncode == 0 and "submitting 1 of 2 cells" in again.stdout, again.stdout + again.stderr
    assert all(s["status"] == "done" and s["attempts"] == 1 for s in states(tmp_path, "pending").values())

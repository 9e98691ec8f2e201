"""What a study has done so far, read from its run files alone (so it works where `sacct` does not).

A cell is `new` until the runner claims it; then its run directory's state.json says queued / running / done /
failed / diverged. A cell recorded as queued or running whose job or process is gone without a result
(cancelled, killed, lost) is reconciled to failed, with the reason, so that re-running the study re-submits it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.records import RunDir, now, write_config

from .spec import Cell, StudySpec

ACTIVE = ("queued", "running")


def study_dir(spec: StudySpec) -> Path:
    return Path(spec.run.results) / spec.name


def run_dir(spec: StudySpec, cell: Cell) -> RunDir:
    return RunDir(study_dir(spec) / "runs" / cell.run_id)


@dataclass
class CellStatus:
    cell: Cell
    status: str                 # new | queued | running | done | failed | diverged
    attempts: int = 0
    job_ids: tuple[str, ...] = ()
    last_epoch: int | None = None
    error: str | None = None
    test_top1: float | None = None
    owner: dict[str, Any] | None = None  # who runs it: {"executor", "host", "pid"}


def _read(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        return {"status": "failed", "error": f"{path.name} is unreadable ({e})"}


def read_status(spec: StudySpec, cells: list[Cell]) -> list[CellStatus]:
    out = []
    for cell in cells:
        run = run_dir(spec, cell)
        state = _read(run.state)
        if state is None:
            out.append(CellStatus(cell, "new"))
            continue
        out.append(CellStatus(cell, state.get("status", "new"), state.get("attempts", 0),
                              tuple(state.get("job_ids", ())), state.get("last_epoch"), state.get("error"),
                              state.get("test_top1"), state.get("owner")))
    return out


def _slurm_alive(job_ids: list[str]) -> set[str] | None:
    """The job ids that squeue still lists (pending or running), or None where squeue cannot be asked."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None
    return set(out.stdout.split())


def _slurm_final_states(job_ids: list[str]) -> dict[str, str]:
    """sacct's final state of each job where accounting is on ({} where it is not)."""
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    return dict(line.split("|", 1) for line in out.stdout.splitlines() if "|" in line)


def _pid_alive(owner: dict[str, Any]) -> bool | None:
    if owner.get("host") != socket.gethostname() or not owner.get("pid"):
        return None  # another machine: cannot tell
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reconcile(spec: StudySpec, statuses: list[CellStatus]) -> list[CellStatus]:
    """Mark queued/running cells whose job or process is gone (cancelled, killed, lost) as failed, with why."""
    active = [s for s in statuses if s.status in ACTIVE]
    slurm_cells = [s for s in active if (s.owner or {}).get("executor") == "slurm" and s.job_ids]
    alive = _slurm_alive([s.job_ids[-1] for s in slurm_cells]) if slurm_cells else set()
    gone = []
    if alive is not None:
        gone = [s for s in slurm_cells if s.job_ids[-1] not in alive]
    finals = _slurm_final_states([s.job_ids[-1] for s in gone]) if gone else {}
    for s in gone:
        job = s.job_ids[-1]
        # squeue's view can lag the job's own last write: read the state again before judging
        state = _read(run_dir(spec, s.cell).state) or {}
        if state.get("status") not in ACTIVE:
            s.status, s.error = state.get("status", s.status), state.get("error")
            continue
        how = finals.get(job, "no longer in the queue")
        _mark_failed(spec, s, f"SLURM job {job} ended ({how}) without writing a result")
    for s in active:
        if (s.owner or {}).get("executor") in ("local", "debug") and _pid_alive(s.owner) is False:
            _mark_failed(spec, s, f"process {s.owner['pid']} on {s.owner['host']} ended without writing a result")
    return statuses


def _mark_failed(spec: StudySpec, s: CellStatus, reason: str) -> None:
    run_dir(spec, s.cell).update_state(status="failed", error=reason, event=reason)
    s.status, s.error = "failed", reason


@contextlib.contextmanager
def study_lock(spec: StudySpec) -> Iterator[None]:
    """Held while cells are chosen and claimed, so two runners of one study never submit the same cell twice."""
    folder = study_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".submit.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def claim(spec: StudySpec, cell: Cell, executor: str, study_info: dict[str, Any]) -> None:
    """Write the cell's config and mark it queued for `executor` (one more attempt)."""
    run = run_dir(spec, cell)
    write_config(run, cell.config, study_info)
    previous = run.read_state()
    run.update_state(status="queued", attempts=previous.get("attempts", 0) + 1, error=None,
                     owner={"executor": executor, "host": socket.gethostname(), "pid": os.getpid()},
                     event=f"queued for the {executor} executor at {now()}")

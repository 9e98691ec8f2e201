"""Where a study's cells stand: read from their run files, then reconciled with what is real.

Every command starts with `survey`: each cell's state.json (rebuilt from its ledger if damaged) is read, checked
against its result (a `done` cell whose result.json does not parse is not done), and every cell on its way
(submitting, queued, running) is reconciled by the executor that owns it with the process table, the scheduler and
the run's heartbeat. No in-between state outlives the next command.
"""
from __future__ import annotations

import contextlib
import fcntl
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.records import RunDir, code_label
from harness.status import Status, parse_status

from .spec import Cell, StudySpec


def study_dir(spec: StudySpec) -> Path:
    return Path(spec.run.results) / spec.name


def run_dir(spec: StudySpec, cell: Cell) -> RunDir:
    return RunDir(study_dir(spec) / "runs" / cell.run_id)


@dataclass
class CellStatus:
    cell: Cell
    run: RunDir
    state: dict[str, Any]
    status: Status
    problems: list[str] = field(default_factory=list)   # run files that do not parse, recoveries
    note: str | None = None                              # what the scheduler says (a pending reason ...)
    code: dict[str, Any] | None = None                   # the code a finished cell ran (result.json's `code`)

    @property
    def attempts(self) -> int:
        return int(self.state.get("attempts") or 0)

    @property
    def failures(self) -> int:
        return int(self.state.get("failures") or 0)

    @property
    def error(self) -> str | None:
        return self.state.get("error")

    @property
    def job_ids(self) -> list[str]:
        return list(self.state.get("job_ids") or [])

    @property
    def executor(self) -> str | None:
        return (self.state.get("owner") or {}).get("executor") or self.state.get("executor")

    def stale(self, source: str) -> bool:
        """Finished under other code than `source` (a code hash)."""
        return self.status.final and (self.code or {}).get("source") != source

    def move(self, status: Status, event: str, persist: bool, **changes: Any) -> None:
        """Record a transition found by reconciliation (in memory only when `persist` is false: a dry run)."""
        self.status = status
        self.state.update(status=status.value, **changes)
        if persist:
            self.state = self.run.update_state(event, status=status, **changes)

    def edit(self, event: str, edit: Any, persist: bool) -> None:
        """A transition that needs more than a merge (closing an attempt, say)."""
        if persist:
            self.state = self.run.edit_state(event, edit)
        else:
            edit(self.state)
        self.status = parse_status(self.state.get("status")) or Status.NEW


def read_status(spec: StudySpec, cells: list[Cell]) -> list[CellStatus]:
    """Each cell's recorded state, before reconciliation; damaged files become problems, never crashes."""
    out = []
    for cell in cells:
        run = run_dir(spec, cell)
        state = run.read_state()
        problems = [state.pop("damaged")] if state.get("damaged") else []
        status = parse_status(state.get("status")) or Status.NEW
        s = CellStatus(cell, run, state, status, problems)
        if run.path.exists():
            s.problems += [p for p in run.damage() if not p.startswith("state.json")]
            final = run.final_result(cell.run_id)
            s.code = (final or {}).get("code")
            if status.final and final is None:
                s.status = Status.INTERRUPTED  # a finished cell whose result.json is missing or does not parse
                s.note = "its state says finished but result.json is missing or damaged: trained again from its " \
                         "checkpoint"
            elif final is not None and status is not parse_status(final["status"]):
                s.status = Status(final["status"])  # the result was written; its state write was cut short
        out.append(s)
    return out


def survey(spec: StudySpec, cells: list[Cell], persist: bool = True) -> list[CellStatus]:
    """read_status, then every cell on its way reconciled by its executor (written unless `persist` is false)."""
    from .executors import EXECUTORS, by_executor
    statuses = read_status(spec, cells)
    for s in statuses:
        if persist and s.state.get("status") != s.status.value:  # settled from the run files above
            s.state = s.run.update_state(s.note or "state brought in line with result.json", status=s.status)
    for name, group in by_executor([s for s in statuses if s.status.active]).items():
        EXECUTORS.get(name)(spec).reconcile(group, persist)
    return statuses


def counts(statuses: list[CellStatus]) -> str:
    """`16 cells: 12 done, 3 running, 1 failed`, in the ledger's order of states."""
    c = Counter(s.status for s in statuses)
    return f"{len(statuses)} cells: " + ", ".join(f"{c[k]} {k}" for k in Status if c.get(k))


def code_versions(statuses: list[CellStatus]) -> Counter[str]:
    """How many finished cells ran each code version."""
    return Counter(code_label(s.code) for s in statuses if s.status.final)


@contextlib.contextmanager
def study_lock(spec: StudySpec, blocking: bool = True) -> Iterator[bool]:
    """Held while cells are chosen, claimed and handed to an executor, so that two runners never submit a cell twice
    and no reconciliation runs in the middle of a submission. Yields whether it was taken (never False when
    `blocking`)."""
    folder = study_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".submit.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

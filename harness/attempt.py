"""One attempt at training a run, as the ledger records it.

An attempt is a training that started: the process holds the run's lock, the state says `running`, and an entry in
`attempts_log` says where and when (host, pid, SLURM job id, start). It ends with the run's new state and the entry
closed with the end time, the epochs it trained, its wall and training time and why it ended. An attempt whose process
died without a word (SIGKILL, out of memory, a lost node) is closed by the next reconciliation, from its heartbeat.
Torch-free: the runner closes attempts too.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from .owner import Owner
from .records import RunDir, now
from .runlock import Heartbeat
from .status import Status

# Why an attempt ended (attempts_log[].why).
ENDINGS = ("done", "diverged", "failed", "killed", "interrupted", "preempted", "time limit", "cancelled")


def never() -> bool:
    """The default stop condition: train to the end."""
    return False


class Interrupted(Exception):
    """A stop was asked for (a signal): the run stops at the next step and stays resumable from its checkpoint."""


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def close_attempt(state: dict[str, Any], why: str, end: str | None = None, train_s: float | None = None,
                  last_epoch: int | None = None) -> None:
    """Close the open entry of `attempts_log` (in place): end time, wall time, training time, why."""
    log = state.get("attempts_log") or []
    if not log or log[-1].get("end") is not None:
        return
    entry = log[-1]
    entry["end"] = end or now()
    entry["why"] = why
    entry["wall_s"] = max(0.0, _seconds_between(entry["start"], entry["end"]))
    if train_s is not None:
        entry["train_s"] = train_s
    if last_epoch is not None:
        entry["last_epoch"] = last_epoch


def close_dead_attempt(state: dict[str, Any], beat: dict[str, Any] | None, why: str) -> None:
    """Close an attempt whose process is gone without closing it: it ended at its last sign of life (its last
    heartbeat, or the last state it wrote), so wall and training time are true to within one heartbeat interval."""
    log = state.get("attempts_log") or []
    if not log or log[-1].get("end") is not None:
        return
    entry = log[-1]
    ours = beat is not None and beat.get("attempt") == entry.get("n")
    signs = [t for t in (beat.get("time") if ours else None, state.get("updated")) if t and t >= entry["start"]]
    last = state.get("last_epoch")
    close_attempt(state, why, end=max(signs, default=entry["start"]), train_s=beat.get("train_s") if ours else None,
                  last_epoch=last if last is not None and last >= (entry.get("first_epoch") or 0) else None)


def totals(state: dict[str, Any]) -> dict[str, float]:
    """Wall and training time summed over every attempt (closed ones)."""
    log = state.get("attempts_log") or []
    return {"wall_s": sum(a.get("wall_s") or 0.0 for a in log), "train_s": sum(a.get("train_s") or 0.0 for a in log)}


class Attempt:
    """The bookkeeping of the training process's own attempt: start, per-epoch progress, heartbeat, end."""

    def __init__(self, run: RunDir, owner: Owner, job_id: str | None):
        self.run, self.owner, self.job_id = run, owner, job_id
        self.number = 0
        self.train_s = 0.0
        self.epoch: int | None = None          # the epoch being trained
        self.last_epoch: int | None = None     # the last epoch finished in this attempt
        self._epoch_t0: float | None = None
        self._t0 = time.perf_counter()
        self.heartbeat = Heartbeat(run, owner, self._beat_info)

    def _beat_info(self) -> dict[str, Any]:
        return {"attempt": self.number, "epoch": self.epoch, "job_id": self.job_id, "train_s": self.train_time()}

    def train_time(self) -> float:
        """Time spent training in this attempt, the epoch under way included."""
        return self.train_s + (time.perf_counter() - self._epoch_t0 if self._epoch_t0 is not None else 0.0)

    def wall_time(self) -> float:
        return time.perf_counter() - self._t0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        owner = self.owner.to_dict()
        beat = self.run.read_heartbeat()  # the previous trainer's, if any

        def edit(state: dict[str, Any]) -> None:
            close_dead_attempt(state, beat, "killed")  # an earlier attempt nobody closed: its process died silently
            state["attempts"] = state.get("attempts", 0) + 1
            self.number = state["attempts"]
            state["attempts_log"].append({"n": self.number, "host": self.owner.host, "pid": self.owner.pid,
                                          "job_id": self.job_id, "start": now(), "end": None,
                                          "first_epoch": None, "last_epoch": None, "why": None})
            if self.job_id and self.job_id not in state["job_ids"]:
                state["job_ids"].append(self.job_id)
            state.update(status=Status.RUNNING.value, error=None, owner={**owner, "role": "trainer"})
        self.run.edit_state(f"attempt started by {self.owner}", edit)
        self.heartbeat.__enter__()

    def resume(self, trained_by: dict[str, int] | None, next_epoch: int) -> None:
        """Bring the log in line with the checkpoint this attempt resumes from: the attempt that wrote it trained
        through `next_epoch - 1`, even where it died between saving the checkpoint and recording the epoch.
        `trained_by` is None in checkpoints from before the toolkit recorded their writer."""
        if trained_by is None:
            return

        def lagging(state: dict[str, Any]) -> dict[str, Any] | None:
            entry = next((a for a in state["attempts_log"] if a["n"] == trained_by["attempt"]), None)
            last = -1 if entry is None or entry.get("last_epoch") is None else entry["last_epoch"]
            return entry if entry is not None and last < next_epoch - 1 else None

        def edit(state: dict[str, Any]) -> None:
            if (entry := lagging(state)) is not None:
                if entry.get("first_epoch") is None:
                    entry["first_epoch"] = trained_by["first_epoch"]
                entry["last_epoch"] = state["last_epoch"] = next_epoch - 1
        if lagging(self.run.read_state()) is not None:  # rarely: most resumes have nothing to bring in line
            self.run.edit_state(f"attempt {trained_by['attempt']} trained through epoch {next_epoch - 1}", edit)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch, self._epoch_t0 = epoch, time.perf_counter()

    def end_epoch(self, epoch: int) -> None:
        self.train_s = self.train_time()
        self.epoch, self._epoch_t0, self.last_epoch = None, None, epoch

        def edit(state: dict[str, Any]) -> None:
            entry = state["attempts_log"][-1]
            if entry.get("first_epoch") is None:
                entry["first_epoch"] = epoch
            entry["last_epoch"] = epoch
            state["last_epoch"] = epoch
        self.run.edit_state(f"epoch {epoch} done", edit)
        self.heartbeat.beat()

    def end(self, status: Status, why: str, error: str | None = None, **changes: Any) -> dict[str, Any]:
        """Close the attempt with the run's new state; returns the state."""
        self.heartbeat.__exit__()
        train_s = self.train_time()

        def edit(state: dict[str, Any]) -> None:
            close_attempt(state, why, train_s=train_s, last_epoch=self.last_epoch)
            if status is Status.FAILED:
                state["failures"] = state.get("failures", 0) + 1
            state.update(status=status.value, error=error, **changes)
        return self.run.edit_state(f"attempt {self.number} ended: {why}", edit)

"""The ledger's vocabulary: the states a cell moves through, defined once for the runner, the executors, the
harness, the command line and the analysis. Torch-free and import-free, so anything can use it cheaply.

    new -> submitting -> queued -> running -> done | diverged | failed | interrupted
                                    ^                             |           |
                                    +------ (requeue, retry, resume) ---------+

A transition is written (atomically) before the action it stands for: `submitting` before `sbatch`, `queued` once
the job id is known (or the cell is handed to a local worker), `running` by the training process itself when it holds
the run's lock, and the end states by whoever saw the end (the trainer, or the reconciliation that found its process
or job gone).
"""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    NEW = "new"                  # planned, never handed to an executor (or handed back before it started)
    SUBMITTING = "submitting"    # being handed to the scheduler: its job id is not recorded yet
    QUEUED = "queued"            # waiting in a scheduler queue or for a local worker
    RUNNING = "running"          # a training process holds the run's lock
    DONE = "done"                # finished; its result.json is final
    DIVERGED = "diverged"        # finished: the loss became NaN or infinite (final: retraining gives the same)
    FAILED = "failed"            # ended by an error, a crash or a lost job; re-submitted up to run.max_retries
    INTERRUPTED = "interrupted"  # stopped on purpose (Ctrl-C, SIGTERM, scancel, preemption not requeued);
                                 # resumable from its checkpoint and never charged against the retries

    def __str__(self) -> str:
        return self.value

    @property
    def active(self) -> bool:
        """On its way: something (a scheduler, a worker, a process) is expected to move it on."""
        return self in ACTIVE

    @property
    def final(self) -> bool:
        """Finished for good: a rerun skips it unless asked to rerun it on purpose."""
        return self in FINAL


ACTIVE = frozenset({Status.SUBMITTING, Status.QUEUED, Status.RUNNING})
FINAL = frozenset({Status.DONE, Status.DIVERGED})

# What each state means and what to do about it: --status's legend and the README's "When things go wrong".
MEANING: dict[Status, str] = {
    Status.NEW: "not run yet: `run-study FILE` submits it",
    Status.SUBMITTING: "being submitted; if no runner is submitting, the next command finds its job or resets it",
    Status.QUEUED: "waiting for a worker or in the scheduler's queue (squeue's reason is shown)",
    Status.RUNNING: "being trained; its process holds the run's lock and beats a heartbeat",
    Status.DONE: "finished; final (`--rerun all` or `--rerun stale` trains it again on purpose)",
    Status.DIVERGED: "finished with a NaN or infinite loss; final",
    Status.FAILED: "ended by an error or a lost process or job (see --status): `run-study FILE` retries it "
                   "up to run.max_retries times; `--rerun failed` retries it beyond that",
    Status.INTERRUPTED: "stopped on purpose (Ctrl-C, SIGTERM, scancel); `run-study FILE` resumes it from its "
                        "checkpoint",
}


def parse_status(value: object) -> Status | None:
    """The Status named by `value`, or None for anything else (a damaged or foreign state file)."""
    try:
        return Status(value)
    except ValueError:
        return None

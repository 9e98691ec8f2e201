"""One SLURM job that trains several cells side by side (`run.cells_per_gpu`): `CellGroupJob`, a submitit
checkpointable that starts one child process per cell (`python -m runner.group RUN_DIR`) and waits for them.

The children share the job's device (harness/share.py: each measures its throughput alone) and its CPUs (each gets
its share of cpus-per-task). A child is to its group what a one-cell job's process is to SLURM: it ignores SIGTERM
(SLURM's kill on scancel, requeue or time limit ends in SIGKILL; the runner then reads what happened from SLURM's
state, as for any cell) and SIGUSR2 (the warning signal is the group's to handle), and it dies with the group
(PR_SET_PDEATHSIG). On the warning signal the group tells each child why (a line on its stdin: `preempted`, `time
limit`); each ends its cell at the next step as `queued`, resumable from its last epoch checkpoint, and the group is
requeued as a whole once they have all ended.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.attempt import Interrupted
from harness.records import PACKAGE_ROOT, RunDir
from harness.share import SHARE_DIR_ENV, default_share_dir

from .job import CellJob, requeue_reason
from .sharing import Mps, sharing_env
from .worker import die_with_parent

CHILD_STOP_S = 60.0  # at most this long (and half the warning time) the handler waits for the children to end


class CellGroupJob:
    def __init__(self, run_dirs: list[str] | list[Path], signal_delay_s: int = 120, max_num_timeout: int = 3):
        self.run_dirs = [str(d) for d in run_dirs]
        self.signal_delay_s, self.max_num_timeout = signal_delay_s, max_num_timeout
        self.children: list[subprocess.Popen] = []

    def __call__(self) -> list[str]:
        """Train the cells side by side; their statuses (each cell records its own end, as a one-cell job does)."""
        mps = Mps()
        gpus = len([d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()])
        env = {**self._env(), **mps.start(gpus, len(self.run_dirs), print)}
        self.children = [subprocess.Popen([sys.executable, "-m", "runner.group", d], stdin=subprocess.PIPE, env=env,
                                          text=True) for d in self.run_dirs]
        try:
            _wait_all(self.children, None)
        finally:
            mps.stop()
        crashed = [d for d, c in zip(self.run_dirs, self.children) if c.returncode != 0]
        if crashed:  # the job then ends FAILED; each cell's own record says why
            raise RuntimeError(f"the trainers of {', '.join(crashed)} exited with "
                               f"{[c.returncode for c in self.children if c.returncode != 0]}; see their logs")
        return [RunDir(d).read_state().get("status", "") for d in self.run_dirs]

    def _env(self) -> dict[str, str]:
        n = len(self.run_dirs)
        env = {**os.environ, **sharing_env(n), "TOKENMIX_RUNNER_PID": str(os.getpid()),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        # each child's share of the job's cores (harness/environment.py's set_threads reads it)
        env["SLURM_CPUS_PER_TASK"] = str(max(1, int(os.environ.get("SLURM_CPUS_PER_TASK") or 1) // n))
        if not os.environ.get("CUDA_VISIBLE_DEVICES"):  # CPU cells: the job's own cores, not shared with other jobs
            env[SHARE_DIR_ENV] = str(default_share_dir() / f"slurm-{os.environ.get('SLURM_JOB_ID', os.getpid())}")
        return env

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook on SLURM's warning signal: every child ends its cell `queued`, then the group requeues."""
        import submitit
        reason = requeue_reason(self.run_dirs, self.signal_delay_s, self.max_num_timeout)
        if reason is None:
            return None  # the time limit ends the job; each cell is then reconciled from SLURM's TIMEOUT
        for child in self.children:
            if child.poll() is None and child.stdin is not None:
                with contextlib.suppress(BrokenPipeError):  # it has just ended by itself
                    child.stdin.write(f"{reason}\n")
                    child.stdin.flush()
        _wait_all(self.children, min(CHILD_STOP_S, self.signal_delay_s / 2))
        return submitit.helpers.DelayedSubmission(CellGroupJob(self.run_dirs, self.signal_delay_s,
                                                               self.max_num_timeout))


def _wait_all(children: list[subprocess.Popen], timeout: float | None) -> None:
    """Poll rather than Popen.wait: the warning handler may run while the job's main thread is in here."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while any(c.poll() is None for c in children) and (deadline is None or time.monotonic() < deadline):
        time.sleep(0.2)


def main(run_dir: str) -> int:
    """A child: train one cell; a line on stdin (why SLURM requeues the group) ends it at the next step."""
    die_with_parent(int(os.environ["TOKENMIX_RUNNER_PID"]), signal.SIGKILL)
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    job = CellJob(run_dir)

    def listen() -> None:
        for line in sys.stdin:
            job.requeue_reason = line.strip() or "preempted"
    threading.Thread(target=listen, daemon=True).start()
    try:
        job(stop=lambda: job.requeue_reason is not None)
    except Interrupted:
        if job.requeue_reason is None:
            raise
        print(f"{run_dir}: ended for the requeue ({job.requeue_reason}); it resumes in the requeued job", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

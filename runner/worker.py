"""A local worker process: trains the cells its runner sends (one JSON request per line on stdin: the run directory
and the number of processes it trains on; one JSON reply per line on stdout) until its input ends or it is told to
stop. For a data-parallel cell the worker is rank 0 and starts the other ranks (runner/ranks.py).

It dies with its runner: the kernel sends it SIGTERM when the runner ends, however it ends (PR_SET_PDEATHSIG), and
SIGTERM, SIGINT or SIGHUP make it stop at the next training step, leaving the cell `interrupted` and resumable. Torch
is imported once per worker, not once per cell. Its own output goes to the log file the runner opened as its stderr.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """`sig` when the parent ends; if it has already ended (before this call), end now."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):  # not Linux: the runner's own exit handling still ends its workers
        pass
    if os.getppid() != parent:
        sys.exit(0)


def main() -> int:
    die_with_parent(int(os.environ["TOKENMIX_RUNNER_PID"]))
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what training prints goes to the worker's log, not into the replies

    from harness.records import unwritable

    from .job import CellJob
    from .ranks import local_world
    for line in sys.stdin:
        if stopping:
            break
        request = json.loads(line)
        run_dir = request["run_dir"]
        problem = None
        try:
            with local_world(request["world_size"], run_dir) as world:
                status, error = CellJob(run_dir)(stop=lambda: bool(stopping), world=world), None
        except Exception as e:  # recorded in the cell's state by the harness; reported, never fatal here
            problem = unwritable(e)
            status = "interrupted" if stopping or problem else "failed"
            error = problem or "".join(traceback.format_exception(e))
        replies.write(json.dumps({"run_dir": run_dir, "status": status, "error": error, "unwritable": problem})
                      + "\n")
        if stopping:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())

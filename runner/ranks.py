"""The processes of a data-parallel cell on one machine (the local executor's): the process that trains the cell is
rank 0, and starts ranks 1..N-1 as its children, each running `python -m runner.ranks RUN_DIR` with its rank in the
environment (torchrun's variables). They die with rank 0 however it ends (PR_SET_PDEATHSIG), and rank 0 ends them
when its training ends: after a stop they would otherwise wait in a collective for a peer that left.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from typing import Iterator

from harness.records import PACKAGE_ROOT
from harness.world import SOLO, World

FOLLOWERS_END_S = 60.0  # after rank 0 has finished, the others have this long to leave the process group


def free_port() -> int:
    """A TCP port free on this machine now, for the ranks' rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_world(size: int, run_dir: str) -> Iterator[World]:
    """This process as rank 0 of `size` (ranks 1.. started as its children, and ended on the way out)."""
    if size == 1:
        yield SOLO
        return
    port = free_port()
    env = {**os.environ, "TOKENMIX_LEADER_PID": str(os.getpid()),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    followers = [subprocess.Popen([sys.executable, "-m", "runner.ranks", run_dir],
                                  env={**env, **World(rank, size, rank, "127.0.0.1", port).env()})
                 for rank in range(1, size)]
    finished = False
    try:
        yield World(0, size, 0, "127.0.0.1", port)
        finished = True
    finally:
        for process in followers:
            if finished:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=FOLLOWERS_END_S)
            process.kill()
            process.wait()


def main() -> int:
    """A rank > 0: train its share of the cell in RUN_DIR; rank 0 (its parent) writes everything."""
    from .job import CellJob
    from .worker import die_with_parent
    die_with_parent(int(os.environ["TOKENMIX_LEADER_PID"]))
    CellJob(sys.argv[1])(world=World.from_env())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One trainer per run directory: a lock the training process holds for as long as it trains, and a heartbeat.

The lock is an exclusive `flock` on the run's `.lock` file, so the kernel releases it however the process ends
(SIGKILL and OOM included). Its holder is written into the file, so a second process that finds the lock taken
says who holds it. The heartbeat (`heartbeat.json`, rewritten every HEARTBEAT_S seconds by a thread and after every
epoch) tells a live trainer on another host from a dead one, where neither its pid nor the lock can be checked.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from typing import Any, Callable, Iterator

from .owner import Owner
from .records import HEARTBEAT_S, RunDir, atomic_write_json, heartbeat_age, now


class RunBusyError(RuntimeError):
    """Another process is training this run directory."""


def _holder(run: RunDir) -> str:
    try:
        info = json.loads(run.lock.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    owner = Owner.from_dict(info.get("owner"))
    who = str(owner) if owner else "another process"
    job = f" (SLURM job {info['job_id']})" if info.get("job_id") else ""
    since = f" since {info['since']}" if info.get("since") else ""
    age = heartbeat_age(run.read_heartbeat())
    beat = f"; its last heartbeat was {age:.0f} s ago" if age is not None else ""
    return f"{who}{job}{since}{beat}"


@contextlib.contextmanager
def run_lock(run: RunDir, job_id: str | None = None, wait_s: float = 5.0) -> Iterator[Owner]:
    """Hold the run's lock for the block. Another holder is waited for `wait_s` (a probe by `lock_holder` takes the
    lock for an instant), then RunBusyError names it."""
    run.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunBusyError(f"{run.path} is being trained by {_holder(run)}; not starting a second "
                                       f"trainer") from None
                time.sleep(0.1)
        owner = Owner.current()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"owner": owner.to_dict(), "job_id": job_id, "since": now()}).encode(), 0)
        yield owner
    finally:
        os.close(fd)  # releases the flock


def lock_is_held(run: RunDir) -> bool:
    """Whether a process holds the run's lock right now (on this host's view of the filesystem)."""
    try:
        fd = os.open(run.lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class Heartbeat:
    """Rewrites heartbeat.json every `interval` seconds from a daemon thread, and on `beat()` (every epoch)."""

    def __init__(self, run: RunDir, owner: Owner, info: Callable[[], dict[str, Any]], interval: float = HEARTBEAT_S):
        self.run, self.owner, self.info, self.interval = run, owner, info, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def beat(self) -> None:
        with contextlib.suppress(OSError):  # a full disk must not kill the training over its heartbeat
            atomic_write_json(self.run.heartbeat, {"time": now(), "unix": time.time(), "owner": self.owner.to_dict(),
                                                   **self.info()})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

"""Who owns a run or a study's cells: a process named so that it can be told apart from a recycled pid or a rebooted
machine (host, pid, the process's start time in clock ticks since boot, and the boot id), as recorded in state files.
Torch-free: the runner reconciles with it.
"""
from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import Any


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or parentheses
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: int | None = None     # clock ticks since boot when the process started
    boot: str | None = None      # the host's boot id

    @classmethod
    def current(cls, pid: int | None = None) -> Owner:
        pid = os.getpid() if pid is None else pid
        return cls(socket.gethostname(), pid, _start_ticks(pid), _boot_id())

    @classmethod
    def from_dict(cls, data: Any) -> Owner | None:
        if not isinstance(data, dict) or not isinstance(data.get("host"), str) or not isinstance(data.get("pid"), int):
            return None
        return cls(data["host"], data["pid"], data.get("start"), data.get("boot"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def alive(self) -> bool | None:
        """True or False for a process of this host; None for another host's (this machine cannot tell)."""
        if self.host != socket.gethostname():
            return None
        if self.boot is not None and self.boot != _boot_id():
            return False  # the machine rebooted since
        start = _start_ticks(self.pid)
        if start is None:
            return False
        # a zombie has ended: it only waits for its parent to read its status
        if _state(self.pid) == "Z":
            return False
        return self.start is None or start == self.start  # same pid, other start: the pid was reused

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None

"""SIGINT, SIGTERM and SIGHUP for a command that owns work (the Ctrl-C convention): the first asks for a clean stop
(workers checkpoint and end, cells are recorded `interrupted`), the second forces it at once."""
from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_INTERRUPTED = 130


class StudyInterrupted(Exception):
    """The user (or the system) asked the command to stop; what it owned is recorded as resumable."""


class Interrupts:
    def __init__(self) -> None:
        self.received: list[int] = []
        self._on_force: list[Callable[[], None]] = []

    def install(self) -> Interrupts:
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        return self

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def on_force(self, callback: Callable[[], None]) -> None:
        """Run `callback` (end the children, record their cells) if a second signal forces the exit."""
        self._on_force.append(callback)

    def check(self) -> None:
        if self.received:
            raise StudyInterrupted(signal.Signals(self.received[0]).name)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if len(self.received) == 1:
            print(f"\n{signal.Signals(signum).name}: stopping; workers checkpoint and end (again to stop at once)",
                  file=sys.stderr, flush=True)
            return
        for callback in self._on_force:
            try:
                callback()
            except Exception as e:  # the exit below must happen whatever a callback does
                print(f"while stopping: {e}", file=sys.stderr)
        print("stopped at once; every cell is resumable", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)


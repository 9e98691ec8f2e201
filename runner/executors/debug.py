"""`debug`: cells one after another in this process, so that breakpoints work and the first error propagates."""
from __future__ import annotations

from harness.status import Status
from harness.world import SOLO

from ..interrupt import Interrupts
from ..job import CellJob
from ..state import CellStatus, read_status, run_dir
from . import EXECUTORS
from .local import LocalExecutor, describe


@EXECUTORS.register("debug")
class DebugExecutor(LocalExecutor):
    """Claims cells as the local executor does (the runner is their owner until the trainer, the same process,
    takes them), and reconciles the same way."""

    name = "debug"

    def wait(self, statuses: list[CellStatus], interrupts: Interrupts) -> list[str]:
        def force() -> None:  # a second Ctrl-C: the training in this process cannot record itself any more
            for s in read_status(self.spec, self.todo):
                if s.status is Status.RUNNING:
                    self._close(s, Status.INTERRUPTED, "interrupted", "interrupted: stopped at once")
        interrupts.on_force(force)
        try:
            for cell in self.todo:
                interrupts.check()
                print(f"debug: {cell.run_id}  {describe(cell)}", flush=True)
                CellJob(run_dir(self.spec, cell).path)(stop=lambda: interrupts.requested, world=SOLO)
        finally:
            handed_back = Status.INTERRUPTED if interrupts.requested else Status.NEW
            self._settle(self.todo, handed_back, "the debug run stopped before it")
        interrupts.check()
        return []

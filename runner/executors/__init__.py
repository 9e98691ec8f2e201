"""Where cells run: `local` (worker processes on this machine), `slurm` (job arrays through submitit) or `debug` (in
this process, for a debugger). One registry; an executor is one file implementing `Executor`, so a new scheduler is
one new file and its name in EXECUTOR_MODULES.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from mixers.registry import Registry

if TYPE_CHECKING:
    from ..interrupt import Interrupts
    from ..spec import Cell, StudySpec
    from ..state import CellStatus

EXECUTOR_MODULES = ("local", "slurm", "debug")


def _import_executors() -> None:
    for module in EXECUTOR_MODULES:
        import_module(f"{__package__}.{module}")


class Executor:
    """How a study's cells are run somewhere, as transitions of the ledger.

    `check` runs before anything is written; `submit` runs under the study lock and must leave every cell it was given
    in a recorded state (handed over, or handed back); `wait` blocks until no cell this executor owns is on its way;
    `reconcile` corrects the recorded state of the cells it owns from what is real; `cancel` stops them.
    """

    name = "abstract"

    def __init__(self, spec: StudySpec, where: str = "study"):
        self.spec, self.where = spec, where

    def check(self, cells: list[Cell]) -> None:
        """Raise StudyError (a user mistake) if these cells cannot run here; writes nothing."""

    def submit(self, cells: list[Cell], interrupts: Interrupts) -> None:
        raise NotImplementedError

    def wait(self, statuses: list[CellStatus], interrupts: Interrupts) -> list[str]:
        """Block until none of `statuses` (the cells this executor owns that are on their way) is; returns what the
        user should be told about cells that could not run (one line each)."""
        raise NotImplementedError

    def reconcile(self, statuses: list[CellStatus], persist: bool) -> None:
        raise NotImplementedError

    def cancel(self, statuses: list[CellStatus]) -> None:
        raise NotImplementedError


EXECUTORS: Registry[type[Executor]] = Registry("executor", plugins=_import_executors)

"""Where cells run: `local` (worker processes on this machine), `slurm` (job arrays through submitit) or `debug` (in
this process, for a debugger). One registry; an executor is one file implementing `Executor`, so a new scheduler is
one new file and its name in EXECUTOR_MODULES.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
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


class Executor(ABC):
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
        return None  # by default anything goes: local cells were validated on this machine already

    @abstractmethod
    def submit(self, cells: list[Cell], interrupts: Interrupts) -> None:
        """Hand the cells over (or back), recording each transition."""

    @abstractmethod
    def wait(self, statuses: list[CellStatus], interrupts: Interrupts) -> list[str]:
        """Block until none of `statuses` (the cells this executor owns that are on their way) is; returns what the
        user should be told about cells that could not run (one line each)."""

    @abstractmethod
    def reconcile(self, statuses: list[CellStatus], persist: bool) -> None:
        """Correct the recorded states from what is real (written only if `persist`)."""

    @abstractmethod
    def cancel(self, statuses: list[CellStatus]) -> None:
        """Ask whatever trains these cells to stop; they stay resumable."""


EXECUTORS: Registry[type[Executor]] = Registry("executor", plugins=_import_executors)


def by_executor(statuses: list[CellStatus]) -> dict[str, list[CellStatus]]:
    """The cells grouped by the executor that owns them (as their state records it; `local` when none does)."""
    groups: dict[str, list[CellStatus]] = {}
    for s in statuses:
        groups.setdefault(s.executor or "local", []).append(s)
    return groups

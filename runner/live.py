"""A live view of a study while `run-study` waits for it (local executor, or `--wait`): one line on the terminal,
redrawn every few seconds, with the cells done, running, failed and queued, each running cell's epoch and test
accuracy, and an ETA from the epoch times measured so far. Silent when stderr is not a terminal (CI, logs, pipes).
It only reads the run files (state.json, metrics.jsonl): the ledger is never written from here."""
from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TextIO

from harness.status import Status

from .spec import Cell, StudySpec
from .state import read_status


def live_line(spec: StudySpec, cells: list[Cell]) -> str:
    """`3 done, 2 running, 0 failed, 11 queued | a1b2c3 epoch 4/10 91.2% | ETA 3 min` from the run files."""
    statuses = read_status(spec, cells)
    by = {st: sum(s.status is st for s in statuses) for st in (Status.DONE, Status.RUNNING, Status.FAILED)}
    queued = len(statuses) - sum(by.values())
    parts = [f"{by[Status.DONE]} done, {by[Status.RUNNING]} running, {by[Status.FAILED]} failed, {queued} queued"]
    epoch_times: list[float] = []
    remaining = 0
    for s in statuses:
        metrics = s.run.read_metrics() if s.status is not Status.NEW else []
        epoch_times += [m["epoch_s"] for m in metrics if isinstance(m.get("epoch_s"), (int, float))]
        if not s.status.final:
            remaining += s.cell.config.recipe.epochs - len(metrics)
        if s.status is Status.RUNNING:
            last = f" {metrics[-1]['test_top1']:.1f}%" if metrics and "test_top1" in metrics[-1] else ""
            parts.append(f"{s.cell.run_id} epoch {len(metrics)}/{s.cell.config.recipe.epochs}{last}")
    if epoch_times and remaining:
        eta = remaining * sum(epoch_times) / len(epoch_times) / max(by[Status.RUNNING], 1)
        parts.append(f"ETA {eta / 60:.0f} min" if eta >= 60 else f"ETA {eta:.0f} s")
    return " | ".join(parts)


class LiveView:
    """`with LiveView(spec, cells): wait...` redraws `live_line` every `interval` seconds on a terminal."""

    def __init__(self, spec: StudySpec, cells: list[Cell], stream: TextIO = sys.stderr, interval: float = 2.0):
        self.spec, self.cells, self.stream, self.interval = spec, cells, stream, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="live-view")

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                line = live_line(self.spec, self.cells)
            except (OSError, ValueError):  # a file mid-replace: the next redraw reads it
                continue
            self.stream.write(f"\r\033[K{line}")
            self.stream.flush()

    def __enter__(self) -> LiveView:
        if self.stream.isatty():
            self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.thread.is_alive():
            self.stop.set()
            self.thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()

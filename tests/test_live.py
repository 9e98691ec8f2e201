"""The live view of a waiting study (runner/live.py): counts, running cells' epoch and accuracy, an ETA from measured
epoch times, read from the run files; nothing drawn when the stream is not a terminal."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import write_study

from harness.status import Status
from runner.cli import main as run_study
from runner.live import LiveView, live_line
from runner.spec import expand, load_spec
from runner.state import run_dir


@pytest.mark.slow
def test_live_line_counts_cells_and_estimates_what_is_left(tmp_path: Path) -> None:
    study = write_study(tmp_path, run={"executor": "debug"})
    assert run_study([str(study)]) == 0
    spec = load_spec(study)
    cells = expand(spec)
    assert live_line(spec, cells) == "2 done, 0 running, 0 failed, 0 queued"

    run = run_dir(spec, cells[0])  # the first cell as if it were half-way: one epoch of two recorded, running
    first = run.metrics.read_text().splitlines()[0]
    run.metrics.write_text(first + "\n")
    run.result.unlink()
    run.update_state("test: back to running", status=Status.RUNNING)
    line = live_line(spec, cells)
    assert line.startswith("1 done, 1 running, 0 failed, 0 queued | ")
    assert f"{cells[0].run_id} epoch 1/2 " in line and "%" in line and "| ETA " in line

    quiet = io.StringIO()  # not a terminal: nothing is drawn
    with LiveView(spec, cells, stream=quiet, interval=0.01):
        pass
    assert quiet.getvalue() == ""

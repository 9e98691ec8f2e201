"""Build everything for a study folder: summary.csv, per-cell statistics, tables, figures and report.md.

Safe to run while the study runs (the report then lists what is missing or running) and again afterwards: every
file is rewritten atomically.
"""
from __future__ import annotations

import importlib.util
import io
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import pandas as pd

from .aggregate import aggregate
from .files import write_atomic
from .load import Study, load_study, read_curves, read_runs, stray_runs
from .metrics import METRICS, PIVOT_ONLY_METRICS, TABLE_METRICS, metric
from .pareto import pareto_mask
from .report import render_report, status_line
from .spec import ReportSpec, resolve_spec
from .tables import Table, cells_table, pivot_table, to_latex, to_markdown

# Columns that hold whole numbers but turn float when some runs lack them; written as integers in the CSV.
_INTEGER_COLUMNS = ("attempts", "last_epoch", "diverged_epoch", "epochs", "params", "flops", "peak_mem_bytes",
                    "cpu_count", "infer_batch_size", "train_batch_size")


@dataclass(frozen=True)
class ReportPaths:
    study_dir: Path
    summary_csv: Path
    summary_parquet: Path | None    # None when pyarrow is not installed
    cells_csv: Path
    report_md: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    skipped_figures: dict[str, str] = field(default_factory=dict)  # figure name -> why it was not drawn


def _csv(frame: pd.DataFrame) -> str:
    frame = frame.copy()
    for column in _INTEGER_COLUMNS:
        if column in frame and frame[column].dtype.kind == "f":
            values = frame[column].dropna()
            if (values == values.round()).all():
                frame[column] = frame[column].astype("Int64")
    return frame.to_csv(index=False)


def _parquet(frame: pd.DataFrame, path: Path) -> Path | None:
    if importlib.util.find_spec("pyarrow") is None:
        return None
    frame = frame.copy()
    # Parquet needs one type per column: mixed ones as text
    for column in frame.columns[frame.dtypes.map(lambda d: d.kind == "O")]:
        if frame[column].dropna().map(type).nunique() > 1:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return write_atomic(path, buffer.getvalue())


def _tables(study: Study, cells: pd.DataFrame, spec: ReportSpec) -> list[Table]:
    """The main metric's pivot, the pivots of the other table metrics that have any value, and the cells table."""
    keys = list(dict.fromkeys([spec.metric, *TABLE_METRICS, *PIVOT_ONLY_METRICS]))
    keys = [k for k in keys if k == spec.metric or (cells[f"{k}_n"] > 0).any()]
    tables = [pivot_table(cells, k, spec.rows, spec.columns, study.axes, study.name) for k in keys]
    return tables + [cells_table(cells, spec.metric, study.axes, study.name)]


def build_report(study_dir: Path | str, *, figures: bool = True, rows: str | None = None,
                 columns: str | None = None, metric_key: str | None = None,
                 echo: TextIO | None = sys.stdout) -> ReportPaths:
    """(Re)build a study's summary, tables, figures and report.md under `study_dir`, and print the summary.

    `rows`, `columns` and `metric_key` override the study file's `report.table`; `echo=None` prints nothing.
    Raises StudyError when `study_dir` has no readable study.yaml, SpecError when the report names no column.
    """
    study = load_study(Path(study_dir))
    runs = read_runs(study)
    spec = resolve_spec(study, runs.columns, rows, columns, metric_key)
    out = study.dir
    summary_csv = write_atomic(out / "summary.csv", _csv(runs))
    summary_parquet = _parquet(runs, out / "summary.parquet")

    cells = aggregate(runs, list(dict.fromkeys([*study.axes, *spec.keys()])), list(METRICS))
    main = metric(spec.metric)
    sign = 1 if main.higher_is_better else -1
    cells["pareto"] = pareto_mask(cells["infer_img_s_mean"], sign * cells[f"{spec.metric}_mean"])
    cells_csv = write_atomic(out / "tables" / "cells.csv", _csv(cells))

    tables = _tables(study, cells, spec)
    table_paths = []
    for table in tables:
        table_paths.append(write_atomic(out / "tables" / f"{table.name}.tex", to_latex(table)))
        table_paths.append(write_atomic(out / "tables" / f"{table.name}.md", to_markdown(table)))

    figure_set, problems = None, []
    if figures:
        from .figures import write_figures  # matplotlib and seaborn are only imported here
        curves, problems = read_curves(study, runs)
        figure_set = write_figures(cells, curves, spec, study.axes, out / "figures")

    built_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = render_report(study, runs, cells, spec, tables, figure_set, stray_runs(study), problems, built_at)
    report_md = write_atomic(out / "report.md", text)
    paths = ReportPaths(
        study_dir=out, summary_csv=summary_csv, summary_parquet=summary_parquet, cells_csv=cells_csv,
        report_md=report_md, tables=table_paths,
        figures=[p for ps in figure_set.written.values() for p in ps] if figure_set else [],
        skipped_figures=figure_set.skipped if figure_set else {},
    )
    if echo is not None:
        print(f"{study.name}: {status_line(runs)}\n", file=echo)
        print(to_markdown(tables[0]), file=echo)
        print(f"wrote {report_md}, {len(table_paths)} table files, {len(paths.figures)} figure files"
              + (f" ({len(paths.skipped_figures)} figures skipped, see report.md)" if paths.skipped_figures else ""),
              file=echo)
    return paths

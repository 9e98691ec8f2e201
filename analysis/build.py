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

from .aggregate import aggregate, group_codes
from .files import replace_manifest, write_atomic
from .findings import render_findings
from .load import Study, flatten, load_study, read_curves, read_erf, read_runs, stray_runs
from .metrics import METRICS, PIVOT_ONLY_METRICS, TABLE_METRICS, metric
from .pareto import pareto_mask
from .report import render_report, status_line
from .selection import reported, select
from .significance import versus_best, versus_control
from .spec import ReportSpec, resolve_spec
from .tables import Table, cells_table, pivot_table, selection_table, significance_table, to_latex, to_markdown

# Columns that hold whole numbers but turn float when some runs lack them; written as integers in the CSV.
_INTEGER_COLUMNS = ("attempts", "last_epoch", "diverged_epoch", "epochs", "selected_epoch", "params", "flops",
                    "peak_mem_bytes", "cpu_count", "infer_batch_size", "train_batch_size", "train_size", "val_size",
                    "test_size", "data_seed", "control_n", "seeds_needed")
# The comparison with the control, repeated on each run of a cell in summary.csv (tables/cells.csv has them too).
RUN_COMPARISON_COLUMNS = ["delta_vs_control", "delta_ci_low", "delta_ci_high", "p_value", "p_holm"]


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


def _tables(study: Study, shown: pd.DataFrame, spec: ReportSpec, axes: list[str]) -> list[Table]:
    """The main metric's pivot (with its significance marks), the pivots of the other table metrics that have any
    value, the cells table, and the significance and selection tables where the study asks for them."""
    keys = list(dict.fromkeys([spec.metric, *TABLE_METRICS, *PIVOT_ONLY_METRICS]))
    keys = [k for k in keys if k == spec.metric or (shown[f"{k}_n"] > 0).any()]
    tables = [pivot_table(shown, k, spec.rows, spec.columns, axes, study.name, compared=k == spec.metric,
                          control=spec.control) for k in keys]
    tables.append(cells_table(shown, spec.metric, study.axes, study.name))
    if spec.control:
        tables.append(significance_table(shown, spec.metric, axes, spec.control, study.name))
    if spec.select_over:
        tables.append(selection_table(shown, spec.select_over, spec.select_metric, study.axes, study.name))
    return tables


def _compare(study: Study, shown: pd.DataFrame, spec: ReportSpec, axes: list[str]) -> pd.DataFrame:
    """`shown` with the ties to each column's best and, with a control, the comparisons with it."""
    shown = shown.join(versus_best(shown, spec.metric, [a for a in axes if a != spec.rows]))
    if spec.control:
        shown = shown.join(versus_control(shown, spec.metric, axes, spec.control, flatten(study.base)))
    return shown


def build_report(study_dir: Path | str, *, figures: bool | None = None, rows: str | None = None,
                 columns: str | None = None, metric_key: str | None = None,
                 echo: TextIO | None = sys.stdout) -> ReportPaths:
    """(Re)build a study's summary, tables, figures and report.md under `study_dir`, and print the summary.

    `rows`, `columns` and `metric_key` override the study file's `report.table`, `figures` its `report.figures`
    (default true); `echo=None` prints nothing.
    Raises StudyError when `study_dir` has no readable study.yaml, SpecError when the report names no column.
    """
    study = load_study(Path(study_dir))
    runs = read_runs(study)
    spec = resolve_spec(study, rows, columns, metric_key)
    out = study.dir
    by = list(dict.fromkeys([*study.axes, *spec.keys()]))
    axes = [a for a in study.axes if a not in spec.select_over]  # what the tables pivot and the figures plot

    solved = [study.match["solve"]] if study.match.get("solve") in runs else []
    cells = aggregate(runs, by, list(METRICS), facts=solved)
    if spec.select_over:
        cells = select(cells, study.axes, spec.select_over, spec.select_metric)
        shown = reported(cells, study.axes, spec.select_over)
    else:
        shown = cells
    shown = _compare(study, shown, spec, axes)
    main = metric(spec.metric)
    sign = 1 if main.higher_is_better else -1
    shown["pareto"] = pareto_mask(shown["infer_img_s_mean"], sign * shown[f"{spec.metric}_mean"])
    if spec.select_over:  # every cell, with what selection and the comparisons made of the chosen ones
        chosen = shown[shown["selected"]]
        cells = cells.join(chosen[chosen.columns.difference(cells.columns)])
    else:
        cells = shown
    cells_csv = write_atomic(out / "tables" / "cells.csv", _csv(cells))

    run_cells = group_codes(runs, by)
    comparison = [c for c in RUN_COMPARISON_COLUMNS if c in cells] + (["selected"] if spec.select_over else [])
    runs = runs.join(cells[comparison].iloc[run_cells].set_axis(runs.index))
    summary_csv = write_atomic(out / "summary.csv", _csv(runs))
    summary_parquet = _parquet(runs, out / "summary.parquet")

    in_shown = runs["status"].eq("done") & (runs["selected"] if spec.select_over else True)
    findings = render_findings(runs[in_shown], shown, axes, spec.metric, main, spec.rows, spec.control)
    tables = _tables(study, shown, spec, axes)
    table_paths = []
    for table in tables:
        table_paths.append(write_atomic(out / "tables" / f"{table.name}.tex", to_latex(table)))
        table_paths.append(write_atomic(out / "tables" / f"{table.name}.md", to_markdown(table)))

    figure_set, problems = None, []
    if study.report.get("figures", True) if figures is None else figures:
        from .figures import write_figures  # matplotlib and seaborn are only imported here
        in_figures = runs[runs["selected"]] if spec.select_over else runs
        curves, problems = read_curves(study, in_figures)
        erf, erf_problems = read_erf(study, in_figures)
        figure_set = write_figures(shown, curves, spec, axes, out / "figures", erf)
        problems += erf_problems

    built_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = render_report(study, runs, shown, spec, findings, tables, figure_set, stray_runs(study), problems,
                         built_at)
    report_md = write_atomic(out / "report.md", text)
    paths = ReportPaths(
        study_dir=out, summary_csv=summary_csv, summary_parquet=summary_parquet, cells_csv=cells_csv,
        report_md=report_md, tables=table_paths,
        figures=[p for ps in figure_set.written.values() for p in ps] if figure_set else [],
        skipped_figures=figure_set.skipped if figure_set else {},
    )
    replace_manifest(out, [summary_csv, cells_csv, report_md, *table_paths, *paths.figures,
                           *([summary_parquet] if summary_parquet else [])])
    if echo is not None:
        print(f"{study.name}: {status_line(runs)}\n", file=echo)
        print(to_markdown(tables[0]), file=echo)
        print(f"wrote {report_md}, {len(table_paths)} table files, {len(paths.figures)} figure files"
              + (f" ({len(paths.skipped_figures)} figures skipped, see report.md)" if paths.skipped_figures else ""),
              file=echo)
    return paths

"""Runs -> cells: for each combination of axis values, every metric's mean, std, n and 95% Student t interval over
the seeds that finished, and how many of the cell's runs are in each status.

Only runs with status "done" enter the statistics. The others are counted, never dropped: a cell none of whose
runs finished keeps its row, with n = 0 and a status that says why.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .stats import t_quantile

# The order in which a cell that is not finished names its status: progress first, then what went wrong.
STATUSES = ("done", "running", "queued", "pending", "failed", "diverged", "cancelled", "unreadable", "missing")


def _key(value: Any) -> Any:
    """A dict key for a cell value: all missing values (None, NaN) are one key."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def cell_status(counts: dict[str, int]) -> tuple[str, str]:
    """(status, detail) of a cell from its runs' status counts: ("done", "3/3 done") or ("failed", "1/3 done, ...")."""
    total = sum(counts.values())
    present = [s for s in STATUSES if counts.get(s)] + sorted(s for s in counts if counts[s] and s not in STATUSES)
    others = [s for s in present if s != "done"]
    detail = ", ".join([f"{counts.get('done', 0)}/{total} done"] + [f"{counts[s]} {s}" for s in others])
    return (others[0] if others else "done"), detail


def aggregate(runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per cell, in the order cells first appear in `runs`.

    Columns: `by`, n_runs, n_<status> for every status seen or known, status, status_detail, then per metric
    <m>_mean, <m>_std (ddof=1), <m>_n, <m>_ci95_lo and <m>_ci95_hi (NaN below two values).
    """
    by = list(by)
    codes: dict[tuple, int] = {}
    cell = [codes.setdefault(tuple(_key(v) for v in row), len(codes)) for row in runs[by].itertuples(index=False)]
    runs = runs.assign(_cell=cell)
    index = pd.RangeIndex(len(codes), name="_cell")

    cells = runs.drop_duplicates("_cell").set_index("_cell")[by].reindex(index)
    counts = pd.crosstab(runs["_cell"], runs["status"]).reindex(index, fill_value=0)
    statuses = [*STATUSES, *sorted(set(counts.columns) - set(STATUSES))]
    counts = counts.reindex(columns=statuses, fill_value=0)
    cells["n_runs"] = counts.sum(axis=1)
    for status in statuses:
        cells[f"n_{status}"] = counts[status]
    labels = [cell_status(row) for row in counts.to_dict("records")]
    cells["status"] = [status for status, _ in labels]
    cells["status_detail"] = [detail for _, detail in labels]

    values = runs.loc[runs["status"] == "done", ["_cell", *metrics]]
    values[list(metrics)] = values[list(metrics)].apply(pd.to_numeric, errors="coerce")
    grouped = values.groupby("_cell")
    mean, std, n = (frame.reindex(index) for frame in (grouped.mean(), grouped.std(ddof=1), grouped.count()))
    n = n.fillna(0).astype(int)
    for m in metrics:
        t = n[m].map(lambda k: t_quantile(0.975, k - 1) if k >= 2 else np.nan)
        half = t * std[m] / np.sqrt(n[m])
        cells[f"{m}_mean"], cells[f"{m}_std"], cells[f"{m}_n"] = mean[m], std[m], n[m]
        cells[f"{m}_ci95_lo"], cells[f"{m}_ci95_hi"] = mean[m] - half, mean[m] + half
    return cells.reset_index(drop=True)

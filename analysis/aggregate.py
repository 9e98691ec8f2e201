"""Runs -> cells: for each combination of axis values, every metric's mean, std, n and 95% Student t interval over
the seeds that finished, and how many of the cell's runs are in each status.

Only runs with status "done" enter the statistics. The others are counted, never dropped: a cell none of whose
runs finished keeps its row, with n = 0 and a status that says why. Finished runs of other code (stale) do enter
them, counted in n_stale, and every table marks them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .stats import t_quantile

# The order in which a cell that is not finished names its status: progress first, then what went wrong. The
# ledger's vocabulary, plus "unreadable" (run files that do not parse) and "missing" (no run folder yet).
STATUSES = ("done", "running", "queued", "submitting", "interrupted", "new", "failed", "diverged", "unreadable",
            "missing")
# Per-cell facts shared by its runs, kept as the first non-missing value: what the precision and n/a rules read.
CELL_FACTS = ("ignored", "train_size", "val_size", "test_size")


def cell_key(value: Any) -> Any:
    """A dict key for a cell value: all missing values (None, NaN) are one key."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def group_codes(frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """A group number per row of `frame` for each distinct combination of `keys`, in order of first appearance
    (all missing values one key; n/a a key of its own)."""
    codes: dict[tuple, int] = {}
    rows = frame[list(keys)].itertuples(index=False) if keys else ((),) * len(frame)
    return np.array([codes.setdefault(tuple(cell_key(v) for v in row), len(codes)) for row in rows], dtype=int)


def cell_status(counts: dict[str, int]) -> tuple[str, str]:
    """(status, detail) of a cell from its runs' status counts: ("done", "3/3 done") or ("failed", "1/3 done, ...")."""
    total = sum(counts.values())
    present = [s for s in STATUSES if counts.get(s)] + sorted(s for s in counts if counts[s] and s not in STATUSES)
    others = [s for s in present if s != "done"]
    detail = ", ".join([f"{counts.get('done', 0)}/{total} done"] + [f"{counts[s]} {s}" for s in others])
    return (others[0] if others else "done"), detail


def aggregate(runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], facts: Sequence[str] = ()) -> pd.DataFrame:
    """One row per cell, in the order cells first appear in `runs`.

    Columns: `by`, n_runs, n_<status> for every status seen or known, status, status_detail, n_stale, the
    CELL_FACTS and `facts` (config columns shared by a cell's runs, e.g. the width a matched study solved), then
    per metric <m>_mean, <m>_std (ddof=1), <m>_n, <m>_ci95_lo and <m>_ci95_hi (NaN below two values).
    """
    by = list(by)
    cell = group_codes(runs, by)
    runs = runs.assign(_cell=cell)
    index = pd.RangeIndex(cell.max() + 1 if len(cell) else 0, name="_cell")

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
    cells["n_stale"] = runs.groupby("_cell")["stale"].sum().reindex(index, fill_value=0).astype(int)
    kept = list(dict.fromkeys([*CELL_FACTS, *facts]))
    first = runs.groupby("_cell")[kept].first().reindex(index)
    cells[kept] = first.astype(object).where(first.notna(), None)

    values = runs.loc[runs["status"] == "done", ["_cell", *metrics]]
    values[list(metrics)] = values[list(metrics)].apply(pd.to_numeric, errors="coerce")
    grouped = values.groupby("_cell")
    mean, std, n = (frame.reindex(index) for frame in (grouped.mean(), grouped.std(ddof=1), grouped.count()))
    n = n.fillna(0).astype(int)
    stats: dict[str, pd.Series] = {}
    for m in metrics:
        t = n[m].map(lambda k: t_quantile(0.975, k - 1) if k >= 2 else np.nan)
        half = t * std[m] / np.sqrt(n[m])
        stats.update({f"{m}_mean": mean[m], f"{m}_std": std[m], f"{m}_n": n[m], f"{m}_ci95_lo": mean[m] - half,
                      f"{m}_ci95_hi": mean[m] + half})
    return pd.concat([cells, pd.DataFrame(stats, index=index)], axis=1).reset_index(drop=True)

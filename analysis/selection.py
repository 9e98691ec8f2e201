"""Tuning inside a study (`select: {metric: val_top1, over: [recipe.lr, recipe.weight_decay]}`): for every
combination of the other axes, the setting of the `over` axes whose mean validation metric over seeds is best.

Only the validation metric is read (the spec allows nothing else), so no test number can move a choice. Ties go to
the setting first in grid order. A combination none of whose settings has a validation value yet gets no choice:
its reported row carries no metric and says why.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .aggregate import STATUSES, cell_status, group_codes
from .metrics import metric

STAT_SUFFIXES = ("_mean", "_std", "_n", "_ci95_lo", "_ci95_hi")


def select(cells: pd.DataFrame, axes: Sequence[str], over: Sequence[str], metric_key: str) -> pd.DataFrame:
    """`cells` with `selected` (the chosen setting of its combination) and `selection` (how it was chosen)."""
    m = metric(metric_key)
    score = (1 if m.higher_is_better else -1) * cells[f"{metric_key}_mean"].to_numpy(float)
    groups = group_codes(cells, [a for a in axes if a not in over])
    selected = np.zeros(len(cells), dtype=bool)
    notes = np.empty(len(cells), dtype=object)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        scored = members[np.isfinite(score[members])]
        if len(scored):
            selected[scored[np.argmax(score[scored])]] = True  # argmax: the first of equal scores
        finished = int((cells["n_done"].to_numpy()[members] == cells["n_runs"].to_numpy()[members]).sum())
        notes[members] = f"best {m.short.lower()} of {len(scored)} settings" + (
            f" ({finished} of {len(members)} finished)" if finished < len(members) else "")
    return cells.assign(selected=selected, selection=notes)


def reported(cells: pd.DataFrame, axes: Sequence[str], over: Sequence[str]) -> pd.DataFrame:
    """One row per combination of the non-`over` axes: the chosen cell, or, where nothing could be chosen yet, a
    row without metrics whose status says why (the combination's runs still going, or no validation metric)."""
    groups = group_codes(cells, [a for a in axes if a not in over])
    rows = []
    counts = [c for c in cells.columns if c.startswith("n_") and c[2:] in (*STATUSES, *cells["status"])]
    for g in dict.fromkeys(groups):
        members = cells[groups == g]
        chosen = members[members["selected"]]
        if len(chosen):
            rows.append(chosen.iloc[0])
            continue
        row = members.iloc[0].copy()
        for column in row.index:
            if column.endswith(STAT_SUFFIXES):
                row[column] = 0 if column.endswith("_n") else np.nan
        row[counts] = members[counts].sum()
        row["n_runs"] = members["n_runs"].sum()
        status, detail = cell_status({c[2:]: int(row[c]) for c in counts})
        row["status"] = "no validation" if status == "done" else status
        row["status_detail"] = detail
        row[list(over)] = None
        rows.append(row)
    return pd.DataFrame(rows)

"""Which differences between a table's cells the seeds can support: every cell against its control (the cell with
the control level on the control axis and the same values on every other axis), and every entry against the best
entry of its column. Welch's t-test over seeds, p-values adjusted with Holm's method across the whole table.

An axis that a cell's model ignores (n/a) matches any value: a dwconv cell is compared with an attention control
(kernel size n/a). Where that leaves several control cells (attention against a dwconv control at kernel sizes 3,
5 and 7), the one at the study's base value of the ignored axis is taken (the kernel size in `base`); where there
is none, the cell is not compared and its columns stay empty.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .aggregate import cell_key, group_codes
from .load import NA
from .metrics import metric
from .stats import ALPHA, holm, seeds_needed, welch

CONTROL_COLUMNS = ["control_mean", "control_n", "delta_vs_control", "delta_ci_low", "delta_ci_high", "p_value",
                   "p_holm", "seeds_needed"]
BEST_COLUMNS = ["p_holm_vs_best", "tied_with_best"]


def _matches(a: Any, b: Any) -> bool:
    return a is NA or b is NA or cell_key(a) == cell_key(b)


def control_partners(cells: pd.DataFrame, axes: Sequence[str], control: tuple[str, Any],
                     base: Mapping[str, Any]) -> list[int | None]:
    """The position in `cells` of each cell's control cell; None for control cells and cells without one.
    `base`: the study's base config as dotted keys (the values an n/a axis is matched at)."""
    axis, level = control
    others = [a for a in axes if a != axis]
    is_control = [cell_key(v) == cell_key(level) for v in cells[axis]]
    candidates = [i for i, c in enumerate(is_control) if c]
    records = cells[others].to_dict("records")
    partners: list[int | None] = []
    for i, record in enumerate(records):
        if is_control[i] or cells[axis].iloc[i] is NA:
            partners.append(None)
            continue
        found = [j for j in candidates if all(_matches(record[a], records[j][a]) for a in others)]
        if len(found) > 1:
            found = [j for j in found if all(cell_key(records[j][a]) == cell_key(base.get(a)) for a in others
                                             if record[a] is NA)]
        partners.append(found[0] if len(found) == 1 else None)
    return partners


def _stats(cells: pd.DataFrame, key: str, i: int) -> tuple[float, float, int]:
    row = cells.iloc[i]
    return float(row[f"{key}_mean"]), float(row[f"{key}_std"]), int(row[f"{key}_n"])


def versus_control(cells: pd.DataFrame, key: str, axes: Sequence[str], control: tuple[str, Any],
                   base: Mapping[str, Any]) -> pd.DataFrame:
    """CONTROL_COLUMNS for every cell, in `key`'s raw units (delta = cell - control); NaN where not compared."""
    out = pd.DataFrame(np.nan, index=cells.index, columns=CONTROL_COLUMNS)
    for i, j in enumerate(control_partners(cells, axes, control, base)):
        if j is None:
            continue
        (mean_a, std_a, n_a), (mean_b, std_b, n_b) = _stats(cells, key, i), _stats(cells, key, j)
        if n_a == 0 or n_b == 0:
            continue
        test = welch(mean_a, std_a, n_a, mean_b, std_b, n_b)
        out.iloc[i] = [mean_b, n_b, test.delta, test.low, test.high, test.p, np.nan,
                       seeds_needed(test.delta, std_a, std_b)]
    out["p_holm"] = holm(out["p_value"])
    return out


def versus_best(cells: pd.DataFrame, key: str, columns: Sequence[str]) -> pd.DataFrame:
    """BEST_COLUMNS for every cell: within each combination of `columns` (a table column), the Holm-adjusted
    p-value of the Welch test against that column's best mean, and whether the entry is statistically tied with
    it (p_holm >= ALPHA). The best entry itself has no test and is not "tied"; untestable entries are not tied."""
    sign = 1 if metric(key).higher_is_better else -1
    means = cells[f"{key}_mean"].to_numpy(float)
    groups = group_codes(cells, columns)
    p = np.full(len(cells), np.nan)
    for g in np.unique(groups):
        members = np.flatnonzero((groups == g) & np.isfinite(means))
        if len(members) < 2:
            continue
        best = members[np.argmax(sign * means[members])]
        for i in members[members != best]:
            p[i] = welch(*_stats(cells, key, i), *_stats(cells, key, best)).p
    adjusted = holm(p)
    return pd.DataFrame({"p_holm_vs_best": adjusted, "tied_with_best": adjusted >= ALPHA}, index=cells.index)

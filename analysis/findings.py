"""The Findings that open report.md, generated from the data: per axis, its levels ordered by the main metric with
what cannot be told apart, a trend test along each ordered numeric axis, the comparisons with the control, and
what the seeds can and cannot support.

Ordering: a level's value is the mean of its cells' means. Neighbours in that order are compared with a paired
t-test over the settings of the other axes that both levels have (each setting one pair of cell means), or, where
they share one setting only, with Welch's t-test over its runs; Holm-adjusted across the axis' steps. An axis that
one of the two levels ignores (n/a) is averaged over rather than paired on.
Trend: Spearman's rank correlation between an ordered numeric axis (3 or more values) and the metric over the
finished runs, within each level of the table's rows axis (the mixer, usually), Holm-adjusted across them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .aggregate import cell_key, group_codes
from .load import NA
from .metrics import Metric, axis_label, axis_name, metric
from .stats import ALPHA, POWER, holm, scipy_stats, seeds_needed
from .tables import format_p, format_value

MIN_SEEDS = 3   # below this per cell, the report says that no difference can be established


@dataclass(frozen=True)
class Step:
    """The comparison of two neighbours in an ordering."""
    test: str               # "Welch" or "paired over k settings"
    p: float
    p_holm: float
    seeds_needed: float     # per level, for Welch's test to detect the observed difference (NaN: paired test)


@dataclass(frozen=True)
class Ordering:
    axis: str
    levels: list[tuple[Any, float, int]]  # (value, mean of its cells' means, finished runs), best first
    steps: list[Step]                     # between levels i and i + 1


@dataclass(frozen=True)
class Trend:
    axis: str
    within: str             # "" or the rows axis' level, e.g. "Mixer dwconv"
    rho: float
    p: float
    p_holm: float
    n: int


def _has_na(values: pd.Series) -> bool:
    return any(v is NA for v in values)


def _block_keys(frame: pd.DataFrame, keys: Sequence[str]) -> list[tuple]:
    if not keys:
        return [()] * len(frame)
    return [tuple(cell_key(v) for v in row) for row in frame[list(keys)].itertuples(index=False)]


def _block_means(cells: pd.DataFrame, keys: Sequence[str], key: str) -> dict[tuple, float]:
    """The mean of the cells' means per combination of `keys` (averaging over the axes not in `keys`)."""
    blocks: dict[tuple, list[float]] = {}
    for block, value in zip(_block_keys(cells, keys), cells[f"{key}_mean"]):
        blocks.setdefault(block, []).append(value)
    return {block: float(np.mean(values)) for block, values in blocks.items()}


def _step(runs: pd.DataFrame, cells: pd.DataFrame, axis: str, a: Any, b: Any, axes: Sequence[str],
          key: str) -> Step:
    ca, cb = (cells[[cell_key(v) == cell_key(level) for v in cells[axis]]] for level in (a, b))
    others = [x for x in axes if x != axis and not _has_na(ca[x]) and not _has_na(cb[x])]
    mean_a, mean_b = _block_means(ca, others, key), _block_means(cb, others, key)
    common = [k for k in mean_a if k in mean_b]
    stats = scipy_stats()
    if len(common) >= 2:
        p = stats.ttest_rel([mean_a[k] for k in common], [mean_b[k] for k in common]).pvalue
        return Step(f"paired over {len(common)} settings", float(p), math.nan, math.nan)
    if not common:
        return Step("no common setting", math.nan, math.nan, math.nan)
    va, vb = (r[key].to_numpy(float) for r in (
        runs[[cell_key(v) == cell_key(level) and k == common[0]
              for v, k in zip(runs[axis], _block_keys(runs, others))]] for level in (a, b)))
    if min(len(va), len(vb)) < 2:
        return Step("Welch", math.nan, math.nan, math.nan)
    p = stats.ttest_ind(va, vb, equal_var=False).pvalue
    return Step("Welch", float(p), math.nan, seeds_needed(va.mean() - vb.mean(), va.std(ddof=1), vb.std(ddof=1)))


def orderings(runs: pd.DataFrame, cells: pd.DataFrame, axes: Sequence[str], key: str) -> list[Ordering]:
    """Per axis with two or more levels that have a value: its levels, best first, and the tests between them."""
    sign = 1 if metric(key).higher_is_better else -1
    done = cells[cells[f"{key}_n"] > 0]
    result = []
    for axis in axes:
        present = done[[v is not NA for v in done[axis]]]
        codes = group_codes(present, [axis])
        levels = [(present[axis].iloc[np.argmax(codes == g)], float(present[f"{key}_mean"][codes == g].mean()),
                   int(present[f"{key}_n"][codes == g].sum())) for g in np.unique(codes)]
        if len(levels) < 2:
            continue
        levels.sort(key=lambda level: -sign * level[1])
        steps = [_step(runs, present, axis, a[0], b[0], axes, key) for a, b in zip(levels, levels[1:])]
        adjusted = holm([s.p for s in steps])
        steps = [Step(s.test, s.p, float(q), s.seeds_needed) for s, q in zip(steps, adjusted)]
        result.append(Ordering(axis, levels, steps))
    return result


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v == v for v in values)


def trends(runs: pd.DataFrame, axes: Sequence[str], key: str, rows: str | None) -> list[Trend]:
    """Spearman trend tests along every ordered numeric axis with 3 or more values, per level of `rows`."""
    result = []
    for axis in axes:
        usable = runs[[v is not NA and v is not None for v in runs[axis]]]
        values = list(dict.fromkeys(usable[axis]))
        if len(values) < 3 or not _numeric(values):
            continue
        by = rows if rows and rows != axis else None
        groups = [("", usable)] if by is None else [
            (f"{axis_name(by)} {format_value(level)}", usable[[cell_key(v) == cell_key(level) for v in usable[by]]])
            for level in dict.fromkeys(usable[by]) if level is not NA]
        found = []
        for within, group in groups:
            if group[axis].nunique() < 3:
                continue
            test = scipy_stats().spearmanr(group[axis].to_numpy(float), group[key].to_numpy(float))
            found.append(Trend(axis, within, float(test.statistic), float(test.pvalue), math.nan, len(group)))
        adjusted = holm([t.p for t in found])
        result += [Trend(t.axis, t.within, t.rho, t.p, float(q), t.n) for t, q in zip(found, adjusted)]
    return result


def _ordering_line(o: Ordering, m: Metric) -> str:
    parts = [f"{format_value(o.levels[0][0])} {m.format(o.levels[0][1])}"]
    for step, (value, mean, _) in zip(o.steps, o.levels[1:]):
        sign = ">" if step.p_holm < ALPHA else "≈"
        parts.append(f"{sign} ({format_p(step.p_holm, prefix=True)}) {format_value(value)} {m.format(mean)}")
    tests = sorted({s.test for s in o.steps})
    return (f"- **{axis_label(o.axis)}**: {' '.join(parts)} ({m.unit or m.label.lower()}, mean over cells; "
            f"{sum(n for _, _, n in o.levels)} runs; tests: {', '.join(tests)})")


def _trend_line(axis: str, found: list[Trend], m: Metric) -> str:
    name = axis_name(axis).lower()
    parts = []
    for t in found:
        where = f" for {t.within}" if t.within else ""
        stats = f"Spearman ρ = {t.rho:.2f}, Holm-adjusted {format_p(t.p_holm, prefix=True)}, {t.n} runs"
        if t.p_holm < ALPHA:
            parts.append(f"{m.label.lower()} {'rises' if t.rho > 0 else 'falls'} as {name} grows{where} ({stats})")
        else:
            parts.append(f"no trend established{where} ({stats})")
    return f"- Trend along {name}: " + "; ".join(parts)


def _cell_label(cell: dict[str, Any], axes: Sequence[str]) -> str:
    return ", ".join(f"{axis_name(a)} {format_value(cell[a])}" for a in axes) or "all runs"


def render_findings(runs: pd.DataFrame, cells: pd.DataFrame, axes: Sequence[str], key: str, m: Metric,
                    rows: str | None, control: tuple[str, Any] | None) -> list[str]:
    """The Findings section's lines. `runs`: the finished runs of the reported `cells` (their axes and `key`);
    with a control, `cells` carries the significance module's CONTROL_COLUMNS."""
    lines = ["## Findings", ""]
    with_value = cells[cells[f"{key}_n"] > 0]
    if with_value.empty:
        return lines + ["No run has finished yet.", ""]
    lines += [f"{m.label} ({m.unit}) from {len(runs)} finished runs. `>`: neighbours differ (Holm-adjusted p < "
              f"{ALPHA}); `≈`: the data cannot tell them apart.", ""]
    found_trends = trends(runs, axes, key, rows)
    for o in orderings(runs, cells, axes, key):
        lines.append(_ordering_line(o, m))
        along = [t for t in found_trends if t.axis == o.axis]
        if along:
            lines.append(_trend_line(o.axis, along, m))
    if control is not None and "p_holm" in cells:
        lines.append(_control_line(with_value, control, m))
    lines += _seeds_lines(with_value, cells, axes, key, m, control)
    n_stale = int(cells["n_stale"].sum())
    if n_stale:
        lines.append(f"- **{n_stale} of the runs behind these numbers were trained under other code** (stale, "
                     "marked † in the tables); see Provenance.")
    return lines + [""]


def _control_line(cells: pd.DataFrame, control: tuple[str, Any], m: Metric) -> str:
    """Per level of the control axis, in how many of its compared cells it is significantly better or worse."""
    axis, level = control
    compared = cells[cells["control_n"].notna()]
    verdicts: dict[str, list[str]] = {"better": [], "worse": [], "cannot be told apart from it": []}
    for _, group in compared.groupby(group_codes(compared, [axis]), sort=False):
        name = format_value(group[axis].iloc[0])
        significant = group["p_holm"] < ALPHA
        better = significant & (group["delta_vs_control"] * (1 if m.higher_is_better else -1) > 0)
        for verdict, count in (("better", better.sum()), ("worse", (significant & ~better).sum()),
                               ("cannot be told apart from it", (~significant).sum())):
            if count:
                verdicts[verdict].append(f"{name} in {count} of {len(group)} cells")
    parts = [f"significantly {v}: {', '.join(items)}" if v != "cannot be told apart from it" else
             f"{v}: {', '.join(items)}" for v, items in verdicts.items() if items]
    return (f"- **Against the control** ({axis_name(axis).lower()} {format_value(level)}, Welch, Holm-adjusted): "
            + ("; ".join(parts) or "no cell could be compared") + ". Details: the table against the control.")


def _seeds_lines(with_value: pd.DataFrame, cells: pd.DataFrame, axes: Sequence[str], key: str, m: Metric,
                 control: tuple[str, Any] | None) -> list[str]:
    fewest = int(with_value[f"{key}_n"].min())
    if fewest >= MIN_SEEDS:
        return []
    line = (f"- **Seeds**: cells have as few as {fewest} finished seed{'s' if fewest > 1 else ''}; with fewer than "
            f"{MIN_SEEDS} per cell no difference can be established.")
    if fewest < 2 and int(with_value[f"{key}_n"].max()) < 2:
        return [line + " With one seed the spread is unknown, so the seeds a difference needs cannot be estimated."]
    if control is None or "seeds_needed" not in cells:
        return [line + f" Set `report.control` to see, per cell, how many seeds the observed spread would need "
                       f"(Welch, alpha {ALPHA}, power {POWER})."]
    needed = with_value[with_value["seeds_needed"].notna() & ((with_value[f"{key}_n"] < MIN_SEEDS)
                                                               | (with_value["control_n"] < MIN_SEEDS))]
    axis = control[0]
    others = [a for a in axes if with_value[a].nunique(dropna=False) > 1]
    items = [f"{_cell_label(c, others)}: "
             f"{'more than 1000' if math.isinf(c['seeds_needed']) else int(c['seeds_needed'])}"
             f" (difference {m.format(c['delta_vs_control'])})" for c in needed.to_dict("records")]
    if not items:
        return [line]
    return [line + f" Seeds per cell that Welch's test (alpha {ALPHA}, power {POWER}) would need, at the observed "
                   f"spread, to detect the observed difference to {axis_name(axis).lower()} "
                   f"{format_value(control[1])}: " + "; ".join(items) + "."]

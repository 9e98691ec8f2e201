"""Paper tables of a study's cells: one metric pivoted over two axes, or every cell with its main metrics, rendered
as LaTeX (booktabs) and Markdown.

A value is the mean over seeds, "± std" when the seeds differ, printed with the decimals its split resolves (an
accuracy on 360 test images moves in steps of 0.28 points: one decimal), in bold where it is the best of its column
(compared as printed, so ties are all bold), with the number of seeds behind it where fewer finished than were
planned. With significance (the main metric's pivot table): underlined where it cannot be told apart from its
column's best, an arrow where it differs from the control. A dagger marks a mean that includes runs trained under
other code (stale). A cell without a value shows its status (missing, running, failed, ...) instead; an axis
that a cell's model ignores shows as "n/a".
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from .metrics import TABLE_METRICS, Metric, axis_name, metric
from .stats import ALPHA

NOT_IN_GRID = "–"
COLUMN_PT = 229     # one column of a two-column paper: article 229 pt, ACM 241 pt, IEEE 252 pt
TABCOLSEP_PT = 4    # half the gap between table columns (LaTeX's default is 6 pt)


@dataclass(frozen=True)
class Entry:
    text: str                   # the formatted mean, or the cell's status when it has no value
    spread: str | None = None   # the formatted std, when the seeds differ
    n: int | None = None        # seeds behind the mean, set only when fewer than planned
    bold: bool = False
    empty: bool = False         # `text` is a status, not a value
    tied: bool = False          # not significantly different from the best of its column
    versus: int = 0             # +1 / -1: significantly better / worse than the control
    stale: bool = False         # includes runs trained under other code


@dataclass(frozen=True)
class Table:
    name: str                   # the file stem under tables/
    study: str
    title: str                  # a heading for the table
    caption: str                # plain text; "±" is rendered per format
    stub: list[str]             # headers of the row-label columns
    group: str | None           # a header spanning all value columns
    columns: list[str]          # headers of the value columns
    rows: list[tuple[tuple[str, ...], list[Entry]]]
    units: list[str] | None = None  # a second header line under `columns`, e.g. "(img/s)"


def format_value(value: Any) -> str:
    """An axis value as a header or row label: 2, 0.1, dwconv, n/a (ignored); missing values as "none"."""
    if value is None or (isinstance(value, float) and value != value):
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_p(p: float, prefix: bool = False) -> str:
    """A p-value as "0.041" or "< 0.001" ("p = 0.041", "p < 0.001" with `prefix`), "n/a" where there was no test."""
    if not p == p:
        return "p n/a" if prefix else "n/a"
    text = "< 0.001" if p < 0.001 else f"{p:.2g}"
    return (f"p {text}" if text[0] == "<" else f"p = {text}") if prefix else text


def split_size(cells: pd.DataFrame | dict[str, Any], m: Metric) -> Any:
    """The size of the split `m` is measured on, per cell (None when unknown or not an accuracy)."""
    return cells.get(f"{m.split}_size") if m.split else None


def _entry_columns(key: str) -> list[str]:
    """The columns of the cells table that `_entry` reads for metric `key`."""
    return ["status", "n_runs", "n_stale", "train_size", "val_size", "test_size", f"{key}_n", f"{key}_mean",
            f"{key}_std"]


def _entry(cell: dict[str, Any], m: Metric) -> Entry:
    n = int(cell[f"{m.key}_n"])
    if n == 0:
        return Entry(text=cell["status"] if cell["status"] != "done" else "n/a", empty=True)
    m = m.resolved(split_size(cell, m))
    std = cell[f"{m.key}_std"]
    spread = m.format(std) if n >= 2 and std > 0 else None
    return Entry(text=m.format(cell[f"{m.key}_mean"]), spread=spread, n=n if n < cell["n_runs"] else None,
                 stale=cell["n_stale"] > 0)


def _compared(entry: Entry, cell: dict[str, Any], m: Metric) -> Entry:
    """`entry` with the significance marks of `cell` (from the significance module's columns)."""
    if entry.empty:
        return entry
    versus = 0
    if cell.get("p_holm") is not None and cell["p_holm"] < ALPHA:  # NaN (not compared) is never < ALPHA
        versus = (1 if m.higher_is_better else -1) * (1 if cell["delta_vs_control"] > 0 else -1)
    return replace(entry, tied=bool(cell.get("tied_with_best")), versus=versus)


def _bold_best(entries: list[Entry], m: Metric) -> list[Entry]:
    values = [float(e.text) for e in entries if not e.empty]
    if not values:
        return entries
    best = max(values) if m.higher_is_better else min(values)
    return [replace(e, bold=True) if not e.empty and float(e.text) == best else e for e in entries]


def _varying(cells: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    return [k for k in keys if cells[k].nunique(dropna=False) > 1]


def _seeds_phrase(cells: pd.DataFrame, m: Metric | None = None) -> str:
    """"mean ± std over n = 3 seeds per cell; test set 360 images" (the split's size for an accuracy `m`)."""
    planned = sorted(set(cells["n_runs"]))
    if planned == [1]:
        phrase = "one seed per cell (n = 1)"
    else:
        seeds = str(planned[0]) if len(planned) == 1 else f"{planned[0]}–{planned[-1]}"
        phrase = f"mean ± std over n = {seeds} seeds per cell"
    sizes = sorted({int(s) for s in cells[f"{m.split}_size"] if s is not None and s == s}) if m and m.split else []
    if sizes:
        split = {"test": "test set", "val": "validation set", "train": "training set"}[m.split]
        counts = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}–{sizes[-1]:,}"
        phrase += f"; {split}{'s' if len(sizes) > 1 else ''} of {counts} images"
    return phrase


def _marks_phrase(entries: Sequence[Entry], control: tuple[str, Any] | None) -> str:
    """The caption's key to the marks that occur in `entries`."""
    parts = []
    if any(e.tied for e in entries):
        parts.append("underlined: cannot be told apart from the best of its column")
    if any(e.versus for e in entries) and control:
        parts.append(f"↑/↓: significantly better/worse than {axis_name(control[0]).lower()} "
                     f"{format_value(control[1])}")
    if parts:
        parts[-1] += f" (Welch's t-test over seeds, Holm-adjusted over the table, p < {ALPHA})"
    if any(e.stale for e in entries):
        parts.append("†: includes runs trained under other code (stale)")
    return "".join(f" {p[0].upper()}{p[1:]}." for p in parts)


def pivot_table(cells: pd.DataFrame, key: str, rows: str | None, columns: str | None, axes: Sequence[str],
                study: str, compared: bool = False, control: tuple[str, Any] | None = None) -> Table:
    """`key` with `rows` down and `columns` across; axes besides those that vary become outer row labels, and the
    best value is picked per column within each block of them. `compared`: `cells` carries the significance
    module's columns for `key` (the main metric), and entries are marked with them."""
    m = metric(key).fitted(cells[f"{key}_mean"])
    outer = _varying(cells, [a for a in axes if a not in (rows, columns)])
    row_keys = [*outer, rows] if rows else outer
    marks = ["tied_with_best", "p_holm", "delta_vs_control"] if compared else []
    wanted = [*row_keys, *([columns] if columns else []), *_entry_columns(key), *(c for c in marks if c in cells)]
    records = cells[list(dict.fromkeys(wanted))].to_dict("records")
    by_key = {(tuple(format_value(c[k]) for k in row_keys), format_value(c[columns]) if columns else ""): c
              for c in records}
    # rows block by block (the outer axes' values), each block in order of first appearance
    row_labels = list(dict.fromkeys(r for r, _ in by_key))
    first = {r[:len(outer)]: i for i, r in reversed(list(enumerate(row_labels)))}
    row_labels.sort(key=lambda r: first[r[:len(outer)]])
    column_labels = list(dict.fromkeys(c for _, c in by_key))

    def entry(cell: dict[str, Any]) -> Entry:
        return _compared(_entry(cell, m), cell, m) if compared else _entry(cell, m)

    body = [[entry(by_key[r, c]) if (r, c) in by_key else Entry(NOT_IN_GRID, empty=True) for c in column_labels]
            for r in row_labels]
    blocks: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(row_labels):
        blocks.setdefault(r[:len(outer)], []).append(i)
    for members in blocks.values():
        for j in range(len(column_labels)):
            best = _bold_best([body[i][j] for i in members], m)
            for i, entry in zip(members, best):
                body[i][j] = entry

    across = f", columns {axis_name(columns)}" if columns else ""
    caption = (f"{m.title} of study {study}, rows {axis_name(rows) if rows else 'all runs'}{across}: "
               f"{_seeds_phrase(cells, m)}; best per column in bold."
               + _marks_phrase([e for row in body for e in row], control))
    return Table(
        name=key, study=study, title=m.title, caption=caption, stub=[axis_name(k) for k in row_keys] or [""],
        group=axis_name(columns) if columns else None,
        columns=column_labels if columns else [m.title],
        rows=[(r or ("all",), entries) for r, entries in zip(row_labels, body)],
    )


def cells_table(cells: pd.DataFrame, main: str, axes: Sequence[str], study: str) -> Table:
    """Every cell with the main metric, the TABLE_METRICS and its finished/planned seeds."""
    keys = list(dict.fromkeys([main, *TABLE_METRICS]))
    stub = _varying(cells, axes)
    records = cells[list(dict.fromkeys(c for k in keys for c in _entry_columns(k)))].to_dict("records")
    fitted = [metric(k).fitted(cells[f"{k}_mean"]) for k in keys]
    columns = [_bold_best([_entry(c, m) for c in records], m) for m in fitted]
    seeds = [Entry(f"{d}/{r}") for d, r in zip(cells["n_done"], cells["n_runs"])]
    rows = [(tuple(format_value(v) for v in label) or ("all",), [col[i] for col in columns] + [seeds[i]])
            for i, label in enumerate(cells[stub].itertuples(index=False))]
    caption = (f"All cells of study {study}: {_seeds_phrase(cells, fitted[0])}; best per column in bold."
               + _marks_phrase([e for col in columns for e in col], None))
    return Table(name="cells", study=study, title="All cells", caption=caption,
                 stub=[axis_name(k) for k in stub] or ["Cell"], group=None,
                 columns=[m.short for m in fitted] + ["Seeds"], rows=rows,
                 units=[f"({m.unit})" if m.unit else "" for m in fitted] + ["done"])


def significance_table(cells: pd.DataFrame, key: str, axes: Sequence[str], control: tuple[str, Any],
                       study: str) -> Table:
    """Every cell compared with its control: both means, the difference with its 95% interval, the p-value, the
    Holm-adjusted one (bold below ALPHA) and the seeds per cell the observed spread would need."""
    m = metric(key)
    compared = cells[cells["control_n"].notna()]
    stub = _varying(compared, axes) or [control[0]]
    rows = []
    for cell in compared.to_dict("records"):
        shown = m.resolved(split_size(cell, m))
        needed = cell["seeds_needed"]
        rows.append((tuple(format_value(cell[a]) for a in stub), [
            _entry(cell, shown), Entry(shown.format(cell["control_mean"])),
            Entry(f"{'+' if cell['delta_vs_control'] > 0 else ''}{shown.format(cell['delta_vs_control'])}"),
            Entry("–" if cell["delta_ci_low"] != cell["delta_ci_low"] else
                  f"[{shown.format(cell['delta_ci_low'])}, {shown.format(cell['delta_ci_high'])}]"),
            Entry(format_p(cell["p_value"])), Entry(format_p(cell["p_holm"]), bold=cell["p_holm"] < ALPHA),
            Entry("–" if needed != needed else "> 1000" if needed == float("inf") else str(int(needed))),
        ]))
    level = f"{axis_name(control[0]).lower()} {format_value(control[1])}"
    caption = (f"{m.title} of study {study} against the control, {level}: difference = cell - control, its 95% "
               f"interval and p-value from Welch's t-test over seeds, p adjusted with Holm's method over the "
               f"table (bold: below {ALPHA}); seeds: per cell, for Welch's test to detect the observed difference "
               f"at the observed spread (alpha {ALPHA}, power 0.8); {_seeds_phrase(compared, m)}.")
    return Table(name="significance", study=study, title=f"Against the control ({level})", caption=caption,
                 stub=[axis_name(k) for k in stub], group=None,
                 columns=[m.short, "Control", "Difference", "95% CI", "p", "p (Holm)", "Seeds needed"], rows=rows,
                 units=[f"({m.unit})" if m.unit else ""] * 4 + ["", "", ""])


def selection_table(cells: pd.DataFrame, over: Sequence[str], select_metric: str, axes: Sequence[str],
                    study: str) -> Table:
    """The setting of the `over` axes that validation chose for each combination of the other axes."""
    m = metric(select_metric)
    stub = _varying(cells, [a for a in axes if a not in over])
    rows = [(tuple(format_value(cell[a]) for a in stub) or ("all",),
             [Entry(format_value(cell[o])) if cell["selected"] else Entry(NOT_IN_GRID, empty=True) for o in over]
             + [_entry(cell, m), Entry(str(cell["selection"]))]) for cell in cells.to_dict("records")]
    caption = (f"Settings chosen in study {study}: for each combination of the other axes, the setting of "
               f"{', '.join(axis_name(o).lower() for o in over)} with the best mean {m.label.lower()} over seeds "
               f"(ties: the first in grid order); no test metric is read. The tables report the test metrics of "
               f"these settings.")
    return Table(name="selection", study=study, title="Chosen settings", caption=caption,
                 stub=[axis_name(k) for k in stub] or ["Cell"], group=None,
                 columns=[axis_name(o) for o in over] + [m.short, "Chosen"], rows=rows,
                 units=[""] * len(over) + [f"({m.unit})" if m.unit else "", ""])


_LATEX_SPECIALS = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                                      "\\": r"\textbackslash{}", "±": r"$\pm$", "–": "--"}
_LATEX_RE = re.compile("|".join(map(re.escape, _LATEX_SPECIALS)))


def latex_escape(text: str) -> str:
    return _LATEX_RE.sub(lambda match: _LATEX_SPECIALS[match.group()], text)


def _latex_entry(e: Entry) -> str:
    if e.empty:
        return rf"\emph{{{latex_escape(e.text)}}}"
    core = e.text + (rf" $\pm$ {e.spread}" if e.spread else "")
    core = rf"\textbf{{{core}}}" if e.bold else rf"\underline{{{core}}}" if e.tied else core
    marks = {1: r"$\uparrow$", -1: r"$\downarrow$", 0: ""}[e.versus] + (r"$^\dagger$" if e.stale else "")
    return core + marks + (f"$_{{n={e.n}}}$" if e.n else "")


def _width_pt(table: Table) -> float:
    """A rough width of the LaTeX tabular in \\small type: about 5 pt a character, plus the column gaps."""
    def chars(e: Entry) -> int:
        return len(e.text) + (len(e.spread) + 3 if e.spread else 0) + (3 if e.n else 0) + bool(e.versus) + e.stale
    widths = [len(h) for h in table.stub] + [max(len(h), len(u)) for h, u in
                                             zip(table.columns, table.units or [""] * len(table.columns))]
    for labels, entries in table.rows:
        widths = [max(w, n) for w, n in zip(widths, [*map(len, labels), *map(chars, entries)])]
    return sum(5.0 * w + 2 * TABCOLSEP_PT for w in widths)


def to_latex(table: Table) -> str:
    """A float with a booktabs tabular in \\small type, needing only \\usepackage{booktabs}: `table` when it fits
    one column of a two-column paper, else `table*` (both columns; in a one-column paper the same as `table`)."""
    nstub, ncols = len(table.stub), len(table.columns)
    float_env = "table" if _width_pt(table) <= COLUMN_PT else "table*"
    has_n = any(e.n for _, entries in table.rows for e in entries)
    caption = latex_escape(table.caption) + (r" A subscript $n$ gives the seeds behind a mean where fewer finished"
                                             r" than were planned." if has_n else "")
    label = re.sub(r"[^A-Za-z0-9:.-]+", "-", f"tab:{table.study}:{table.name}")
    lines = [
        "% Generated by `python -m analysis`; needs \\usepackage{booktabs}.",
        rf"\begin{{{float_env}}}[htbp]", r"\centering", r"\small", rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT}pt}}",
        rf"\caption{{{caption}}}", rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{'l' * nstub}{'c' * ncols}}}", r"\toprule",
    ]
    if table.group:
        lines.append("&" * nstub + rf" \multicolumn{{{ncols}}}{{c}}{{{latex_escape(table.group)}}} \\")
        lines.append(rf"\cmidrule(lr){{{nstub + 1}-{nstub + ncols}}}")
    lines.append(" & ".join(latex_escape(h) for h in [*table.stub, *table.columns]) + r" \\")
    if table.units:
        lines.append(" & ".join([""] * nstub + [latex_escape(u) for u in table.units]) + r" \\")
    lines.append(r"\midrule")
    previous: tuple[str, ...] = ()
    for labels, entries in table.rows:
        if previous and labels[:nstub - 1] != previous[:nstub - 1]:
            lines.append(r"\midrule")  # a new block of the outer axes
        shown = [lab if labels[:i + 1] != previous[:i + 1] else "" for i, lab in enumerate(labels)]
        lines.append(" & ".join([*map(latex_escape, shown), *map(_latex_entry, entries)]) + r" \\")
        previous = labels
    lines += [r"\bottomrule", r"\end{tabular}", rf"\end{{{float_env}}}"]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _md_entry(e: Entry) -> str:
    if e.empty:
        return f"*{_md_escape(e.text)}*" if e.text != NOT_IN_GRID else e.text
    core = e.text + (f" ± {e.spread}" if e.spread else "")
    core = f"**{core}**" if e.bold else f"<u>{core}</u>" if e.tied else core
    marks = {1: " ↑", -1: " ↓", 0: ""}[e.versus] + ("†" if e.stale else "")
    return core + marks + (f" (n={e.n})" if e.n else "")


def to_markdown(table: Table) -> str:
    has_n = any(e.n for _, entries in table.rows for e in entries)
    caption = table.caption + (" (n=k): the seeds behind a mean where fewer finished than were planned." if has_n
                               else "")
    stub = list(table.stub)
    if table.group:
        stub[-1] = f"{stub[-1]} \\ {table.group}"
    columns = [f"{c} {u}".strip() for c, u in zip(table.columns, table.units)] if table.units else table.columns
    header = [*stub, *columns]
    lines = [caption, "", "| " + " | ".join(map(_md_escape, header)) + " |",
             "|" + "|".join([":---"] * len(stub) + ["---:"] * len(table.columns)) + "|"]
    for labels, entries in table.rows:
        lines.append("| " + " | ".join([*map(_md_escape, labels), *map(_md_entry, entries)]) + " |")
    return "\n".join(lines) + "\n"

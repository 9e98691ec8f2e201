"""What the tables pivot over, compare against and select on, and what the plots encode: the study's `report` and
`select` sections, then defaults, then flags.

    report:
      table: {rows: model.mixer, columns: model.patch_size, metric: test_top1}
      plots: {x: model.patch_size, hue: model.mixer, style: model.patch_size}
      control: {model.mixer: dwconv}              # differences, CIs and Holm-adjusted p-values against this level
      figures: true                               # false: summary, tables and report.md only
    select: {metric: val_top1, over: [recipe.lr, recipe.weight_decay]}

Defaults: rows are model.mixer when it is an axis (else the first axis), columns model.patch_size when it is an
axis (else the next one), never an axis selected over; the plots colour by the rows, mark and plot against the
columns. `check_report` is what the study runner calls before anything trains, so that every mistake a report
build would meet is found then.
"""
from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .load import Study
from .metrics import METRICS, SELECT_METRICS

REPORT_KEYS = {"table": ("rows", "columns", "metric"), "plots": ("x", "hue", "style"), "control": None,
               "figures": None}
SELECT_KEYS = ("metric", "over")


class SpecError(ValueError):
    """A report or selection setting that cannot work: the message names the key path, what was found, what is valid."""


@dataclass(frozen=True)
class ReportSpec:
    rows: str | None        # table rows
    columns: str | None     # table columns (None: a single column, the metric)
    metric: str             # what the pivot tables, the heatmap, the findings and the accuracy plots show
    x: str | None           # the axis of the "metric against an axis" plot
    hue: str | None         # colour in every plot
    style: str | None       # marker in the throughput scatter
    control: tuple[str, Any] | None = None  # (axis, level) every other level is compared with
    select_metric: str | None = None        # a validation metric ...
    select_over: tuple[str, ...] = ()       # ... whose best mean picks these axes' setting per other combination

    def keys(self) -> list[str]:
        """The config columns the spec names, each once."""
        return list(dict.fromkeys(k for k in (self.rows, self.columns, self.x, self.hue, self.style) if k))


def _did_you_mean(name: Any, known: Collection[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return value


def _known_keys(mapping: Mapping[str, Any], known: Collection[str], where: str) -> None:
    for key in mapping:
        if key not in known:
            raise SpecError(f"{where}: unknown key {key!r}{_did_you_mean(key, known)}; valid: {', '.join(known)}")


def check_metric(value: Any, where: str, known: Collection[str] = tuple(METRICS)) -> str:
    if value not in known:
        raise SpecError(f"{where}: {value!r} is not a metric here{_did_you_mean(value, known)}; "
                        f"valid: {', '.join(known)}")
    return value


def check_axis(value: Any, axes: Collection[str], where: str) -> str:
    if value not in axes:
        raise SpecError(f"{where}: {value!r} is not an axis of the study{_did_you_mean(value, axes)}; "
                        f"the study's axes: {', '.join(axes) or '(none: it varies only the seed)'}")
    return value


def check_report(report: Mapping[str, Any], axes: Sequence[str] | Mapping[str, Sequence[Any]],
                 select: Mapping[str, Any] | None, study_file: str) -> None:
    """Raise SpecError for anything in a study's `report` and `select` sections that a report build would reject.

    `axes` lists the study's axes, or maps each to its values (then a control level is checked against them too).
    Torch-free and fast: the study runner calls it while it validates a study file, before anything trains.
    """
    values: Mapping[str, Sequence[Any] | None] = axes if isinstance(axes, Mapping) else dict.fromkeys(axes)
    names = list(values)
    where = f"{study_file}.report"
    report = _mapping(report, where)
    _known_keys(report, REPORT_KEYS, where)
    table = _mapping(report.get("table"), f"{where}.table")
    plots = _mapping(report.get("plots"), f"{where}.plots")
    _known_keys(table, REPORT_KEYS["table"], f"{where}.table")
    _known_keys(plots, REPORT_KEYS["plots"], f"{where}.plots")
    if not isinstance(report.get("figures", True), bool):
        raise SpecError(f"{where}.figures: expected true or false, got {report['figures']!r}")
    if table.get("metric") is not None:
        check_metric(table["metric"], f"{where}.table.metric")
    for section, keys in (("table", ("rows", "columns")), ("plots", REPORT_KEYS["plots"])):
        for key in keys:
            value = (table if section == "table" else plots).get(key)
            if value is not None:
                check_axis(value, names, f"{where}.{section}.{key}")
    if table.get("rows") is not None and table.get("rows") == table.get("columns"):
        raise SpecError(f"{where}.table: rows and columns are both {table['rows']!r}; pick two different axes")

    over: list[str] = []
    if select:
        select = _mapping(select, f"{study_file}.select")
        _known_keys(select, SELECT_KEYS, f"{study_file}.select")
        check_metric(select.get("metric"), f"{study_file}.select.metric (selection uses validation data only)",
                     SELECT_METRICS)
        over = select.get("over")
        if not isinstance(over, list) or not over:
            raise SpecError(f"{study_file}.select.over: expected a list of the axes to select over, got {over!r}")
        for i, axis in enumerate(over):
            check_axis(axis, names, f"{study_file}.select.over[{i}]")
        for key in ("rows", "columns"):
            if table.get(key) in over:
                raise SpecError(f"{where}.table.{key}: {table[key]!r} is selected over (select.over), so each "
                                f"table entry has one chosen value of it; pick another axis")

    control = _mapping(report.get("control"), f"{where}.control")
    if len(control) > 1:
        raise SpecError(f"{where}.control: names {len(control)} axes ({', '.join(control)}); name one axis and "
                        f"its reference level, e.g. {{model.mixer: dwconv}}")
    for axis, level in control.items():
        check_axis(axis, names, f"{where}.control")
        if axis in over:
            raise SpecError(f"{where}.control: {axis!r} is selected over (select.over); a control needs an axis "
                            "whose every level is reported")
        known = values[axis]
        if known is not None and level not in known:
            raise SpecError(f"{where}.control.{axis}: {level!r} is not one of its values"
                            f"{_did_you_mean(level, [str(v) for v in known])}; valid: "
                            f"{', '.join(map(str, known))}")


def _preferred(axes: Sequence[str], preferred: str, taken: str | None) -> str | None:
    if preferred in axes and preferred != taken:
        return preferred
    return next((a for a in axes if a != taken), None)


def resolve_spec(study: Study, rows: str | None = None, columns: str | None = None,
                 metric: str | None = None) -> ReportSpec:
    """The report spec of `study`; `rows`, `columns` and `metric` override the study file's (the CLI's flags)."""
    check_report(study.report, {a: study.values(a) for a in study.axes}, study.select, str(study.file))
    over = tuple(study.select.get("over") or ())
    free = [a for a in study.axes if a not in over]
    for flag, value in (("--rows", rows), ("--columns", columns)):
        if value is not None:
            check_axis(value, free, flag)
    if metric is not None:
        check_metric(metric, "--metric")
    table: Mapping[str, Any] = study.report.get("table") or {}
    plots: Mapping[str, Any] = study.report.get("plots") or {}
    rows = rows or table.get("rows") or _preferred(free, "model.mixer", None)
    columns = columns or table.get("columns") or _preferred(free, "model.patch_size", rows)
    if rows is not None and rows == columns:
        raise SpecError(f"report table rows and columns are both {rows!r}; pick two different axes")
    control = next(iter((study.report.get("control") or {}).items()), None)
    return ReportSpec(
        rows=rows, columns=columns, metric=metric or table.get("metric") or "test_top1",
        x=plots.get("x") or columns, hue=plots.get("hue") or rows, style=plots.get("style") or columns,
        control=control, select_metric=study.select.get("metric"), select_over=over,
    )

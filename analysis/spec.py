"""What the tables pivot over and what the plots encode: the study's `report` section, then defaults, then flags.

    report:
      table: {rows: model.mixer, columns: model.patch_size, metric: test_top1}
      plots: {x: model.patch_size, hue: model.mixer, style: model.patch_size}

Defaults: rows are model.mixer when it is an axis (else the first axis), columns model.patch_size when it is an
axis (else the next one); the plots colour by the rows, mark and plot against the columns.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .load import Study
from .metrics import METRICS


class SpecError(ValueError):
    """A report setting that names no column of the study's table."""


@dataclass(frozen=True)
class ReportSpec:
    rows: str | None        # table rows
    columns: str | None     # table columns (None: a single column, the metric)
    metric: str             # what the pivot tables, the heatmap and the accuracy plots show
    x: str | None           # the axis of the "metric against an axis" plot
    hue: str | None         # colour in every plot
    style: str | None       # marker in the throughput scatter

    def keys(self) -> list[str]:
        """The config columns the spec names, each once."""
        return list(dict.fromkeys(k for k in (self.rows, self.columns, self.x, self.hue, self.style) if k))


def _preferred(axes: list[str], preferred: str, taken: str | None) -> str | None:
    if preferred in axes and preferred != taken:
        return preferred
    return next((a for a in axes if a != taken), None)


def resolve_spec(study: Study, available: Collection[str], rows: str | None = None, columns: str | None = None,
                 metric: str | None = None) -> ReportSpec:
    """The report spec of `study`; `rows`, `columns` and `metric` override the study file's (the CLI's flags)."""
    table: dict[str, Any] = study.report.get("table") or {}
    plots: dict[str, Any] = study.report.get("plots") or {}
    rows = rows or table.get("rows") or _preferred(study.axes, "model.mixer", None)
    columns = columns or table.get("columns") or _preferred(study.axes, "model.patch_size", rows)
    if rows is not None and rows == columns:
        raise SpecError(f"report table rows and columns are both {rows!r}; pick two different axes")
    spec = ReportSpec(
        rows=rows, columns=columns,
        metric=metric or table.get("metric") or "test_top1",
        x=plots.get("x") or columns, hue=plots.get("hue") or rows, style=plots.get("style") or columns,
    )
    if spec.metric not in METRICS:
        raise SpecError(f"report metric {spec.metric!r} is not a metric; known: {', '.join(METRICS)}")
    for key in spec.keys():
        if key not in available:
            raise SpecError(f"report axis {key!r} is not a column of the study's table; "
                            f"the study's axes: {', '.join(study.axes) or '(none)'}")
    return spec

"""Draw a study's figures and write each as PNG (300 dpi) and PDF under figures/, noting the ones skipped."""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .files import write_atomic
from .metrics import axis_name, metric
from .palette import MIXER
from .plots import (
    FONT_RC,
    PlotSkipped,
    curve_quantity,
    heatmap,
    metric_vs_axis,
    receptive_fields,
    throughput_scatter,
    training_curves,
)
from .spec import ReportSpec
from .tables import format_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KERNEL = "model.kernel_size"


@dataclass
class FigureSet:
    written: dict[str, list[Path]] = field(default_factory=dict)   # name -> [png, pdf]
    captions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)          # name -> why it was not drawn


def plan(cells: pd.DataFrame, curves: pd.DataFrame, spec: ReportSpec, axes: Sequence[str],
         erf: Sequence[dict[str, Any]] = ()) -> dict[str, tuple[Callable[[], Figure], str]]:
    """name -> (draw, caption) of every figure a study gets; `erf`: the cells' receptive fields (load.read_erf)."""
    m = metric(spec.metric)
    hue_order = list(dict.fromkeys(cells[spec.hue])) if spec.hue else None
    by_hue = f" per {axis_name(spec.hue).lower()}" if spec.hue else ""
    figures: dict[str, tuple[Callable[[], Figure], str]] = {
        "throughput_pareto": (
            lambda: throughput_scatter(cells, spec.metric, spec.hue, spec.style, hue_order),
            f"{m.label} against inference throughput, one point per cell (mean over seeds, bars: 95% intervals); "
            "dashed: Pareto front."),
    }
    for x in dict.fromkeys(a for a in (spec.x, KERNEL) if a):
        only = " (only cells whose model uses it)" if any(x in str(v) for v in cells.get("ignored", [])) else ""
        figures[f"{spec.metric}_vs_{x.rsplit('.', 1)[-1]}"] = (
            lambda x=x: metric_vs_axis(cells, spec.metric, x, spec.hue, axes, hue_order),
            f"{m.label} against {axis_name(x).lower()}{by_hue}{only}; error bars: 95% intervals over seeds.")
    quantity = {"top1": "Top-1 accuracy", "top5": "Top-5 accuracy", "loss": "Loss"}[curve_quantity(spec.metric)]
    figures["training_curves"] = (
        lambda: training_curves(curves, spec.metric, spec.hue, axes, hue_order),
        f"{quantity} per epoch on the training, validation and test data{by_hue}, mean over seeds with a 95% "
        "interval band; runs still going are included, failed and diverged ones left out.")
    figures["heatmap"] = (
        lambda: heatmap(cells, spec.metric, spec.rows, spec.columns, axes),
        f"{m.label}, {axis_name(spec.rows or '').lower()} x {axis_name(spec.columns or '').lower()}; "
        "hatched cells have no value yet (their status is printed where there is room).")
    by_mixer = MIXER in axes
    groups: dict[str, list[dict[str, Any]]] = {}
    for receptive in erf:
        groups.setdefault(f"erf_{format_value(receptive[MIXER])}" if by_mixer else "erf", []).append(receptive)
    for name, fields in groups.items():
        figures[name] = (
            lambda fields=fields: receptive_fields(fields, [a for a in axes if a != MIXER]),
            "Effective receptive field" + (f" of {name[4:]}" if by_mixer else "")
            + ": mean absolute gradient of the centre output token with respect to the input, at initialisation "
            "and after training, averaged over seeds, each map divided by its maximum.")
    return figures


def write_figures(cells: pd.DataFrame, curves: pd.DataFrame, spec: ReportSpec, axes: Sequence[str],
                  out_dir: Path, erf: Sequence[dict[str, Any]] = ()) -> FigureSet:
    import matplotlib as mpl
    result = FigureSet()
    for name, (draw, caption) in plan(cells, curves, spec, axes, erf).items():
        paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
        try:
            fig = draw()
        except PlotSkipped as e:
            result.skipped[name] = str(e)
            for stale in paths:  # from an earlier build, when the figure could still be drawn
                stale.unlink(missing_ok=True)
            continue
        for path in paths:
            buffer = io.BytesIO()
            with mpl.rc_context(FONT_RC):  # fonts are embedded at saving time, under the rc then in force
                fig.savefig(buffer, format=path.suffix[1:], dpi=300)
            write_atomic(path, buffer.getvalue())
        result.written[name], result.captions[name] = paths, caption
    return result

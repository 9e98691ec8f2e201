"""Draw a study's figures and write each as PNG (300 dpi) and PDF under figures/, noting the ones skipped."""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .files import write_atomic
from .metrics import axis_name, metric
from .plots import PlotSkipped, heatmap, metric_vs_axis, throughput_scatter, training_curves
from .spec import ReportSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KERNEL = "model.kernel_size"


@dataclass
class FigureSet:
    written: dict[str, list[Path]] = field(default_factory=dict)   # name -> [png, pdf]
    captions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)          # name -> why it was not drawn


def plan(cells: pd.DataFrame, curves: pd.DataFrame, spec: ReportSpec,
         axes: Sequence[str]) -> dict[str, tuple[Callable[[], Figure], str]]:
    """name -> (draw, caption) of every figure a study gets."""
    m = metric(spec.metric)
    hue_order = list(dict.fromkeys(cells[spec.hue])) if spec.hue else None
    by_hue = f" per {axis_name(spec.hue).lower()}" if spec.hue else ""
    figures: dict[str, tuple[Callable[[], Figure], str]] = {
        "throughput_pareto": (
            lambda: throughput_scatter(cells, spec.metric, spec.hue, spec.style, hue_order),
            f"{m.label} against inference throughput, one point per cell (mean over seeds); dashed: Pareto front."),
    }
    for x in dict.fromkeys(a for a in (spec.x, KERNEL) if a):
        figures[f"{spec.metric}_vs_{x.rsplit('.', 1)[-1]}"] = (
            lambda x=x: metric_vs_axis(cells, spec.metric, x, spec.hue, axes, hue_order),
            f"{m.label} against {axis_name(x).lower()}{by_hue}; error bars: ±1 std over seeds.")
    figures["training_curves"] = (
        lambda: training_curves(curves, spec.metric, spec.hue, axes, hue_order),
        f"Test accuracy per epoch{by_hue}, mean over seeds with a ±1 std band; runs still going are included, "
        "failed and diverged ones left out.")
    figures["heatmap"] = (
        lambda: heatmap(cells, spec.metric, spec.rows, spec.columns, axes),
        f"{m.label}, {axis_name(spec.rows or '').lower()} x {axis_name(spec.columns or '').lower()}; "
        "hatched cells have no value yet (their status is printed where there is room).")
    return figures


def write_figures(cells: pd.DataFrame, curves: pd.DataFrame, spec: ReportSpec, axes: Sequence[str],
                  out_dir: Path) -> FigureSet:
    result = FigureSet()
    for name, (draw, caption) in plan(cells, curves, spec, axes).items():
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
            fig.savefig(buffer, format=path.suffix[1:], dpi=300)
            write_atomic(path, buffer.getvalue())
        result.written[name], result.captions[name] = paths, caption
    return result

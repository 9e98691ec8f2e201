"""Figures of a study, sized for a two-column paper: 3.3 in (one column) or 6.9 in (both) wide, no text under 7 pt.

Each function returns a matplotlib Figure, or raises PlotSkipped saying why when what it plots does not vary or
has no data yet. Axes that the figure does not encode but that vary in the study get one panel per value
combination, so that no two cells are ever averaged together. matplotlib and seaborn are imported inside the
functions: building only the tables never pays for them.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .load import ACTIVE, CURVE_COLUMNS
from .metrics import axis_label, axis_name, metric
from .pareto import pareto_mask
from .tables import NOT_IN_GRID, format_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

SINGLE, DOUBLE = 3.3, 6.9   # inches: one column and the full width of a two-column paper
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
HEATMAP_CHAR = 0.06         # inches per character of 7 pt text, to size heatmap cells that print their values
CURVE_STATUSES = ("done", *ACTIVE)


class PlotSkipped(Exception):
    """What a plot needs is not there; the message says what."""


def _paper(plot: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw `plot` under the paper style: seaborn's whitegrid, 8 pt labels and 7 pt ticks and legends."""
    @functools.wraps(plot)
    def styled(*args: Any, **kwargs: Any) -> Figure:
        import matplotlib as mpl
        import seaborn as sns
        rc = {**sns.axes_style("whitegrid"), "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8,
              "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "legend.title_fontsize": 7,
              "lines.linewidth": 1.2, "pdf.fonttype": 42}  # 42: TrueType in PDFs, as publishers ask
        with mpl.rc_context(rc):
            return plot(*args, **kwargs)
    return styled


def _order(values: Sequence[Any]) -> list[Any]:
    """Distinct values in order of appearance, numbers sorted; missing values (None, NaN) once, last."""
    missing = [v for v in values if v is None or (isinstance(v, float) and v != v)]
    distinct = list(dict.fromkeys(v for v in values if not (v is None or (isinstance(v, float) and v != v))))
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in distinct)
    return (sorted(distinct) if numeric else distinct) + missing[:1]


def _palette(labels: Sequence[str]) -> dict[str, Any]:
    import seaborn as sns
    return dict(zip(labels, sns.color_palette("colorblind" if len(labels) <= 10 else "husl", len(labels))))


def _hue_labels(frame: pd.DataFrame, hue: str | None, hue_order: Sequence[Any] | None) -> list[str]:
    if hue is None:
        return ["all"]
    return [format_value(v) for v in (hue_order if hue_order is not None else _order(frame[hue].tolist()))]


def _panels(frame: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) for each combination of the `keys` that vary in `frame`; one untitled panel when none do."""
    keys = [k for k in keys if k in frame and frame[k].nunique(dropna=False) > 1]
    if not keys:
        return [("", frame)]
    return [(", ".join(f"{axis_name(k)} {format_value(v)}" for k, v in zip(keys, values)), group)
            for values, group in frame.groupby(keys, sort=False, dropna=False)]


def _grid(n: int, panel_height: float, sharey: bool = True, width: float | None = None,
          per_row: int = 3) -> tuple[Figure, list[Axes]]:
    """`n` panels, `per_row` to a row; one column wide for a single panel, else two, unless `width` is given."""
    from matplotlib.figure import Figure
    ncols = min(n, per_row)
    nrows = math.ceil(n / ncols)
    # a bare Figure, not pyplot's: no global state, no backend to pick, nothing to close
    fig = Figure(figsize=(width or (SINGLE if n == 1 else DOUBLE), 0.5 + panel_height * nrows), layout="constrained")
    axs = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    axes = list(axs.flat)
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _compact(value: float) -> str:
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _log_ticks(axis: Axis, lo: float, hi: float) -> None:
    """Ticks at 1-2-5 style values inside [lo, hi], as few as give three (on a short range: evenly spaced round
    values), labelled 500, 1k, 20k. matplotlib's own log ticks label every minor tick on short ranges, and those
    labels collide in a 3.3 in figure."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks: list[float] = []
    for subs in ((1,), (1, 2, 5), (1, 2, 3, 5, 7), tuple(range(1, 10))):
        ticks = [s * 10.0 ** e for e in decades for s in subs if lo <= s * 10.0 ** e <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) < 3:  # a short range: evenly spaced round values read better
        ticks = [t for t in MaxNLocator(4).tick_values(lo, hi) if lo <= t <= hi]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))


def _legend(fig: Figure, axes: Sequence[Axes], title: str | None) -> None:
    """One legend for all panels, outside on the right, so that it never covers data."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper", title=title)


@_paper
def throughput_scatter(cells: pd.DataFrame, metric_key: str, hue: str | None, style: str | None,
                       hue_order: Sequence[Any] | None = None) -> Figure:
    """The metric against inference throughput (log x), one point per cell (means over seeds), colour by `hue`,
    marker by `style`, with the Pareto front of the plotted points as a dashed staircase."""
    import seaborn as sns
    m = metric(metric_key)
    data = cells[np.isfinite(cells["infer_img_s_mean"]) & np.isfinite(cells[f"{m.key}_mean"])]
    if data.empty:
        raise PlotSkipped("no cell has both a finished run's accuracy and its inference throughput yet")
    x, y = data["infer_img_s_mean"].to_numpy(), data[f"{m.key}_mean"].to_numpy() / m.scale
    fig, (ax,) = _grid(1, 1.9)

    front = pareto_mask(x, y if m.higher_is_better else -y)
    order = np.argsort(x[front])
    # steps-pre: between two front points the best reachable value is the faster point's
    (front_line,) = ax.plot(x[front][order], y[front][order], drawstyle="steps-pre", color="0.45", ls="--",
                            lw=0.9, zorder=1, label="Pareto front")
    frame = pd.DataFrame({"x": x, "y": y})
    hue_name, style_name = (axis_name(hue) if hue else None), (axis_name(style) if style else None)
    if hue:
        frame[hue_name] = [format_value(v) for v in data[hue]]
    if style and style != hue:
        frame[style_name] = [format_value(v) for v in data[style]]
    elif style:
        style_name = hue_name
    styles = _order(data[style].tolist()) if style else []
    hues = _hue_labels(data, hue, hue_order)
    sns.scatterplot(data=frame, x="x", y="y", hue=hue_name, hue_order=hues if hue else None,
                    palette=_palette(hues) if hue else None, style=style_name,
                    style_order=[format_value(v) for v in styles] if style else None,
                    markers=dict(zip(map(format_value, styles), MARKERS * 10)) if style else True,
                    s=26, edgecolor="white", linewidth=0.4, zorder=3, ax=ax, legend="full")
    handles, labels = [front_line], ["Pareto front"]
    legend = ax.get_legend()
    if legend:  # seaborn's, with its hue and style sub-titles and the front, moved out of the axes
        handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
        legend.remove()
    fig.legend(handles, labels, loc="outside right upper")
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.08)
    ax.autoscale_view()
    _log_ticks(ax.xaxis, *ax.get_xlim())
    ax.set_xlabel("Inference throughput (img/s, log scale)")
    ax.set_ylabel(m.title)
    return fig


@_paper
def metric_vs_axis(cells: pd.DataFrame, metric_key: str, x: str | None, hue: str | None, axes: Sequence[str],
                   hue_order: Sequence[Any] | None = None) -> Figure:
    """The metric's mean against the values of axis `x`, a line per `hue` value, error bars +-1 std over seeds."""
    if x is None or x not in cells or cells[x].nunique(dropna=False) < 2:
        raise PlotSkipped(f"{x or 'the x axis'} does not vary")
    m = metric(metric_key)
    if not (cells[f"{m.key}_n"] > 0).any():
        raise PlotSkipped("no run has finished yet")
    xs = _order(cells[x].tolist())
    position = {format_value(v): i for i, v in enumerate(xs)}
    hues = _hue_labels(cells, hue, hue_order)
    colours = _palette(hues)
    panels = _panels(cells, [a for a in axes if a not in (x, hue)])
    fig, axs = _grid(len(panels), 1.9)
    for ax, (title, group) in zip(axs, panels):
        done = group[group[f"{m.key}_n"] > 0]
        labels = [format_value(v) for v in done[hue]] if hue else ["all"] * len(done)
        for k, label in enumerate(hues):
            line = done[[lab == label for lab in labels]]
            if line.empty:
                continue
            dodge = 0.06 * (k - (len(hues) - 1) / 2)  # keeps error bars of different lines apart
            ax.errorbar([position[format_value(v)] + dodge for v in line[x]], line[f"{m.key}_mean"] / m.scale,
                        yerr=line[f"{m.key}_std"].fillna(0) / m.scale, color=colours[label], marker="o", ms=3.5,
                        capsize=2, elinewidth=0.8, label=label)
        ax.set_xticks(range(len(xs)), [format_value(v) for v in xs])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_xlabel(axis_label(x))
        ax.set_title(title)
    axs[0].set_ylabel(m.title)
    _legend(fig, axs, axis_name(hue) if hue else None)
    return fig


@_paper
def training_curves(curves: pd.DataFrame, metric_key: str, hue: str | None, axes: Sequence[str],
                    hue_order: Sequence[Any] | None = None) -> Figure:
    """Per-epoch test metric of every cell (mean over its seeds, band +-1 std where two or more have the epoch),
    a line per `hue` value, a panel per combination of the other axes.

    Runs still going are included; failed and diverged ones are left out, as they are from the tables' means.
    """
    key = metric_key if metric_key in CURVE_COLUMNS else "test_top1"
    m = metric(key)
    data = curves[curves["status"].isin(CURVE_STATUSES)].dropna(subset=[key])
    if data.empty:
        raise PlotSkipped("no run has finished an epoch yet")
    hues = _hue_labels(data, hue, hue_order)
    colours = _palette(hues)
    panels = _panels(data, [a for a in axes if a != hue])
    fig, axs = _grid(len(panels), 1.7)
    for ax, (title, group) in zip(axs, panels):
        labels = np.array([format_value(v) for v in group[hue]] if hue else ["all"] * len(group))
        for label in hues:
            per_epoch = group[labels == label].groupby("epoch")[key]
            if not per_epoch.ngroups:
                continue
            mean, std = per_epoch.mean(), per_epoch.std()
            epochs = mean.index.to_numpy() + 1  # epochs are 0-based in metrics.jsonl; plot epochs completed
            ax.plot(epochs, mean / m.scale, color=colours[label], label=label)
            ax.fill_between(epochs, (mean - std) / m.scale, (mean + std) / m.scale, color=colours[label],
                            alpha=0.2, lw=0)
        ax.set_xlabel("Epoch")
        ax.set_title(title)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axs[0].set_ylabel(f"Test {m.title[0].lower()}{m.title[1:]}")
    _legend(fig, axs, axis_name(hue) if hue else None)
    return fig


@_paper
def heatmap(cells: pd.DataFrame, metric_key: str, rows: str | None, columns: str | None,
            axes: Sequence[str]) -> Figure:
    """The metric's mean over `rows` x `columns`, one colour scale, a panel per combination of the other axes.

    Cells without a value are hatched. Where the figure (at most two columns wide) has room, each cell also prints
    its value as the tables do, or its status; panels go three, two or one to a row to make that room.
    """
    import seaborn as sns
    for role, key in (("rows", rows), ("columns", columns)):
        if key is None:
            raise PlotSkipped(f"the tables have no {role} axis (the study varies fewer than two settings)")
        if key not in cells or cells[key].nunique(dropna=False) < 2:
            raise PlotSkipped(f"{key} does not vary")
    m = metric(metric_key)
    values = cells[f"{m.key}_mean"] / m.scale
    if not np.isfinite(values).any():
        raise PlotSkipped("no run has finished yet")
    row_labels = [format_value(v) for v in _order(cells[rows].tolist())]
    column_labels = [format_value(v) for v in _order(cells[columns].tolist())]
    panels = []
    for title, group in _panels(cells, [a for a in axes if a not in (rows, columns)]):
        grid = pd.DataFrame(np.nan, index=row_labels, columns=column_labels)
        text = pd.DataFrame(NOT_IN_GRID, index=row_labels, columns=column_labels)
        for cell in group.to_dict("records"):
            r, c = format_value(cell[rows]), format_value(cell[columns])
            if cell[f"{m.key}_n"] > 0:
                grid.loc[r, c], text.loc[r, c] = cell[f"{m.key}_mean"] / m.scale, m.format(cell[f"{m.key}_mean"])
            else:
                text.loc[r, c] = cell["status"]
        panels.append((title, grid, text))

    longest = max(len(t) for _, _, text in panels for t in text.to_numpy().flat)
    cell_width = 0.1 + HEATMAP_CHAR * longest
    for per_row in range(min(len(panels), 3), 0, -1):
        needed = 0.8 + per_row * (0.75 + cell_width * len(column_labels))  # colour bar; row labels and cells
        if needed <= DOUBLE:
            break
    annotate = needed <= DOUBLE
    if not annotate:
        per_row = min(len(panels), 3)
    fig, axs = _grid(len(panels), 0.45 + 0.28 * len(row_labels), sharey=False,
                     width=min(DOUBLE, max(SINGLE, needed)), per_row=per_row)
    vmin, vmax = np.nanmin(values), np.nanmax(values)
    for ax, (title, grid, text) in zip(axs, panels):
        sns.heatmap(grid, ax=ax, cmap="viridis", vmin=vmin, vmax=vmax, cbar=False, linewidths=0.5,
                    linecolor="white", annot=text.to_numpy() if annotate else False, fmt="",
                    annot_kws={"fontsize": 7})
        if annotate:  # seaborn prints nothing on NaN cells: print their status there
            for i, r in enumerate(row_labels):
                for j, c in enumerate(column_labels):
                    if np.isnan(grid.loc[r, c]):
                        ax.text(j + 0.5, i + 0.5, text.loc[r, c], ha="center", va="center", fontsize=7,
                                color="0.35", fontstyle="italic")
        ax.grid(False)
        ax.patch.set_hatch("////")  # shows through the cells seaborn leaves empty (NaN)
        ax.patch.set_edgecolor("0.8")
        ax.set_xlabel(axis_label(columns))
        ax.set_ylabel(axis_name(rows))
        ax.set_title(title)
        ax.tick_params(axis="y", rotation=0)
        ax.tick_params(axis="x", rotation=0)
    fig.colorbar(axs[0].collections[0], ax=axs, label=m.title)
    return fig

"""Figures of a study, sized for a two-column paper: 3.3 in (one column) or 6.9 in (both) wide, no text under 7 pt.

Each function returns a matplotlib Figure, or raises PlotSkipped saying why when what it plots does not vary or
has no data yet. Axes that the figure does not encode but that vary in the study get one panel per value
combination, so that no two cells are ever averaged together. Every mean drawn carries its 95% Student t interval
over seeds (error bars or a band); colours come from `palette` (fixed per mixer). matplotlib and seaborn are
imported inside the functions: building only the tables never pays for them.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .load import ACTIVE, NA
from .metrics import axis_label, axis_name, metric
from .palette import palette
from .pareto import pareto_mask
from .stats import t_quantile
from .tables import NOT_IN_GRID, format_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

SINGLE, DOUBLE = 3.3, 6.9   # inches: one column and the full width of a two-column paper
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
HEATMAP_CHAR = 0.06         # inches per character of 7 pt text, to size heatmap cells that print their values
CURVE_STATUSES = ("done", *ACTIVE)
SPLITS = {"train": "Train", "val": "Validation", "test": "Test"}
# TrueType (Type 42) fonts in PDF and PostScript, as publishers ask; set while drawing *and* while saving
FONT_RC = {"pdf.fonttype": 42, "ps.fonttype": 42}


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
              "lines.linewidth": 1.2, **FONT_RC}
        with mpl.rc_context(rc):
            return plot(*args, **kwargs)
    return styled


def _order(values: Sequence[Any]) -> list[Any]:
    """Distinct values in order of appearance, numbers sorted; missing values (None, NaN) once, then n/a, last."""
    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and v != v)
    distinct = list(dict.fromkeys(v for v in values if not missing(v) and v is not NA))
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in distinct)
    return ((sorted(distinct) if numeric else distinct) + [v for v in values if missing(v)][:1]
            + ([NA] if any(v is NA for v in values) else []))


def _half_ci(std: pd.Series | np.ndarray, n: pd.Series | np.ndarray) -> np.ndarray:
    """Half-widths of 95% Student t intervals of means; 0 where fewer than two values give no interval."""
    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    t = np.array([t_quantile(0.975, int(k) - 1) if k >= 2 else np.nan for k in n])
    half = t * std / np.sqrt(np.maximum(n, 1))
    return np.where(np.isfinite(half), half, 0.0)


def _colours(labels: Sequence[str], hue: str | None) -> dict[str, str]:
    return palette(labels, hue) if hue else {label: palette(["all"], None)["all"] for label in labels}


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
    """The metric against inference throughput (log x), one point per cell (means over seeds, with 95% interval
    bars on both), colour by `hue`, marker by `style`, with the Pareto front of the plotted points as a dashed
    staircase."""
    import seaborn as sns
    m = metric(metric_key)
    data = cells[np.isfinite(cells["infer_img_s_mean"]) & np.isfinite(cells[f"{m.key}_mean"])]
    if data.empty:
        raise PlotSkipped("no cell has both a finished run's accuracy and its inference throughput yet")
    x, y = data["infer_img_s_mean"].to_numpy(), data[f"{m.key}_mean"].to_numpy() / m.scale
    fig, (ax,) = _grid(1, 1.9)
    hues = _hue_labels(data, hue, hue_order)
    colours = _colours(hues, hue)
    labels = np.array([format_value(v) for v in data[hue]] if hue else ["all"] * len(data))
    xerr = _half_ci(data["infer_img_s_std"], data["infer_img_s_n"])
    yerr = _half_ci(data[f"{m.key}_std"], data[f"{m.key}_n"]) / m.scale
    for label in dict.fromkeys(labels):
        mine = labels == label
        ax.errorbar(x[mine], y[mine], xerr=xerr[mine], yerr=yerr[mine], fmt="none", ecolor=colours[label],
                    elinewidth=0.7, capsize=1.5, zorder=2)

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
    sns.scatterplot(data=frame, x="x", y="y", hue=hue_name, hue_order=hues if hue else None,
                    palette=colours if hue else None, color=None if hue else colours["all"], style=style_name,
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
    """The metric's mean against the values of axis `x`, a line per `hue` value, 95% interval bars over seeds.

    Cells whose model ignores `x` (n/a, e.g. attention on a kernel-size axis) are left out: they have no line."""
    if x is None or x not in cells or cells[x].nunique(dropna=False) < 2:
        raise PlotSkipped(f"{x or 'the x axis'} does not vary")
    m = metric(metric_key)
    cells = cells[[v is not NA for v in cells[x]]]
    if cells[x].nunique(dropna=False) < 2:
        raise PlotSkipped(f"no cell whose model uses {x} has two values of it")
    if not (cells[f"{m.key}_n"] > 0).any():
        raise PlotSkipped("no run has finished yet")
    xs = _order(cells[x].tolist())
    position = {format_value(v): i for i, v in enumerate(xs)}
    hues = [h for h in _hue_labels(cells, hue, hue_order)
            if not hue or h in {format_value(v) for v in cells[hue]}]
    colours = _colours(hues, hue)
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
                        yerr=_half_ci(line[f"{m.key}_std"], line[f"{m.key}_n"]) / m.scale, color=colours[label],
                        marker="o", ms=3.5,
                        capsize=2, elinewidth=0.8, label=label)
        ax.set_xticks(range(len(xs)), [format_value(v) for v in xs])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_xlabel(axis_label(x))
        ax.set_title(title)
    axs[0].set_ylabel(m.title)
    _legend(fig, axs, axis_name(hue) if hue else None)
    return fig


def curve_quantity(metric_key: str) -> str:
    """What the learning curves plot for a study's metric: "top1", "top5" or "loss" (top-1 for non-accuracies)."""
    for quantity in ("top5", "loss", "top1"):
        if f"_{quantity}" in metric_key:
            return quantity
    return "top1"


@_paper
def training_curves(curves: pd.DataFrame, metric_key: str, hue: str | None, axes: Sequence[str],
                    hue_order: Sequence[Any] | None = None) -> Figure:
    """Per-epoch train, validation and test curves of the metric's quantity (top-1, top-5 or loss) for every
    cell: the mean over its seeds with a 95% interval band where two or more have the epoch, a line per `hue`
    value, a column per split that has the quantity, a row per combination of the other axes.

    Runs still going are included; failed and diverged ones are left out, as they are from the tables' means.
    """
    quantity = curve_quantity(metric_key)
    splits = [s for s in SPLITS if f"{s}_{quantity}" in curves and curves[f"{s}_{quantity}"].notna().any()]
    data = curves[curves["status"].isin(CURVE_STATUSES)]
    if not splits or data[[f"{s}_{quantity}" for s in splits]].isna().all().all():
        raise PlotSkipped("no run has finished an epoch yet")
    m = metric(f"test_{quantity}")
    hues = _hue_labels(data, hue, hue_order)
    colours = _colours(hues, hue)
    panels = _panels(data, [a for a in axes if a != hue])
    fig, axs = _grid(len(panels) * len(splits), 1.5, per_row=len(splits), width=DOUBLE if len(splits) > 1 else None)
    for k, (title, group) in enumerate(panels):
        labels = np.array([format_value(v) for v in group[hue]] if hue else ["all"] * len(group))
        for j, split in enumerate(splits):
            ax, key = axs[k * len(splits) + j], f"{split}_{quantity}"
            for label in hues:
                per_epoch = group[labels == label].dropna(subset=[key]).groupby("epoch")[key]
                if not per_epoch.ngroups:
                    continue
                mean, half = per_epoch.mean(), _half_ci(per_epoch.std(), per_epoch.count())
                epochs = mean.index.to_numpy() + 1  # epochs are 0-based in metrics.jsonl; plot epochs completed
                ax.plot(epochs, mean / m.scale, color=colours[label], label=label)
                ax.fill_between(epochs, (mean - half) / m.scale, (mean + half) / m.scale, color=colours[label],
                                alpha=0.2, lw=0)
            ax.set_title(" · ".join(t for t in (title, SPLITS[split]) if t))
            ax.xaxis.get_major_locator().set_params(integer=True)
            if k == len(panels) - 1:
                ax.set_xlabel("Epoch")
        axs[k * len(splits)].set_ylabel(m.title.removeprefix("Test ").capitalize() if quantity == "loss"
                                        else m.title)
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


@_paper
def receptive_fields(erf: Sequence[dict[str, Any]], axes: Sequence[str]) -> Figure:
    """Effective receptive fields of one mixer's cells: at initialisation (left) and trained (right), a row per
    combination of the other axes, each map the mean over seeds divided by its maximum."""
    if not erf:
        raise PlotSkipped("no finished run has an erf.npz")
    frame = pd.DataFrame([{a: e[a] for a in axes} | {"_i": i} for i, e in enumerate(erf)])
    panels = _panels(frame, axes)
    fig, axs = _grid(2 * len(panels), 1.25, per_row=2, width=SINGLE)
    image = None
    for k, (title, group) in enumerate(panels):
        maps = [erf[i] for i in group["_i"]]
        for j, stage in enumerate(("init", "trained")):
            ax = axs[2 * k + j]
            field = np.mean([e[stage] for e in maps], axis=0)
            image = ax.imshow(field / field.max() if field.max() > 0 else field, cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if k == 0:
                ax.set_title({"init": "Initialisation", "trained": "Trained"}[stage])
        label = "\n".join([*title.split(", "), f"n={sum(e['n'] for e in maps)} seeds"]) if title else \
            f"n={sum(e['n'] for e in maps)} seeds"
        axs[2 * k].set_ylabel(label)
    fig.colorbar(image, ax=axs, label="Gradient magnitude\n(relative to max)", shrink=0.8)
    return fig

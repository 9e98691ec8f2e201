"""analysis/: a study's result files -> summary.csv, seed statistics, tables, figures and report.md.

Every expected number is computed here from the run files read back with plain `json`, independently of
analysis/'s code paths (and of the simulation that wrote them).
"""
from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from analysis_fixtures import write_study
from conftest import skip_unless_required
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.text import Text

from analysis import build_report, load_study, palette, plots, read_curves, read_runs
from analysis.aggregate import aggregate
from analysis.cli import main
from analysis.metrics import METRICS
from analysis.pareto import pareto_mask
from analysis.stats import t_quantile

MIXERS, PATCHES, SEEDS = ("dwconv", "attention", "identity"), (1, 2, 4), (0, 1, 2)
OUTCOMES = {
    ("attention", 1, 0): "failed", ("attention", 1, 1): "diverged", ("attention", 1, 2): "crashed",
    ("identity", 4, 0): "running", ("identity", 4, 1): "queued", ("identity", 4, 2): "missing",
    ("dwconv", 2, 1): "unreadable", ("attention", 4, 2): "failed",
}
EXPECTED_STATUS = {"crashed": "failed"}  # no result.json, state.json says failed
PATHS = {"test_top1": ("metrics", "test_top1"), "infer_img_s": ("throughput", "infer_img_s"),
         "params": ("model", "params"), "flops": ("model", "flops")}


# --- reading the files back, independently of analysis/ ---

def study_cells(study_dir: Path) -> list[dict[str, Any]]:
    return yaml.safe_load((study_dir / "study.yaml").read_text())["cells"]


def result_of(study_dir: Path, run_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((study_dir / "runs" / run_id / "result.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def done_values(study_dir: Path, key: str, axes: tuple[str, ...] = ("model.mixer", "model.patch_size")
                ) -> dict[tuple, list[float]]:
    """cell -> the metric of each of its runs whose result.json says done (cells without one map to [])."""
    values: dict[tuple, list[float]] = {}
    for cell in study_cells(study_dir):
        key_ = tuple(cell["params"][a] for a in axes)
        values.setdefault(key_, [])
        result = result_of(study_dir, cell["run_id"])
        if result and result["status"] == "done":
            section, field = PATHS[key]
            values[key_].append(float(result[section][field]))
    return values


def ci95(values: list[float]) -> tuple[float, float]:
    scipy_stats = pytest.importorskip("scipy.stats")
    mean = statistics.fmean(values)
    half = scipy_stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def brute_force_front(points: dict[tuple, tuple[float, float]]) -> set[tuple]:
    """Cells no other cell matches or beats on both coordinates while beating on one."""
    return {k for k, (x, y) in points.items()
            if not any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for k2, (x2, y2) in points.items() if k2 != k)}


def md_table(path: Path) -> dict[tuple[str, str], str]:
    """(row label, column header) -> cell text of a two-axis Markdown table."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    header, body = split[0], split[2:]
    return {(row[0], header[j]): row[j] for row in body for j in range(1, len(header))}


def texts_overlapping(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of `fig` whose rendered boxes intersect."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    # tick labels outside their axis' view limits exist as Text objects but are never drawn
    undrawn = {id(label) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for tick in axis.get_major_ticks()
               if not min(axis.get_view_interval()) <= tick.get_loc() <= max(axis.get_view_interval())
               for label in (tick.label1, tick.label2)}
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in undrawn]
    boxes = [(t.get_text(), t.get_window_extent(renderer).shrunk(0.98, 0.98)) for t in texts]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def inspect_cells(study_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    study = load_study(study_dir)
    runs = read_runs(study)
    curves, _ = read_curves(study, runs)
    return aggregate(runs, study.axes, list(METRICS)), curves


# --- fixtures ---

@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("results"), mixers=MIXERS, patch_sizes=PATCHES, seeds=SEEDS,
                       outcomes=OUTCOMES)


@pytest.fixture(scope="module")
def built(study_dir: Path):
    return build_report(study_dir, echo=None)


@pytest.fixture(scope="module")
def kernel_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("kernel"), "mixer_kernel", mixers=("dwconv", "pool"),
                       patch_sizes=(2, 4), kernel_sizes=(3, 5, 7), seeds=(0, 1))


# --- the tidy table ---

def test_summary_has_a_row_per_planned_run_with_axes_then_seed_then_config_then_metrics(study_dir, built):
    summary = pd.read_csv(built.summary_csv)
    cells = study_cells(study_dir)
    assert list(summary["run_id"]) == [c["run_id"] for c in cells]
    assert list(summary.columns[:3]) == ["model.mixer", "model.patch_size", "seed"]
    columns = list(summary.columns)
    assert columns.index("recipe.lr") < columns.index("status") < columns.index("test_top1")
    assert {"params", "flops", "infer_img_s", "train_img_s", "peak_mem_bytes", "wall_s"} <= set(columns)
    for cell, row in zip(cells, summary.to_dict("records")):
        p = cell["params"]
        outcome = OUTCOMES.get((p["model.mixer"], p["model.patch_size"], p["seed"]), "done")
        assert row["status"] == EXPECTED_STATUS.get(outcome, outcome)
        result = result_of(study_dir, cell["run_id"])
        if outcome == "done":
            assert row["test_top1"] == result["metrics"]["test_top1"]
            assert row["infer_img_s"] == result["throughput"]["infer_img_s"]
            assert row["params"] == result["model"]["params"]
        elif outcome in ("failed", "diverged"):
            assert row["reason"] == result["reason"]
        elif outcome == "crashed":
            state = json.loads((study_dir / "runs" / cell["run_id"] / "state.json").read_text())
            assert row["reason"] == state["error"]
        elif outcome == "unreadable":
            assert row["reason"].startswith("result.json: JSONDecodeError")
        else:
            assert math.isnan(row["test_top1"])


def test_parquet_matches_the_csv_where_pyarrow_is_installed(built):
    if built.summary_parquet is None:
        pytest.importorskip("pyarrow")  # skips: no pyarrow, and build_report rightly wrote no Parquet
    parquet = pd.read_parquet(built.summary_parquet)
    csv = pd.read_csv(built.summary_csv)
    assert list(parquet.columns) == list(csv.columns)
    assert parquet["run_id"].tolist() == csv["run_id"].tolist()
    np.testing.assert_allclose(parquet["test_top1"].to_numpy(float), csv["test_top1"].to_numpy(float))


# --- statistics over seeds ---

@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 30, 120])
def test_t_quantile_matches_scipy(df):
    scipy_stats = pytest.importorskip("scipy.stats")
    for p in (0.9, 0.975, 0.995):
        assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-10)


@pytest.mark.parametrize("key", ["test_top1", "infer_img_s", "params"])
def test_cell_statistics_match_the_result_files(study_dir, built, key):
    cells = pd.read_csv(built.cells_csv).set_index(["model.mixer", "model.patch_size"])
    for cell, values in done_values(study_dir, key).items():
        row = cells.loc[cell]
        assert row[f"{key}_n"] == len(values)
        assert row["n_runs"] == len(SEEDS)
        if not values:
            assert math.isnan(row[f"{key}_mean"])
            continue
        assert row[f"{key}_mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        if len(values) >= 2:
            assert row[f"{key}_std"] == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-9)
            lo, hi = ci95(values)
            assert (row[f"{key}_ci95_lo"], row[f"{key}_ci95_hi"]) == (pytest.approx(lo), pytest.approx(hi))
        else:
            assert math.isnan(row[f"{key}_std"]) and math.isnan(row[f"{key}_ci95_lo"])


def test_cells_without_a_finished_run_keep_their_row_and_say_why(built):
    cells = pd.read_csv(built.cells_csv).set_index(["model.mixer", "model.patch_size"])
    assert len(cells) == len(MIXERS) * len(PATCHES)
    failed = cells.loc[("attention", 1)]
    assert (failed["status"], failed["n_done"], failed["n_failed"], failed["n_diverged"]) == ("failed", 0, 2, 1)
    going = cells.loc[("identity", 4)]
    assert (going["status"], going["n_running"], going["n_queued"], going["n_missing"]) == ("running", 1, 1, 1)
    partial = cells.loc[("dwconv", 2)]
    assert (partial["n_done"], partial["n_unreadable"], partial["status_detail"]) == (2, 1, "2/3 done, 1 unreadable")


# --- tables ---

def test_markdown_table_shows_mean_std_n_bold_best_and_statuses(study_dir, built):
    table = md_table(built.study_dir / "tables" / "test_top1.md")
    values = done_values(study_dir, "test_top1")
    best = {p: max(round(statistics.fmean(v), 2) for (m, p2), v in values.items() if p2 == p and v) for p in PATCHES}
    for (mixer, patch), runs in values.items():
        text = table[(mixer, str(patch))]
        if not runs:
            assert text == {("attention", 1): "*failed*", ("identity", 4): "*running*"}[(mixer, patch)]
            continue
        mean = f"{statistics.fmean(runs):.2f}"
        core = f"{mean} ± {statistics.stdev(runs):.2f}" if len(runs) > 1 else mean
        core = f"**{core}**" if float(mean) == best[patch] else core
        assert text == core + (f" (n={len(runs)})" if len(runs) < len(SEEDS) else "")


def test_lower_is_better_metrics_bold_the_smallest_value(study_dir, built):
    table = md_table(built.study_dir / "tables" / "params.md")
    values = done_values(study_dir, "params")
    for patch in PATCHES:
        shown = {m: round(statistics.fmean(v) / 1e6, 2) for (m, p), v in values.items() if p == patch and v}
        bold = {m for m in shown if table[(m, str(patch))].startswith("**")}
        assert bold == {m for m, v in shown.items() if v == min(shown.values())}


@pytest.mark.parametrize(("raw", "unit", "shown"), [([5.9e5, 2.6e6], "M", "0.59"), ([1234.0, 800.0], "K", "1.23"),
                                                    ([12.0], "", "12.00")])
def test_counts_are_shown_in_a_prefix_that_keeps_small_models_readable(raw, unit, shown):
    params = METRICS["params"].fitted(raw)
    assert (params.unit, params.format(raw[0])) == (unit, shown)


def test_pivot_axes_come_from_the_study_file_and_can_be_overridden(tmp_path):
    report = {"table": {"rows": "model.patch_size", "columns": "model.mixer", "metric": "test_top5"}}
    study = write_study(tmp_path, mixers=("dwconv", "pool"), patch_sizes=(2, 4), seeds=(0, 1), report=report)
    build_report(study, figures=False, echo=None)
    assert (study / "tables" / "test_top5.md").exists()
    header = (study / "tables" / "test_top5.md").read_text().splitlines()[2]
    assert header == "| Patch size \\ Mixer | dwconv | pool |"
    assert main([str(study), "--no-figures", "-q", "--rows", "model.mixer", "--columns", "model.patch_size"]) == 0
    assert (study / "tables" / "test_top5.md").read_text().splitlines()[2] == "| Mixer \\ Patch size | 2 | 4 |"


def test_latex_tables_mark_the_same_best_values(built):
    tex = (built.study_dir / "tables" / "test_top1.tex").read_text()
    md = (built.study_dir / "tables" / "test_top1.md").read_text()
    assert re.findall(r"\\textbf\{([\d.]+) ", tex) == re.findall(r"\*\*([\d.]+) ", md)
    assert r"\emph{failed}" in tex and r"\toprule" in tex and r"$_{n=2}$" in tex


@pytest.mark.parametrize("study", ["study_dir", "kernel_study"])
def test_every_latex_table_compiles_and_fits_a_two_column_paper(study, request, tmp_path):
    if shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None or subprocess.run(
            ["kpsewhich", "booktabs.sty"], capture_output=True).returncode != 0:
        skip_unless_required("pdflatex with booktabs is not installed (Debian: apt-get install texlive-latex-base "
                             "texlive-latex-recommended)", "TOKENMIX_REQUIRE_LATEX")
    copy = shutil.copytree(request.getfixturevalue(study), tmp_path / "study")  # leave the shared build alone
    paths = build_report(copy, figures=False, echo=None)
    tables = sorted(p for p in paths.tables if p.suffix == ".tex")
    inputs = "\n".join(rf"\input{{{p.as_posix()}}}\clearpage" for p in tables)
    (tmp_path / "doc.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n"
                                      f"\\begin{{document}}\n{inputs}\n\\end{{document}}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"Output written on doc.pdf ({len(tables)} pages" in done.stdout.replace("\n", "")
    assert "Overfull \\hbox" not in done.stdout  # each table fits its column, or both columns as table*


# --- Pareto front ---

def test_pareto_mask_handles_ties_and_missing_values():
    x = np.array([1.0, 2.0, 2.0, 3.0, np.nan, 0.5])
    y = np.array([3.0, 2.0, 2.0, 1.0, 9.0, 3.0])
    assert pareto_mask(x, y).tolist() == [True, True, True, True, False, False]


def test_pareto_front_in_cells_csv_and_report_matches_a_brute_force_one(study_dir, built):
    accuracy, speed = done_values(study_dir, "test_top1"), done_values(study_dir, "infer_img_s")
    points = {k: (statistics.fmean(speed[k]), statistics.fmean(v)) for k, v in accuracy.items() if v}
    front = brute_force_front(points)
    assert 0 < len(front) < len(points)
    cells = pd.read_csv(built.cells_csv)
    assert {(m, p) for m, p, f in zip(cells["model.mixer"], cells["model.patch_size"], cells["pareto"]) if f} == front
    section = built.report_md.read_text().split("### Pareto front")[1].split("##")[0]
    assert len(re.findall(r"^- Mixer", section, flags=re.M)) == len(front)


# --- figures ---

def test_throughput_scatter_has_a_point_per_finished_cell_and_draws_the_front(study_dir):
    cells, _ = inspect_cells(study_dir)
    fig = plots.throughput_scatter(cells, "test_top1", "model.mixer", "model.patch_size")
    ax = fig.axes[0]
    offsets = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    accuracy, speed = done_values(study_dir, "test_top1"), done_values(study_dir, "infer_img_s")
    points = {k: (statistics.fmean(speed[k]), statistics.fmean(v)) for k, v in accuracy.items() if v}
    assert len(offsets) == len(points)
    np.testing.assert_allclose(sorted(map(tuple, offsets)), sorted(points.values()))
    (front_line,) = [line for line in ax.get_lines() if line.get_label() == "Pareto front"]
    front = sorted(points[k] for k in brute_force_front(points))
    np.testing.assert_allclose(np.column_stack(front_line.get_data()), front)
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"Pareto front", "Mixer", *MIXERS, "Patch size", "1", "2", "4"} <= set(labels)


def test_metric_against_patch_size_has_a_line_per_mixer_with_95_percent_interval_bars(study_dir):
    cells, _ = inspect_cells(study_dir)
    fig = plots.metric_vs_axis(cells, "test_top1", "model.patch_size", "model.mixer",
                               ["model.mixer", "model.patch_size"])
    (ax,) = fig.axes
    values = done_values(study_dir, "test_top1")
    lines = {c.get_label(): c for c in ax.containers}
    assert set(lines) == set(MIXERS)
    for mixer, container in lines.items():
        finished = [(PATCHES.index(p), v) for (m, p), v in values.items() if m == mixer and v]
        data_line = container.lines[0]
        np.testing.assert_allclose(np.round(data_line.get_xdata(orig=False)), [i for i, _ in finished])
        np.testing.assert_allclose(data_line.get_ydata(orig=False), [statistics.fmean(v) for _, v in finished])
        segments = container.lines[2][0].get_segments()
        half = [abs(s[1][1] - s[0][1]) / 2 for s in segments]
        np.testing.assert_allclose(half, [np.diff(ci95(v))[0] / 2 if len(v) > 1 else 0 for _, v in finished])
        assert data_line.get_color() == palette.MIXER_COLOURS[mixer]


def test_training_curves_show_train_validation_and_test_means_with_95_percent_bands(study_dir):
    cells, curves = inspect_cells(study_dir)
    fig = plots.training_curves(curves, "test_top1", "model.mixer", ["model.mixer", "model.patch_size"])
    splits = {"train": "Train", "val": "Validation", "test": "Test"}
    panels = [(patch, split) for patch in PATCHES for split in splits]
    assert [ax.get_title() for ax in fig.axes[:len(panels)]] == [f"Patch size {p} · {splits[s]}" for p, s in panels]
    for ax, (patch, split) in zip(fig.axes, panels):
        drawn = {line.get_label(): line for line in ax.get_lines()}
        bands = {line.get_label(): band for line, band in zip(ax.get_lines(), ax.collections)}
        expected: dict[str, dict[int, list[float]]] = {}
        for cell in study_cells(study_dir):
            p = cell["params"]
            outcome = OUTCOMES.get((p["model.mixer"], p["model.patch_size"], p["seed"]), "done")
            # failed and diverged runs are left out, and so is the unreadable one (its state says done, but no
            # result of it can be trusted)
            if p["model.patch_size"] != patch or outcome not in ("done", "running"):
                continue
            lines = (study_dir / "runs" / cell["run_id"] / "metrics.jsonl").read_text().split("\n")
            records = [json.loads(line) for line in lines if line.endswith("}")]
            for r in records:
                expected.setdefault(p["model.mixer"], {}).setdefault(r["epoch"] + 1, []).append(r[f"{split}_top1"])
        assert set(drawn) == set(expected)
        for mixer, per_epoch in expected.items():
            x, y = drawn[mixer].get_data()
            assert list(x) == sorted(per_epoch)
            np.testing.assert_allclose(y, [statistics.fmean(per_epoch[e]) for e in sorted(per_epoch)])
            assert drawn[mixer].get_color() == palette.MIXER_COLOURS[mixer]
            top = bands[mixer].get_paths()[0].vertices
            for epoch, values in per_epoch.items():
                if len(values) >= 2:
                    assert top[top[:, 0] == epoch, 1].max() == pytest.approx(ci95(values)[1])


def test_heatmap_prints_the_table_values_and_the_status_of_empty_cells(study_dir, built):
    cells, _ = inspect_cells(study_dir)
    fig = plots.heatmap(cells, "test_top1", "model.mixer", "model.patch_size", ["model.mixer", "model.patch_size"])
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    table = md_table(built.study_dir / "tables" / "test_top1.md")
    expected = sorted(re.sub(r"[*]|( ± .*)|( \(n=\d\))", "", v) for v in table.values())
    assert texts == expected
    assert len(ax.collections[0].get_array().compressed()) == sum(1 for v in expected if v[0].isdigit())


def test_kernel_size_plot_when_it_varies_with_a_panel_per_other_axis_value(kernel_study):
    paths = build_report(kernel_study, echo=None)
    assert "test_top1_vs_kernel_size" not in paths.skipped_figures
    assert (kernel_study / "figures" / "test_top1_vs_kernel_size.pdf").exists()
    cells, _ = inspect_cells(kernel_study)
    axes = ["model.mixer", "model.patch_size", "model.kernel_size"]
    fig = plots.metric_vs_axis(cells, "test_top1", "model.kernel_size", "model.mixer", axes)
    assert [ax.get_title() for ax in fig.axes] == ["Patch size 2", "Patch size 4"]
    assert all(len(c.lines[0].get_xdata()) == 3 for ax in fig.axes for c in ax.containers)
    fig = plots.heatmap(cells, "test_top1", "model.mixer", "model.patch_size", axes)
    assert [ax.get_title() for ax in fig.axes[:3]] == [f"Kernel size {k}" for k in (3, 5, 7)]


def test_a_plot_whose_axis_does_not_vary_is_skipped_and_reported(built):
    assert built.skipped_figures == {"test_top1_vs_kernel_size": "model.kernel_size does not vary"}
    assert "Skipped `test_top1_vs_kernel_size`: model.kernel_size does not vary." in built.report_md.read_text()
    written = {p.name for p in built.figures}
    assert written == {f"{n}.{ext}" for n in ("throughput_pareto", "test_top1_vs_patch_size", "training_curves",
                                               "heatmap") for ext in ("png", "pdf")}


@pytest.mark.parametrize("name", ["scatter", "lines", "curves", "heatmap", "kernel_lines", "kernel_heatmap"])
def test_figures_are_legible_in_a_two_column_paper(study_dir, kernel_study, name):
    cells, curves = inspect_cells(study_dir)
    k_cells, _ = inspect_cells(kernel_study)
    axes = ["model.mixer", "model.patch_size"]
    fig = {
        "scatter": lambda: plots.throughput_scatter(cells, "test_top1", "model.mixer", "model.patch_size"),
        "lines": lambda: plots.metric_vs_axis(cells, "test_top1", "model.patch_size", "model.mixer", axes),
        "curves": lambda: plots.training_curves(curves, "test_top1", "model.mixer", axes),
        "heatmap": lambda: plots.heatmap(cells, "test_top1", "model.mixer", "model.patch_size", axes),
        "kernel_lines": lambda: plots.metric_vs_axis(k_cells, "test_top1", "model.kernel_size", "model.mixer",
                                                     [*axes, "model.kernel_size"]),
        "kernel_heatmap": lambda: plots.heatmap(k_cells, "test_top1", "model.mixer", "model.patch_size",
                                                [*axes, "model.kernel_size"]),
    }[name]()
    width = fig.get_figwidth()
    assert 3.3 - 0.15 <= width <= 6.9  # one column of a two-column paper, up to both (at 100%: fonts stay 7 pt)
    assert texts_overlapping(fig) == []
    assert min(t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()) >= 7
    ax = fig.axes[0]
    assert re.search(r"\(.+\)", ax.get_ylabel()) or name.endswith("heatmap")  # the heatmap's unit: its colour bar
    if name.endswith("heatmap"):
        assert fig.axes[-1].get_ylabel() == "Top-1 accuracy (%)"
    else:
        assert any(a.get_xlabel() for a in fig.axes) and fig.legends


# --- the report and the command ---

def test_report_says_what_was_run_and_lists_every_unfinished_run_with_its_reason(study_dir, built):
    report = built.report_md.read_text()
    assert "- Mixer (`model.mixer`): dwconv, attention, identity" in report
    assert "lr=0.05" in report and "epochs=6" in report and "NVIDIA H200" in report
    assert "19 of 27 runs done" in report
    unfinished = report.split("## Runs not finished")[1]
    summary = pd.read_csv(built.summary_csv)
    for row in summary[summary["status"] != "done"].to_dict("records"):
        line = next(line for line in unfinished.splitlines() if row["run_id"] in line)
        assert f"| {row['status']} |" in line
        if row["status"] == "running":
            assert f"| {int(row['last_epoch']) + 1}/6 |" in line
        if isinstance(row["reason"], str):  # a traceback shows as its last line, Markdown characters escaped
            assert row["reason"].strip().splitlines()[-1][:60] in line.replace("\\", "")
            assert "Traceback" not in line
    for path in built.figures:
        if path.suffix == ".png":
            assert f"](figures/{path.name})" in report


def test_tables_only_build_is_fast_to_start_and_never_imports_matplotlib(study_dir, tmp_path):
    copy = shutil.copytree(study_dir, tmp_path / "copy")
    code = ("import sys; from analysis.cli import main; rc = main([sys.argv[1], '--no-figures', '-q']); "
            "print(rc, 'matplotlib' in sys.modules, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "False", "False"]
    assert (copy / "tables" / "test_top1.tex").exists() and (copy / "report.md").exists()
    assert "Not built this time (`report.figures: false` or `--no-figures`)" in (copy / "report.md").read_text()


def test_a_study_without_figures_builds_none_until_asked(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv", "identity"), patch_sizes=(1,), seeds=(0, 1),
                        report={"figures": False})
    tables_only = build_report(study, echo=None)
    assert tables_only.figures == [] and not (study / "figures").exists() and tables_only.tables
    assert "Not built this time" in tables_only.report_md.read_text()
    assert main([str(study), "--figures", "-q"]) == 0  # the flag outranks the study's setting
    drawn = sorted(p.name for p in (study / "figures").glob("*.png"))
    assert drawn and all(f"](figures/{name})" in (study / "report.md").read_text() for name in drawn)


def test_rebuilding_as_the_study_progresses_picks_up_new_results(tmp_path):
    outcomes = {("dwconv", 2, 1): "running"}
    study = write_study(tmp_path, mixers=("dwconv",), patch_sizes=(2, 4), seeds=(0, 1), outcomes=outcomes)
    first = build_report(study, figures=False, echo=None)
    assert pd.read_csv(first.cells_csv)["test_top1_n"].tolist() == [1, 2]
    write_study(tmp_path, mixers=("dwconv",), patch_sizes=(2, 4), seeds=(0, 1))  # the running run finished
    second = build_report(study, figures=False, echo=None)
    assert pd.read_csv(second.cells_csv)["test_top1_n"].tolist() == [2, 2]
    assert "None: every planned run is done." in second.report_md.read_text()


def test_a_resubmitted_run_reports_its_new_state_over_its_old_failed_result(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv",), patch_sizes=(2,), seeds=(0,),
                        outcomes={("dwconv", 2, 0): "failed"})
    state_file = study / "runs" / study_cells(study)[0]["run_id"] / "state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "status": "queued", "attempts": 2}))
    (row,) = read_runs(load_study(study)).to_dict("records")
    assert (row["status"], row["attempts"]) == ("queued", 2)
    assert row["reason"].startswith("requeued after failed: Traceback")


def test_broken_metrics_lines_and_stray_run_folders_are_reported(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv",), patch_sizes=(2,), seeds=(0, 1))
    run_id = study_cells(study)[0]["run_id"]
    metrics = study / "runs" / run_id / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    (study / "runs" / "0123456789ab").mkdir()
    paths = build_report(study, echo=None)
    report = paths.report_md.read_text()
    assert f"{run_id}: metrics.jsonl line 2 skipped" in report
    assert "Run folders not in the current grid (ignored): `0123456789ab`." in report


def test_command_fails_clearly_without_a_study_file_or_with_an_unknown_axis(study_dir, tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "study.yaml not found" in capsys.readouterr().err
    assert main([str(study_dir), "--no-figures", "--rows", "model.mixr"]) == 2
    assert capsys.readouterr().err == ("study-report: --rows: 'model.mixr' is not an axis of the study (did you mean "
                                       "'model.mixer'?); the study's axes: model.mixer, model.patch_size\n")


def test_axis_values_with_a_missing_value_are_ordered_once():
    from analysis.plots import _order
    assert _order([None, 10, float("nan"), 2, 10, None]) == [2, 10, None]

"""analysis/ on results a reviewer would accept: comparisons with a control (Welch, Holm), ties with the best,
selection on validation only, findings, precision from the test-set size, n/a cells, stale runs, matched sizes,
the ledger's states, and figures (fonts, colours, receptive fields).

Expected values are computed here from the run files read back with plain `json` and scipy, independently of
analysis/'s code paths.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from analysis_fixtures import OLD_SOURCE, write_study
from scipy import stats

from analysis import build_report, check_report, load_study, plots, read_erf, read_runs
from analysis.cli import main
from analysis.metrics import METRICS
from analysis.palette import MIXER_COLOURS
from analysis.spec import SpecError

CONTROL = {"model.mixer": "dwconv"}


def cells_of(study_dir: Path) -> list[dict[str, Any]]:
    return yaml.safe_load((study_dir / "study.yaml").read_text())["cells"]


def finished(study_dir: Path, key: str = "test_top1", axes: tuple[str, ...] = ("model.mixer", "model.patch_size"),
             section: str = "metrics") -> dict[tuple, list[float]]:
    """cell -> the metric of each run whose result.json says done."""
    values: dict[tuple, list[float]] = {}
    for cell in cells_of(study_dir):
        key_ = tuple(cell["params"].get(a) for a in axes)
        values.setdefault(key_, [])
        path = study_dir / "runs" / cell["run_id"] / "result.json"
        try:
            result = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if result["status"] == "done":
            values[key_].append(float(result[section][key]))
    return values


def holm(p: dict[Any, float]) -> dict[Any, float]:
    """Holm's step-down adjustment, written out: the k-th smallest of m p-values times (m - k + 1), kept monotone."""
    ranked = sorted(p, key=p.get)
    adjusted, running = {}, 0.0
    for k, name in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - k) * p[name]))
        adjusted[name] = running
    return adjusted


def md_rows(path: Path) -> dict[tuple[str, str], str]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    header, body = split[0], split[2:]
    return {(row[0], header[j]): row[j] for row in body for j in range(1, len(header))}


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dwconv, pool (close to dwconv) and identity (far worse), 3 seeds, compared with dwconv."""
    study = write_study(tmp_path_factory.mktemp("compared"), "compared", mixers=("dwconv", "pool", "identity"),
                        patch_sizes=(1, 2, 4), quality={"pool": 93.9}, report={"control": CONTROL},
                        outcomes={("pool", 4, 2): "failed"})
    build_report(study, figures=False, echo=None)
    return study


# --- comparisons with the control ---

def test_differences_to_the_control_are_welch_tests_holm_adjusted_over_the_table(compared):
    values = finished(compared)
    cells = pd.read_csv(compared / "tables" / "cells.csv").set_index(["model.mixer", "model.patch_size"])
    p, expected = {}, {}
    for (mixer, patch), runs in values.items():
        if mixer == "dwconv":
            assert math.isnan(cells.loc[(mixer, patch), "p_value"])
            continue
        control = values[("dwconv", patch)]
        test = stats.ttest_ind(runs, control, equal_var=False)
        p[(mixer, patch)] = test.pvalue
        expected[(mixer, patch)] = (np.mean(runs) - np.mean(control), *test.confidence_interval(0.95))
    adjusted = holm(p)
    for cell, (delta, low, high) in expected.items():
        row = cells.loc[cell]
        assert row["delta_vs_control"] == pytest.approx(delta, abs=1e-9)
        assert (row["delta_ci_low"], row["delta_ci_high"]) == (pytest.approx(low), pytest.approx(high))
        assert row["p_value"] == pytest.approx(p[cell], rel=1e-6)
        assert row["p_holm"] == pytest.approx(adjusted[cell], rel=1e-6)
    summary = pd.read_csv(compared / "summary.csv")
    for run in summary.to_dict("records"):  # each run carries its cell's comparison
        cell = cells.loc[(run["model.mixer"], run["model.patch_size"])]
        for column in ("delta_vs_control", "delta_ci_low", "delta_ci_high", "p_value", "p_holm"):
            assert run[column] == pytest.approx(cell[column], nan_ok=True)


def test_tables_mark_significant_differences_and_entries_tied_with_the_best(compared):
    values = finished(compared)
    cells = pd.read_csv(compared / "tables" / "cells.csv").set_index(["model.mixer", "model.patch_size"])
    table = md_rows(compared / "tables" / "test_top1.md")
    best_p = {}
    for patch in (1, 2, 4):
        column = {m: v for (m, p), v in values.items() if p == patch}
        best = max(column, key=lambda m: np.mean(column[m]))
        best_p.update({(m, patch): stats.ttest_ind(v, column[best], equal_var=False).pvalue
                       for m, v in column.items() if m != best})
    tied = {cell: p >= 0.05 for cell, p in holm(best_p).items()}
    assert any(tied.values())  # pool is close to dwconv: the table has something to mark
    for (mixer, patch), text in table.items():
        cell = (mixer, int(patch))
        bold = text.startswith("**")
        assert text.startswith("<u>") == (tied.get(cell, False) and not bold), text
        assert ("↓" in text) == (cells.loc[cell, "p_holm"] < 0.05 and cells.loc[cell, "delta_vs_control"] < 0)
        if mixer == "identity":
            assert "↓" in text  # identity is significantly worse than dwconv everywhere
    tex = (compared / "tables" / "test_top1.tex").read_text()
    assert tex.count(r"$\downarrow$") == sum("↓" in t for t in table.values())
    assert tex.count(r"\underline{") == sum(t.startswith("<u>") for t in table.values())
    significance = (compared / "tables" / "significance.md").read_text()
    assert "Holm" in significance and significance.count("| identity |") == 3


def test_with_fewer_than_three_seeds_the_report_says_what_the_spread_would_need(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv", "pool"), patch_sizes=(2,), seeds=(0, 1),
                        quality={"pool": 93.0}, report={"control": CONTROL})
    report = build_report(study, figures=False, echo=None).report_md.read_text()
    findings = report.split("## Findings")[1].split("\n## ")[0]
    assert "with fewer than 3 per cell no difference can be established" in findings
    values = finished(study)
    pool, dwconv = values[("pool", 2)], values[("dwconv", 2)]
    delta, spread = np.mean(pool) - np.mean(dwconv), (np.std(pool, ddof=1), np.std(dwconv, ddof=1))

    def power(n: int) -> float:  # Welch's test with n seeds a side, noncentral t
        var = np.square(spread)
        df = (n - 1) * var.sum() ** 2 / (var ** 2).sum()
        crit, ncp = stats.t.ppf(0.975, df), abs(delta) / math.sqrt(var.sum() / n)
        return stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)

    needed = int(re.search(r"Mixer pool: (\d+) \(difference", findings).group(1))
    assert power(needed) >= 0.8 and (needed == 2 or power(needed - 1) < 0.8)
    one = write_study(tmp_path / "one", mixers=("dwconv", "pool"), patch_sizes=(2,), seeds=(0,),
                      report={"control": CONTROL})
    text = build_report(one, figures=False, echo=None).report_md.read_text()
    assert "With one seed the spread is unknown" in text


# --- selection ---

def test_selection_uses_validation_only_and_names_the_chosen_setting(tmp_path):
    kw = dict(mixers=("dwconv", "attention"), patch_sizes=(2, 4), lrs=(0.01, 0.05, 0.1),
              select={"metric": "val_top1", "over": ["recipe.lr"]})
    study = write_study(tmp_path, **kw)
    build_report(study, figures=False, echo=None)
    axes = ("model.mixer", "model.patch_size", "recipe.lr")
    val = finished(study, "val_top1", axes)
    chosen = {}
    for (mixer, patch, lr), runs in val.items():
        best = chosen.get((mixer, patch))
        if best is None or np.mean(runs) > np.mean(val[(mixer, patch, best)]):
            chosen[(mixer, patch)] = lr
    cells = pd.read_csv(study / "tables" / "cells.csv")
    picked = {(m, p): lr for m, p, lr, s in cells[[*axes, "selected"]].itertuples(index=False) if s}
    assert picked == chosen
    assert len(set(chosen.values())) > 1  # the mixers prefer different rates: the choice is per combination
    selection = (study / "tables" / "selection.md").read_text()
    for (mixer, patch), lr in chosen.items():
        assert re.search(rf"\| {mixer} \| {patch} \| {lr:g} \|", selection)
    pivot = md_rows(study / "tables" / "test_top1.md")
    test = finished(study, "test_top1", axes)
    for (mixer, patch), lr in chosen.items():  # the tables report the chosen setting's test accuracy
        assert pivot[(mixer, str(patch))].split(" ±")[0].strip("*") == f"{np.mean(test[(mixer, patch, lr)]):.2f}"


def test_changing_every_test_number_changes_no_selection(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv", "attention"), patch_sizes=(2, 4), lrs=(0.01, 0.05, 0.1),
                        select={"metric": "val_top1", "over": ["recipe.lr"]})
    first = build_report(study, figures=False, echo=None)
    before = pd.read_csv(first.cells_csv)
    table_before = (study / "tables" / "test_top1.md").read_text()
    for path in (study / "runs").glob("*/result.json"):  # turn the test set upside down
        result = json.loads(path.read_text())
        for key in [k for k in result["metrics"] if k.startswith("test_")]:
            result["metrics"][key] = 100 - result["metrics"][key]
        path.write_text(json.dumps(result))
    for path in (study / "runs").glob("*/metrics.jsonl"):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "test_top1": 100 - r["test_top1"]}) + "\n" for r in records))
    after = pd.read_csv(build_report(study, figures=False, echo=None).cells_csv)
    assert (study / "tables" / "test_top1.md").read_text() != table_before  # the test numbers did change ...
    assert after["selected"].tolist() == before["selected"].tolist()  # ... and no choice did
    assert (after["test_top1_mean"] != before["test_top1_mean"]).all()


def test_without_validation_data_nothing_is_chosen_and_the_report_says_why(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv",), patch_sizes=(2,), lrs=(0.01, 0.05), validation=False,
                        select={"metric": "val_top1", "over": ["recipe.lr"]})
    build_report(study, figures=False, echo=None)
    assert md_rows(study / "tables" / "test_top1.md")[("dwconv", "2")] == "*no validation*"
    summary = pd.read_csv(study / "summary.csv")
    assert summary["val_top1"].isna().all() and (summary["val_size"] == 0).all()


# --- findings ---

def test_findings_order_the_levels_and_test_trends_from_the_run_files(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv", "attention", "identity"), patch_sizes=(1, 2, 4, 8))
    report = build_report(study, figures=False, echo=None).report_md.read_text()
    assert report.index("## Findings") < report.index("## What was run")
    findings = report.split("## Findings")[1].split("\n## ")[0]
    values = finished(study)
    means = {m: np.mean([np.mean(v) for (m2, _), v in values.items() if m2 == m]) for m in ("dwconv", "attention",
                                                                                          "identity")}
    order = sorted(means, key=means.get, reverse=True)
    line = next(line for line in findings.splitlines() if line.startswith("- **Mixer**"))
    assert re.findall(r"(?:\*\*: |\) )([a-z]+) [\d.]+", line) == order
    assert re.search(r"attention [\d.]+ > \(p [=<] [\d.e-]+\) identity", line)  # identity clearly last
    trend = next(line for line in findings.splitlines() if line.startswith("- Trend along patch size"))
    rho = {}
    for mixer in ("dwconv", "attention", "identity"):
        x = [p for (m, p), v in values.items() if m == mixer for _ in v]
        y = [a for (m, p), v in values.items() if m == mixer for a in v]
        rho[mixer] = stats.spearmanr(x, y)
        assert f"Mixer {mixer} (Spearman ρ = {rho[mixer].statistic:.2f}" in trend
    adjusted = holm({m: r.pvalue for m, r in rho.items()})
    for mixer, r in rho.items():
        verdict = "falls as patch size grows for" if adjusted[mixer] < 0.05 and r.statistic < 0 else None
        if verdict:
            assert f"{verdict} Mixer {mixer}" in trend


# --- precision, n/a cells, stale runs, matched sizes, states ---

@pytest.mark.parametrize(("size", "decimals"), [(100, 0), (360, 1), (1000, 1), (10000, 2), (50000, 3)])
def test_accuracies_are_printed_to_what_their_split_resolves(size, decimals):
    assert METRICS["test_top1"].resolved(size).decimals == decimals
    assert METRICS["params"].resolved(size) == METRICS["params"]  # counts are not accuracies


def test_a_digits_sized_test_set_gives_one_decimal_and_the_caption_says_its_size(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv", "identity"), patch_sizes=(2,))
    for path in (study / "runs").glob("*/result.json"):
        result = json.loads(path.read_text())
        result["data"]["test_size"] = 360
        path.write_text(json.dumps(result))
    build_report(study, figures=False, echo=None)
    text = (study / "tables" / "test_top1.md").read_text()
    entries = md_rows(study / "tables" / "test_top1.md").values()
    assert all(re.fullmatch(r"\**\d+\.\d ± \d+\.\d\**.*", e) for e in entries), entries
    assert "n = 3 seeds per cell; test set of 360 images" in text


@pytest.fixture(scope="module")
def kernel_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kernel sizes with mixers that ignore them (listed once, n/a), one stale run, an interrupted and a
    submitting run, and receptive fields."""
    outcomes = {("dwconv", 2, 3, 0): "stale", ("identity", 2, None, 1): "interrupted",
                ("pool", 2, 7, 2): "submitting"}
    study = write_study(tmp_path_factory.mktemp("kernel"), "kernels", mixers=("dwconv", "attention", "identity",
                        "pool"), patch_sizes=(2, 4), kernel_sizes=(3, 5, 7), outcomes=outcomes, erf=True,
                        report={"control": CONTROL})
    return study


@pytest.fixture(scope="module")
def kernel_built(kernel_study: Path):
    return build_report(kernel_study, echo=None)


def test_cells_that_ignore_an_axis_are_shown_once_with_n_a(kernel_study, kernel_built):
    cells = pd.read_csv(kernel_built.cells_csv)
    assert cells.groupby("model.mixer").size().to_dict() == {"attention": 2, "dwconv": 6, "identity": 2, "pool": 6}
    assert cells.loc[cells["model.mixer"] == "attention", "ignored"].tolist() == ["model.kernel_size"] * 2
    summary = pd.read_csv(kernel_built.summary_csv, keep_default_na=False)
    assert set(summary.loc[summary["model.mixer"] == "attention", "model.kernel_size"]) == {"n/a"}
    rows = [line.split(" | ") for line in (kernel_study / "tables" / "test_top1.md").read_text().splitlines()
            if line.startswith("| ") and line[2].isalnum()]
    assert sorted(r[1] for r in rows if r[0] == "| n/a") == ["attention", "identity"]  # once each
    assert "- Kernel size (px) (`model.kernel_size`): 3, 5, 7, n/a" in kernel_built.report_md.read_text()
    cells_view, _ = inspect(kernel_study)
    fig = plots.metric_vs_axis(cells_view, "test_top1", "model.kernel_size", "model.mixer",
                               ["model.mixer", "model.patch_size", "model.kernel_size"])
    assert {c.get_label() for c in fig.axes[0].containers} == {"dwconv", "pool"}  # only mixers with a kernel
    sig = pd.read_csv(kernel_built.cells_csv).set_index(["model.mixer", "model.patch_size"])
    axes = ("model.mixer", "model.patch_size", "model.kernel_size")
    assert sig.loc[("attention", 4), "control_mean"] == pytest.approx(  # compared with dwconv at the base kernel, 3
        np.mean(finished(kernel_study, axes=axes)[("dwconv", 4, 3)]))


def inspect(study_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from analysis.aggregate import aggregate
    study = load_study(study_dir)
    runs = read_runs(study)
    return aggregate(runs, study.axes, list(METRICS)), runs


def test_stale_runs_are_marked_and_each_code_version_listed(kernel_study, kernel_built):
    summary = pd.read_csv(kernel_built.summary_csv)
    stale = summary[summary["stale"]]
    assert stale["source"].tolist() == [OLD_SOURCE]
    report = kernel_built.report_md.read_text()
    assert f"source `{OLD_SOURCE}` (commit `3f2c1e0a9b8d`) **stale**: 1 cells, 1 runs" in report
    n_current = summary[(summary["status"] == "done") & ~summary["stale"]]
    cells = n_current[["model.mixer", "model.patch_size", "model.kernel_size"]].astype(str).drop_duplicates()
    assert f"**stale**: 1 cells, 1 runs; source `5e1f0c2d9a7b` (commit `3f2c1e0a9b8d`): {len(cells)} cells, " \
           f"{len(n_current)} runs" in report
    rows = [line for line in (kernel_study / "tables" / "test_top1.md").read_text().splitlines() if "†" in line]
    assert [r.split(" | ")[:2] for r in rows if r.startswith("|")] == [["| 3", "dwconv"]]
    assert "†: includes runs trained under other code (stale)" in (kernel_study / "tables" / "test_top1.md").read_text()


def test_new_ledger_states_are_listed_with_what_they_mean(kernel_built):
    report = kernel_built.report_md.read_text()
    unfinished = report.split("## Runs not finished")[1]
    assert "| interrupted |" in unfinished and "| submitting |" in unfinished
    assert "- interrupted: stopped on purpose; running the study again resumes it from its last checkpoint" in \
        unfinished
    assert "submitting: being handed to the scheduler right now" in unfinished
    assert "1 submitting, 1 interrupted" in report


def test_a_matched_study_states_the_target_and_each_cells_achieved_size(tmp_path):
    study = write_study(tmp_path, mixers=("dwconv", "attention", "identity"), patch_sizes=(2, 4), seeds=(0,),
                        match_params=1.0e6)
    report = build_report(study, figures=False, echo=None).report_md.read_text()
    section = report.split("## Matched size")[1].split("\n## ")[0]
    assert "Target: 1.00 M parameters, reached by solving `model.dim` per cell" in section
    for cell in cells_of(study):
        result = json.loads((study / "runs" / cell["run_id"] / "result.json").read_text())
        p = cell["params"]
        achieved = result["model"]["params"]
        row = (f"| {p['model.mixer']} | {p['model.patch_size']} | {result['config']['model']['dim']} | "
               f"{achieved / 1e6:.2f} | {100 * (achieved / 1e6 - 1):+.1f}% |")
        assert row in section


# --- check_report: every mistake a report build would meet, found before training ---

AXES = {"model.mixer": ["dwconv", "attention"], "model.patch_size": [1, 2], "recipe.lr": [0.01, 0.1]}
BAD_REPORTS = [
    ({"table": {"metric": "test_tpo1"}}, None,
     "s.yaml.report.table.metric: 'test_tpo1' is not a metric here (did you mean 'test_top1'?)"),
    ({"table": {"metric": "best_test_top1"}}, None, "s.yaml.report.table.metric: 'best_test_top1' is not a metric"),
    ({"table": {"rows": "model.mixer", "columns": "model.mixer"}}, None,
     "s.yaml.report.table: rows and columns are both 'model.mixer'"),
    ({"table": {"rows": "model.mixr"}}, None,
     "s.yaml.report.table.rows: 'model.mixr' is not an axis of the study (did you mean 'model.mixer'?)"),
    ({"plots": {"x": "model.kernel_size"}}, None, "s.yaml.report.plots.x: 'model.kernel_size' is not an axis"),
    ({"control": {"model.mixer": "dwconvv"}}, None,
     "s.yaml.report.control.model.mixer: 'dwconvv' is not one of its values (did you mean 'dwconv'?); valid: "
     "dwconv, attention"),
    ({"control": {"model.mixer": "dwconv", "model.patch_size": 1}}, None, "s.yaml.report.control: names 2 axes"),
    ({"tabel": {}}, None, "s.yaml.report: unknown key 'tabel' (did you mean 'table'?)"),
    ({}, {"metric": "test_top1", "over": ["recipe.lr"]},
     "s.yaml.select.metric (selection uses validation data only): 'test_top1' is not a metric here"),
    ({}, {"metric": "val_top1", "over": ["recipe.wd"]}, "s.yaml.select.over[0]: 'recipe.wd' is not an axis"),
    ({"table": {"rows": "recipe.lr"}}, {"metric": "val_top1", "over": ["recipe.lr"]},
     "s.yaml.report.table.rows: 'recipe.lr' is selected over"),
    ({"control": {"recipe.lr": 0.01}}, {"metric": "val_top1", "over": ["recipe.lr"]},
     "s.yaml.report.control: 'recipe.lr' is selected over"),
]


@pytest.mark.parametrize(("report", "select", "message"), BAD_REPORTS)
def test_check_report_names_the_key_what_was_found_and_what_is_valid(report, select, message):
    with pytest.raises(SpecError) as error:
        check_report(report, AXES, select, "s.yaml")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_check_report_accepts_a_valid_report_and_axes_without_values():
    report = {"table": {"rows": "model.mixer", "columns": "model.patch_size", "metric": "test_top1_selected"},
              "plots": {"x": "model.patch_size"}, "control": {"model.mixer": "attention"}}
    check_report(report, AXES, {"metric": "val_top1", "over": ["recipe.lr"]}, "s.yaml")
    check_report({"control": {"model.mixer": "anything"}}, list(AXES), None, "s.yaml")  # values unknown: no check


def test_check_report_is_fast_to_import_and_a_build_reports_the_same_mistake(tmp_path, capsys):
    code = ("import sys; from analysis import check_report; check_report({}, ['model.mixer'], None, 's.yaml'); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'scipy', 'harness', 'runner') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    study = write_study(tmp_path, mixers=("dwconv",), patch_sizes=(2, 4), seeds=(0,),
                        report={"table": {"metric": "test_tpo1"}})
    assert main([str(study), "--no-figures"]) == 2
    assert capsys.readouterr().err == (f"study-report: {study / 'study.yaml'}.report.table.metric: 'test_tpo1' is "
                                       f"not a metric here (did you mean 'test_top1'?); valid: {', '.join(METRICS)}\n")
    assert not (study / "summary.csv").exists()  # nothing written before validation passes


# --- figures ---

def test_pdf_figures_embed_no_type3_fonts(kernel_built):
    pypdf = pytest.importorskip("pypdf")
    pdfs = [p for p in kernel_built.figures if p.suffix == ".pdf"]
    assert {p.stem for p in pdfs} >= {"training_curves", "heatmap", "erf_dwconv", "test_top1_vs_kernel_size"}

    def fonts(resources: Any) -> list[Any]:
        found = list((resources.get("/Font") or {}).values()) if resources else []
        for xobject in ((resources or {}).get("/XObject") or {}).values():
            found += fonts(xobject.get_object().get("/Resources"))
        return found

    for path in pdfs:
        kinds = {font.get_object()["/Subtype"] for page in pypdf.PdfReader(path).pages
                 for font in fonts(page.get("/Resources"))}
        assert kinds and "/Type3" not in kinds, (path.name, kinds)


def test_mixer_colours_are_fixed_and_tell_attention_from_identity_under_colour_blindness():
    colorspacious = pytest.importorskip("colorspacious")
    from matplotlib.colors import to_rgb

    def seen(colour: str, cvd: str | None) -> np.ndarray:
        rgb = np.array(to_rgb(colour))
        if cvd is None:
            return rgb
        return np.clip(colorspacious.cspace_convert(rgb, {"name": "sRGB1+CVD", "cvd_type": cvd, "severity": 100},
                                                    "sRGB1"), 0, 1)

    for cvd in (None, "deuteranomaly", "protanomaly", "tritanomaly"):
        for a, b in itertools.combinations(MIXER_COLOURS, 2):
            distance = colorspacious.deltaE(seen(MIXER_COLOURS[a], cvd), seen(MIXER_COLOURS[b], cvd),
                                            input_space="sRGB1")
            assert distance >= (25 if {a, b} == {"attention", "identity"} else 10), (a, b, cvd, distance)


def test_receptive_field_figure_per_mixer_averages_seeds(kernel_study, kernel_built):
    assert {p.stem for p in kernel_built.figures if p.stem.startswith("erf_")} == {
        "erf_dwconv", "erf_attention", "erf_identity", "erf_pool"}
    study = load_study(kernel_study)
    erf, problems = read_erf(study, read_runs(study))
    assert problems == []
    attention = [e for e in erf if e["model.mixer"] == "attention"]
    fig = plots.receptive_fields(attention, ["model.patch_size", "model.kernel_size"])
    maps = [np.load(kernel_study / "runs" / c["run_id"] / "erf.npz") for c in cells_of(kernel_study)
            if c["params"]["model.mixer"] == "attention" and c["params"]["model.patch_size"] == 2]
    assert fig.axes[0].get_ylabel().startswith("Patch size 2\n")
    for ax, stage in zip(fig.axes, ("init", "trained")):
        mean = np.mean([m[stage] for m in maps], axis=0)
        np.testing.assert_allclose(ax.images[0].get_array(), mean / mean.max(), rtol=1e-6)
    assert fig.axes[0].get_ylabel().endswith(f"n={len(maps)} seeds")

"""The study runner on the local executor: grids, validation, run identity and state, retries, concurrency."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY_BASE, run_study, write_study

from runner.spec import expand, load_spec


def statuses(results: Path, study: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (results / study / "runs").glob("*/state.json")}


def test_grid_zip_include_exclude_and_seeds(tmp_path):
    path = write_study(tmp_path, grid={"model.mixer": ["dwconv", "identity", "pool"], "model.patch_size": [1, 2]},
                       zip=[{"model.dim": [16, 32], "model.depth": [1, 2]}],
                       exclude=[{"model.mixer": "pool", "model.patch_size": [1]}],
                       include=[{"model.mixer": "mlp", "model.patch_size": 4}], seeds=2)
    spec = load_spec(path)
    cells = expand(spec)
    points = {tuple(sorted(c.params.items())) for c in cells}
    # 3 mixers x 2 patches x 2 (zipped dim/depth) - 2 excluded (pool, p=1) + 1 included; x 2 seeds
    assert len(cells) == len(points) == (3 * 2 * 2 - 2 + 1) * 2
    assert all(c.config.model.depth == {16: 1, 32: 2}[c.config.model.dim] for c in cells if "model.dim" in c.params)
    assert not any(c.config.model.mixer == "pool" and c.config.model.patch_size == 1 for c in cells)
    included = [c for c in cells if c.config.model.mixer == "mlp"]
    assert [c.config.model.patch_size for c in included] == [4, 4] and {c.config.seed for c in included} == {0, 1}
    assert len({c.run_id for c in cells}) == len(cells)
    assert spec.axes == ["model.mixer", "model.patch_size", "model.dim", "model.depth"]
    assert [c.run_id for c in expand(load_spec(path))] == [c.run_id for c in cells]  # stable ids


BAD_STUDIES = [
    ({"grid": {"model.mixr": ["dwconv"]}},
     "cell [model.mixr=dwconv, seed=0].model.mixr: unknown key (did you mean 'mixer'?)"),
    ({"grid": {"modle.mixer": ["dwconv"]}},
     "grid: 'modle.mixer' does not name a run-config key (did you mean 'model'?)"),
    ({"grid": {"model.mixer": ["dwconv", "convolution"]}}, "model.mixer: unknown mixer 'convolution'"),
    ({"grid": {"data.dataset": ["digits", "cifar"]}},
     "data.dataset: unknown dataset 'cifar' (did you mean 'cifar10'?)"),
    ({"grid": {"model.patch_size": [2, 16]}}, "model.patch_size: 16 is larger than the images (8x8 for digits)"),
    ({"grid": {"model.mixer": []}}, "grid.model.mixer: an axis needs at least one value"),
    ({"grid": {}}, "grid: the study has no axes"),
    ({"grid": {"model.dim": [16, "wide"]}}, "model.dim: expected int, got 'wide'"),
    ({"zip": [{"model.dim": [16, 32], "model.depth": [1]}]}, "zipped axes vary together and need equal lengths"),
    ({"exclude": [{"model.mixer": ["dwconv", "identity"]}]}, "exclude: the rules exclude every cell of the grid"),
    ({"seeds": []}, "seeds: needs at least one seed"),
    ({"run": {"executor": "kubernetes"}}, "run.executor: 'kubernetes' is not valid"),
    ({"run": {"partion": "gpu"}}, "run.partion: unknown key (did you mean 'partition'?)"),
    ({"run": {"profile": "slurm/profiles/nowhere.yaml"}}, "run.profile: no profile file 'slurm/profiles/nowhere.yaml'"),
    ({"grid": {"model.mixer_kwargs": [{"num_head": 2}]},
      "base": {**TINY_BASE, "model": {**TINY_BASE["model"], "mixer": "attention"}}},
     "mixer 'attention' has no hyper-parameter 'num_head' (did you mean 'num_heads'?)"),
    ({"seed": [0, 1]}, "seed: unknown key (did you mean 'seeds'?)"),
    ({"run": {"gpus_per_task": 2}}, "run.gpus_per_task: a process trains on one GPU, got 2; for a cell on several "
                                    "GPUs set run.tasks_per_node and run.gpus_per_node"),
    ({"run": {"tasks_per_node": 2, "gpus_per_node": 1}},
     "run.gpus_per_node: one process per GPU: must equal run.tasks_per_node (2) or be 0 (CPU processes), got 1"),
    ({"run": {"nodes": 2}}, "run.nodes: the local executor runs each cell on this machine: must be 1, got 2"),
    ({"run": {"tasks_per_node": 3}}, "base.recipe.batch_size: 256 is the global batch, split evenly over "
                                     "system.world_size 3 processes: it must be a multiple of 3"),
    ({"run": {"tasks_per_node": 64, "gpus_per_node": 64}}, "run.gpus_per_node: 64 GPUs per cell, but this machine has"),
]


@pytest.mark.parametrize("fields,message", BAD_STUDIES, ids=[m[:40] for _, m in BAD_STUDIES])
def test_bad_study_files_say_what_is_wrong_and_submit_nothing(tmp_path, fields, message):
    path = write_study(tmp_path, **fields)
    # a finished study's files must survive a bad edit of the study untouched
    (tmp_path / "results" / "tiny").mkdir(parents=True)
    (tmp_path / "results" / "tiny" / "keep.txt").write_text("earlier results")
    p = run_study(str(path))
    assert p.returncode == 2, p.stdout + p.stderr
    assert message in p.stderr and str(path) in p.stderr and "nothing was submitted" in p.stderr, p.stderr
    # each mistake gets its own message: none of the other bad studies' messages is in this run's output
    assert [m for _, m in BAD_STUDIES if m != message and m in p.stderr] == [], p.stderr
    assert sorted(x.name for x in (tmp_path / "results" / "tiny").iterdir()) == ["keep.txt"]


@pytest.mark.slow
def test_local_study_runs_skips_finished_cells_and_aggregates(tmp_path):
    path = write_study(tmp_path, grid={"model.mixer": ["dwconv", "identity"], "model.patch_size": [1, 2]},
                       report={"figures": True})
    results = tmp_path / "results"
    dry = run_study(str(path), "--dry-run")
    assert dry.returncode == 0 and "4 cells: 4 new; 4 would be submitted" in dry.stdout
    assert not (results / "tiny" / "runs").exists()  # a dry run writes nothing

    first = run_study(str(path))
    assert first.returncode == 0, first.stdout + first.stderr
    states = statuses(results, "tiny")
    assert len(states) == 4 and {s["status"] for s in states.values()} == {"done"}
    assert all(s["attempts"] == 1 for s in states.values())
    for run_id in states:
        result = json.loads((results / "tiny" / "runs" / run_id / "result.json").read_text())
        assert result["run_id"] == run_id and result["status"] == "done"
    study = yaml.safe_load((results / "tiny" / "study.yaml").read_text())
    assert study["axes"] == ["model.mixer", "model.patch_size"] and len(study["cells"]) == 4
    assert (results / "tiny" / "summary.csv").exists() and (results / "tiny" / "report.md").exists()
    assert "figure files" in first.stdout and list((results / "tiny" / "figures").glob("*.png"))

    again = run_study(str(path))
    assert again.returncode == 0 and "nothing to submit: 4 cells: 4 done" in again.stdout
    assert {k: v["attempts"] for k, v in statuses(results, "tiny").items()} == {k: 1 for k in states}

    status = run_study(str(path), "--status")
    assert status.returncode == 0 and "4 cells: 4 done" in status.stdout
    dry = run_study(str(path), "--dry-run")
    assert "4 cells: 4 done; 0 would be submitted" in dry.stdout


@pytest.mark.slow
def test_a_failing_cell_keeps_its_traceback_and_retries_are_bounded(tmp_path):
    # synthetic data of 0 classes: this cell raises at run time (drawing its labels), after validation; the other
    # one trains
    base = {**TINY_BASE, "data": {"dataset": "synthetic", "options": {"image_size": 8, "train_size": 512}}}
    path = write_study(tmp_path, base=base, grid={"data.options.num_classes": [10, 0]}, run={"max_retries": 1})
    results = tmp_path / "results"
    first = run_study(str(path))
    assert first.returncode == 1 and "1 cells failed" in first.stdout
    by_status = {s["status"]: s for s in statuses(results, "tiny").values()}
    assert set(by_status) == {"done", "failed"}
    assert "ValueError: high <= 0" in by_status["failed"]["error"]
    status = run_study(str(path), "--status")
    assert "Traceback (most recent call last)" in status.stdout and "high <= 0" in status.stdout

    second = run_study(str(path))  # one retry allowed
    assert "submitting 1 of 2 cells" in second.stdout
    third = run_study(str(path))
    assert "nothing to submit" in third.stdout and "gave up after 2 failures" in third.stdout
    assert sorted(s["attempts"] for s in statuses(results, "tiny").values()) == [1, 2]


@pytest.mark.slow
def test_two_runners_at_once_never_run_a_cell_twice(tmp_path):
    path = write_study(tmp_path, grid={"model.mixer": ["dwconv", "identity"], "model.patch_size": [1, 2]})
    runners = [subprocess.Popen([sys.executable, "-m", "runner", str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=900)[0] for r in runners]
    assert all(r.returncode == 0 for r in runners), outputs
    states = statuses(tmp_path / "results", "tiny")
    assert len(states) == 4 and all(s["status"] == "done" for s in states.values())
    assert all(s["attempts"] == 1 and len(s["attempts_log"]) == 1 for s in states.values()), states  # run once


def test_debug_executor_runs_in_process(tmp_path):
    from runner.cli import main
    path = write_study(tmp_path, run={"executor": "debug"})
    assert main([str(path)]) == 0
    assert {s["status"] for s in statuses(tmp_path / "results", "tiny").values()} == {"done"}


@pytest.mark.parametrize("study,cells", [("quickstart", 16), ("mixer_vs_patch", 60), ("kernel_size", 30),
                                         ("throughput", 21)])
def test_shipped_studies_expand(study, cells):
    spec = load_spec(ROOT / "studies" / f"{study}.yaml")
    assert spec.name == study and len(expand(spec)) == cells


def test_a_real_study_s_tables_match_its_run_files(tmp_path):
    """A real study (trained here), then its aggregate tables checked against the run files it left."""
    import statistics

    import pandas as pd

    from runner.cli import main
    path = write_study(tmp_path, grid={"model.mixer": ["dwconv", "identity", "pool"]}, seeds=[0, 1],
                       run={"executor": "debug"})
    assert main([str(path)]) == 0
    study = tmp_path / "results" / "tiny"
    results = [json.loads(p.read_text()) for p in (study / "runs").glob("*/result.json")]
    assert len(results) == 6
    cells = pd.read_csv(study / "tables" / "cells.csv")
    by_mixer: dict[str, list[dict]] = {}
    for r in results:
        by_mixer.setdefault(r["config"]["model"]["mixer"], []).append(r)
    for mixer, runs in by_mixer.items():
        row = cells[cells["model.mixer"] == mixer].iloc[0]
        top1 = [r["metrics"]["test_top1"] for r in runs]
        assert row["test_top1_n"] == 2 and row["n_done"] == 2
        assert row["test_top1_mean"] == pytest.approx(statistics.mean(top1))
        assert row["test_top1_std"] == pytest.approx(statistics.stdev(top1))
        assert row["params_mean"] == runs[0]["model"]["params"]
        assert row["infer_img_s_mean"] == pytest.approx(statistics.mean(r["throughput"]["infer_img_s"] for r in runs))
    # the Pareto set over (inference img/s, top-1), computed here from the run files
    points = {m: (statistics.mean(r["throughput"]["infer_img_s"] for r in runs),
                  statistics.mean(r["metrics"]["test_top1"] for r in runs)) for m, runs in by_mixer.items()}
    front = {m for m, (x, y) in points.items()
             if not any(x2 >= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points.values())}
    assert set(cells[cells["pareto"]]["model.mixer"]) == front
    table = (study / "tables" / "test_top1.md").read_text()
    for runs in by_mixer.values():  # printed to what 360 test images resolve: 1 decimal
        assert f"{statistics.mean(r['metrics']['test_top1'] for r in runs):.1f}" in table
    summary = pd.read_csv(study / "summary.csv")
    assert len(summary) == 6 and list(summary.columns[:2]) == ["model.mixer", "seed"]

"""Study design: cells listed once when their model ignores an axis, sizes matched, report and selection settings
checked before anything trains, the cost up front, and a significance study on the digits."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_BASE, run_study, write_study

from harness.config import resolve
from harness.identity import normalise
from harness.train import build_model
from mixers import MIXERS
from mixers.base import hyperparameters
from mixers.summary import count_flops, count_params
from runner.spec import expand, load_spec, resolved_study

TINY_1_EPOCH = {**TINY_BASE, "recipe": {**TINY_BASE["recipe"], "epochs": 1}, "bench": {"enabled": False}}


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_a_run_identity_ignores_the_kernel_size_exactly_when_the_mixer_takes_none(mixer):
    takes_kernel = "kernel_size" in hyperparameters(MIXERS.get(mixer))
    configs = [resolve({"model": {"mixer": mixer, "kernel_size": k}}) for k in (3, 7)]
    assert ("model.kernel_size" in normalise(configs[0].to_dict())[1]) is not takes_kernel
    assert (configs[0].run_id == configs[1].run_id) is not takes_kernel


def test_mixer_kwargs_of_other_mixers_are_ignored_and_typos_are_not():
    attention = resolve({"model": {"mixer": "attention", "mixer_kwargs": {"num_heads": 2}}}).to_dict()
    dwconv = resolve({"model": {"mixer": "dwconv", "mixer_kwargs": {"num_heads": 2}}}).to_dict()
    typo = resolve({"model": {"mixer": "dwconv", "mixer_kwargs": {"num_head": 2}}}).to_dict()
    assert normalise(attention)[1] == ["model.kernel_size"]
    assert normalise(dwconv) == (resolve({"model": {"mixer": "dwconv"}}).to_dict(), ["model.mixer_kwargs.num_heads"])
    assert normalise(typo)[0] == typo  # left for validation to report, with the closest valid name


def test_a_deduplicated_kernel_size_study_trains_each_kernel_free_mixer_once_per_seed(tmp_path):
    path = write_study(tmp_path, base=TINY_1_EPOCH, grid={"model.mixer": ["dwconv", "identity"],
                                                          "model.kernel_size": [3, 5]}, seeds=[0, 1])
    dry = run_study(str(path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "6 cells: 6 new; 6 would be submitted" in dry.stdout  # dwconv 2 kernels x 2 seeds, identity 2 seeds
    identity_rows = [line.split() for line in dry.stdout.splitlines() if " identity " in line]
    assert len(identity_rows) == 2 and all(row[2] == "n/a" for row in identity_rows)
    assert re.search(r"estimated device-hours: [0-9.e-]+; step times: 6 cells from probes", dry.stdout), dry.stdout
    assert not (tmp_path / "results").exists()  # a dry run writes nothing under the results folder

    p = run_study(str(path))
    assert p.returncode == 0, p.stdout + p.stderr
    folder = tmp_path / "results" / "tiny"
    assert len(list(folder.glob("runs/*/result.json"))) == 6
    study = yaml.safe_load((folder / "study.yaml").read_text())
    identity = [c for c in study["cells"] if c["params"]["model.mixer"] == "identity"]
    assert [c["ignored"] for c in identity] == [["model.kernel_size"]] * 2
    assert [c["params"]["model.kernel_size"] for c in identity] == [None, None]
    # the harness computes the same id for the identity model at any kernel size: one rule for what is the same
    for kernel in (3, 5, 9):
        cfg = resolve(TINY_1_EPOCH, {"model.mixer": "identity", "model.kernel_size": kernel, "seed": 1})
        assert cfg.run_id == identity[1]["run_id"]
    status = run_study(str(path), "--status")
    assert "6 cells from finished cells of their model" in status.stdout and "spent so far" in status.stdout
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line.split()[4:5] == ["done"]}
    assert len(rows) == 6
    results = {run_id: json.loads((folder / "runs" / run_id / "result.json").read_text()) for run_id in rows}
    for run_id, row in rows.items():  # hours to 2 significant digits
        state = json.loads((folder / "runs" / run_id / "state.json").read_text())
        assert float(row[-1]) == pytest.approx(sum(a["wall_s"] for a in state["attempts_log"]) / 3600, rel=0.05,
                                               abs=1e-9)  # spent: the attempts' wall time
        model = results[run_id]["config"]["model"]
        same = [r["timing"]["wall_s"] for r in results.values() if r["config"]["model"] == model]
        assert float(row[-2]) == pytest.approx(sum(same) / len(same) / 3600, rel=0.05)  # estimated: its model's


@pytest.mark.parametrize("kind,target", [("params", 5.0e4), ("flops", 1.0e7)])
def test_a_matched_study_lands_every_cell_within_3_percent(tmp_path, kind, target):
    base = {**TINY_BASE, "model": {**TINY_BASE["model"], "depth": 2, "mixer_kwargs": {"num_heads": 4}}}
    path = write_study(tmp_path, base=base, grid={"model.mixer": MIXERS.names(), "model.block": ["convmixer",
                                                                                                 "metaformer"]},
                       match={kind: target, "solve": "model.dim"})
    spec = load_spec(path)
    cells = expand(spec)
    assert len(cells) == 2 * len(MIXERS)
    for cell in cells:
        m = cell.config.model
        with torch.device("meta"):
            model = build_model(cell.config, 1, 10, 8)
        achieved = count_params(model) if kind == "params" else count_flops(model, (1, 8, 8))
        assert abs(achieved / target - 1) <= 0.03, (m.mixer, m.block, m.dim, achieved)
        assert cell.matched == {"model.dim": m.dim, kind: achieved}
        if m.mixer == "attention":
            assert m.dim % 4 == 0
    study = resolved_study(spec, cells, {})
    assert study["match"] == {kind: target, "solve": "model.dim"}
    assert all(c["matched"]["model.dim"] > 0 for c in study["cells"])


@pytest.mark.parametrize("fields,message", [
    ({"match": {"params": 10.0}}, "cell [model.mixer=dwconv, seed=0].match: cannot land within 3% of params 10"),
    ({"match": {"params": 1.0e5, "solve": "model.depth"}, "grid": {"model.depth": [1, 2]}},
     "match.solve: model.depth is a grid axis"),
    ({"match": {"params": 1.0e5, "flops": 1.0e6}}, "give one target"),
    ({"select": {"metric": "test_top1", "over": ["model.mixer"]}},
     "select.metric (selection uses validation data only): 'test_top1' is not a metric here"),
    ({"select": {"over": ["recipe.lr"]}}, "select.over[0]: 'recipe.lr' is not an axis of the study"),
    ({"report": {"control": {"model.mixer": "dwcnv"}}},
     "report.control.model.mixer: 'dwcnv' is not one of its values (did you mean 'dwconv'?)"),
    ({"report": {"table": {"metric": "test_top"}}}, "report.table.metric: 'test_top' is not a metric here"),
    ({"report": {"figures": "no"}}, "report.figures: expected bool, got 'no'"),
])
def test_design_mistakes_fail_before_anything_is_written(tmp_path, fields, message):
    path = write_study(tmp_path, **fields)
    p = run_study(str(path))
    assert p.returncode == 2 and message in p.stderr and "nothing was submitted" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_cpu_study_finds_identity_significantly_worse_than_its_dwconv_control(tmp_path):
    base = {**TINY_BASE, "model": {"block": "convmixer", "dim": 32, "depth": 2, "patch_size": 1, "kernel_size": 3},
            "recipe": {"name": "small", "epochs": 4, "batch_size": 64, "lr": 0.01}, "bench": {"enabled": False}}
    path = write_study(tmp_path, base=base, grid={"model.mixer": ["dwconv", "identity"]}, seeds=[0, 1, 2],
                       report={"control": {"model.mixer": "dwconv"}})
    p = run_study(str(path))
    assert p.returncode == 0, p.stdout + p.stderr
    folder = tmp_path / "results" / "tiny"
    summary = pd.read_csv(folder / "summary.csv")
    assert {"delta_vs_control", "p_holm"} <= set(summary.columns) and len(summary) == 6
    identity = summary[summary["model.mixer"] == "identity"]
    assert (identity["delta_vs_control"] < 0).all() and (identity["p_holm"] < 0.05).all(), identity.to_dict("records")
    for result in (json.loads(f.read_text()) for f in folder.glob("runs/*/result.json")):
        assert 0 < result["metrics"]["val_top1"] <= 100 and result["data"]["val_size"] == 144

"""A corpus of user mistakes across the five commands: each must exit with its code, name the file and the key or
argument in its message, print no traceback, and leave the file tree as it was (nothing written).

Most cases call the command's `main(argv)` in this process (fast); a representative few run as real processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from analysis_fixtures import write_study

from analysis import build_report
from analysis.cli import main as study_report
from analysis.files import MANIFEST
from harness.cli import main as mixer_train
from harness.throughput import main as mixer_bench
from mixers.summary import main as mixer_summary
from runner.cli import main as run_study

ROOT = Path(__file__).resolve().parents[1]
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run-study": run_study, "mixer-train": mixer_train, "mixer-bench": mixer_bench, "mixer-summary": mixer_summary,
    "study-report": study_report}

STUDY: dict[str, Any] = {
    "name": "s",
    "base": {"model": {"dim": 16, "depth": 1, "patch_size": 2, "kernel_size": 3},
             "data": {"dataset": "digits"}, "recipe": {"name": "small", "epochs": 1}},
    "grid": {"model.mixer": ["dwconv", "pool"]},
    "seeds": [0],
    "run": {"executor": "local"},
}
RUN: dict[str, Any] = {"model": {"dim": 16, "depth": 1, "patch_size": 2, "kernel_size": 3},
                       "data": {"dataset": "digits"}, "recipe": {"name": "small", "epochs": 1}}


def edited(base: dict[str, Any], **changes: Any) -> str:
    """`base` as YAML with dotted `changes` (a__b means a.b; None removes the key)."""
    data = yaml.safe_load(yaml.safe_dump(base))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


def study(**changes: Any) -> dict[str, str | bytes]:
    return {"study.yaml": edited(STUDY, **changes)}


def run_config(**changes: Any) -> dict[str, str | bytes]:
    return {"run.yaml": edited(RUN, **changes)}


def heads(value: int) -> dict[str, str | bytes]:
    return study(grid={"model.mixer": ["attention"]}, base__model__mixer_kwargs={"num_heads": value})


PLUGIN_STUDY = {"study.yaml": edited(STUDY, imports=["my_plugin"])}
S, R = ["study.yaml"], ["run.yaml"]

# (id, command, files, arguments, exit code, what the message must name)
CASES: list[tuple[str, str, dict[str, str | bytes], list[str], int, list[str]]] = [
    # study files
    ("missing-study", "run-study", {}, ["nope.yaml"], 2, ["nope.yaml"]),
    ("study-is-folder", "run-study", {"folder.yaml/x": "1"}, ["folder.yaml"], 2, ["folder.yaml", "folder"]),
    ("utf16-study", "run-study", {"study.yaml": edited(STUDY).encode("utf-16")}, S, 2, ["study.yaml", "UTF-16"]),
    ("latin1-study", "run-study", {"study.yaml": ("# caf\xe9\n" + edited(STUDY)).encode("latin-1")}, S, 2,
     ["study.yaml", "UTF-8"]),
    ("yaml-syntax", "run-study", {"study.yaml": "name: [s\n"}, S, 2, ["study.yaml", "YAML"]),
    ("study-not-mapping", "run-study", {"study.yaml": "- a\n- b\n"}, S, 2, ["study.yaml", "mapping"]),
    ("study-without-name", "run-study", study(name=None), S, 2, ["study.yaml", "name", "missing"]),
    ("bad-name", "run-study", study(name="a/b"), S, 2, ["study.yaml.name"]),
    ("unknown-top-key", "run-study", study(gird={}), S, 2, ["study.yaml.gird", "grid"]),
    ("duplicate-key", "run-study", {"study.yaml": "name: a\n" + edited(STUDY)}, S, 2,
     ["study.yaml", "'name' appears twice"]),
    ("sexagesimal", "run-study", {"study.yaml": edited(STUDY).replace("executor: local", "executor: local\n  "
                                                                      "timeout_min: 2:00:00")}, S, 2,
     ["study.yaml.run.timeout_min", "2:00:00"]),
    ("yaml11-boolean", "run-study", {"study.yaml": edited(STUDY).replace("executor: local", "executor: local\n  "
                                                                         "snapshot: off")}, S, 2,
     ["study.yaml.run.snapshot", "true and false"]),
    ("derived-key", "run-study", study(file="x"), S, 2, ["study.yaml.file"]),
    ("axis-bad-section", "run-study", study(grid={"modle.mixer": ["dwconv"]}), S, 2, ["study.yaml.grid", "model"]),
    ("axis-empty", "run-study", study(grid={"model.mixer": []}), S, 2, ["study.yaml.grid.model.mixer"]),
    ("axis-seed", "run-study", study(grid={"seed": [1, 2]}), S, 2, ["study.yaml.grid", "seeds"]),
    ("unknown-mixer", "run-study", study(grid={"model.mixer": ["dwconvv"]}), S, 2, ["model.mixer", "dwconv"]),
    ("unknown-block", "run-study", study(base__model__block="convmix"), S, 2, ["model.block", "convmixer"]),
    ("unknown-act", "run-study", study(base__model__act="gelu2"), S, 2, ["model.act"]),
    ("negative-dim", "run-study", study(base__model__dim=-1), S, 2, ["study.yaml.base.model.dim"]),
    ("huge-dim", "run-study", study(base__model__dim=10 ** 12), S, 2, ["study.yaml.base.model.dim", "65,536"]),
    ("dim-typo", "run-study", study(base__model__dimm=8), S, 2, ["study.yaml.base.model.dimm", "dim"]),
    ("dim-string", "run-study", study(base__model__dim="abc"), S, 2, ["study.yaml.base.model.dim", "int"]),
    ("depth-zero", "run-study", study(base__model__depth=0), S, 2, ["base.model.depth"]),
    ("kernel-zero", "run-study", study(base__model__kernel_size=0), S, 2, ["base.model.kernel_size"]),
    ("heads-zero", "run-study", heads(0), S, 2, ["study.yaml", "model", "num_heads"]),
    ("heads-negative", "run-study", heads(-4), S, 2, ["study.yaml", "model", "num_heads"]),
    ("heads-not-dividing", "run-study", heads(5), S, 2, ["study.yaml", "model", "num_heads"]),
    ("kernel-in-mixer-kwargs", "run-study", study(base__model__mixer_kwargs={"kernel_size": 3}), S, 2,
     ["study.yaml", "model.mixer_kwargs.kernel_size", "model.kernel_size"]),
    ("mixer-kwarg-typo", "run-study", study(base__model__mixer_kwargs={"bias": True, "biass": 1}), S, 2,
     ["study.yaml", "biass", "bias"]),
    ("drop-path-one", "run-study", study(base__model__drop_path_rate=1.0), S, 2, ["base.model.drop_path_rate"]),
    ("patch-larger-than-image", "run-study", study(base__model__patch_size=64), S, 2,
     ["study.yaml", "model.patch_size", "8x8"]),
    ("batch-over-split", "run-study", study(base__recipe__batch_size=5000), S, 2,
     ["study.yaml", "recipe.batch_size", "1293"]),  # digits' 1,437 training images less the 10% validation
    ("batch-over-limit", "run-study", study(base__data__train_limit=10), S, 2,
     ["study.yaml", "recipe.batch_size", "train_limit"]),
    ("cuda-without-gpu", "run-study", study(base__system={"device": "cuda"}), S, 2,
     ["study.yaml", "system.device", "cuda"]),
    ("cuda-index", "run-study", study(base__system={"device": "cuda:7"}), S, 2, ["study.yaml", "system.device"]),
    ("tpu-device", "run-study", study(base__system={"device": "tpu"}), S, 2, ["study.yaml.base.system.device"]),
    ("threads-zero", "run-study", study(base__system={"threads": 0}), S, 2, ["study.yaml.base.system.threads"]),
    ("study-bench-batch-zero", "run-study", study(base__bench={"batch_size": 0}), S, 2,
     ["study.yaml.base.bench.batch_size"]),
    ("study-bench-iters-zero", "run-study", study(base__bench={"iters": 0}), S, 2, ["study.yaml.base.bench.iters"]),
    ("epochs-zero", "run-study", study(base__recipe={"name": "small", "epochs": 0}), S, 2, ["recipe.epochs"]),
    ("lr-negative", "run-study", study(base__recipe={"lr": -1.0}), S, 2, ["recipe.lr"]),
    ("recipe-unknown", "run-study", study(base__recipe="smal"), S, 2, ["recipe", "small"]),
    ("optimizer-typo", "run-study", study(base__recipe={"optimizer": "adam"}), S, 2, ["recipe.optimizer", "adamw"]),
    ("dataset-unknown", "run-study", study(base__data={"dataset": "digit"}), S, 2, ["data.dataset", "digits"]),
    ("dataset-option", "run-study", study(base__data={"dataset": "synthetic", "options": {"chanels": 3}}), S, 2,
     ["study.yaml", "data", "chanels"]),
    ("image-size-zero", "run-study", study(base__data={"dataset": "digits", "image_size": 0}), S, 2,
     ["data.image_size"]),
    ("packed-missing", "run-study", study(base__data={"dataset": "packed", "root": "none.npz"}), S, 2,
     ["study.yaml", "data", "none.npz"]),
    ("seeds-empty", "run-study", study(seeds=[]), S, 2, ["study.yaml.seeds"]),
    ("seeds-repeated", "run-study", study(seeds=[0, 0]), S, 2, ["study.yaml.seeds"]),
    ("seed-negative", "run-study", study(seeds=[-1]), S, 2, ["study.yaml.seeds[0]"]),
    ("seeds-million", "run-study", study(seeds=1_000_000), S, 2, ["study.yaml", "1,000,000"]),
    ("big-needs-yes", "run-study", study(seeds=3000), S, 2, ["study.yaml", "--yes"]),
    ("seed-in-base", "run-study", study(base__seed=1), S, 2, ["study.yaml.base.seed"]),
    ("exclude-all", "run-study", study(exclude=[{"model.mixer": ["dwconv", "pool"]}]), S, 2,
     ["study.yaml.exclude"]),
    ("include-bad-key", "run-study", study(include=[{"modle.mixer": "pool"}]), S, 2, ["study.yaml.include"]),
    ("zip-unequal", "run-study", study(zip=[{"model.dim": [8, 16], "model.depth": [1]}]), S, 2,
     ["study.yaml.zip[0]"]),
    ("zip-in-grid", "run-study", study(zip=[{"model.mixer": ["pool"]}]), S, 2, ["study.yaml.zip[0].model.mixer"]),
    ("executor-typo", "run-study", study(run={"executor": "slrum"}), S, 2, ["study.yaml.run.executor", "slurm"]),
    ("retries-negative", "run-study", study(run={"max_retries": -1}), S, 2, ["study.yaml.run.max_retries"]),
    ("parallel-zero", "run-study", study(run={"parallel": 0}), S, 2, ["study.yaml.run.parallel"]),
    ("mem-zero", "run-study", study(run={"mem_gb": 0}), S, 2, ["study.yaml.run.mem_gb"]),
    ("profile-missing", "run-study", study(run={"profile": "nope.yaml"}), S, 2, ["study.yaml.run.profile"]),
    ("profile-key-typo", "run-study", {**study(run={"profile": "p.yaml"}), "p.yaml": "partitoin: x\n"}, S, 2,
     ["p.yaml.partitoin", "partition"]),
    ("imports-missing", "run-study", study(imports=["no_such_plugin"]), S, 2, ["study.yaml.imports[0]"]),
    ("plugin-syntax-error", "run-study", {**PLUGIN_STUDY, "my_plugin.py": "def broken(:\n"}, S, 2,
     ["study.yaml.imports[0]", "my_plugin.py", "line 1"]),
    ("plugin-name-taken", "run-study", {**PLUGIN_STUDY, "my_plugin.py": (
        "from mixers import MIXERS\n\n@MIXERS.register('dwconv')\nclass Again:\n    pass\n")}, S, 2,
     ["study.yaml.imports[0]", "'dwconv' is already registered"]),
    # run-study arguments and overrides
    ("retries-argument", "run-study", study(), [*S, "--max-retries", "-1"], 2, ["--max-retries"]),
    ("executor-argument", "run-study", study(), [*S, "--executor", "pbs"], 2, ["--executor"]),
    ("rerun-argument", "run-study", study(), [*S, "--rerun", "some"], 2, ["--rerun"]),
    ("override-no-equals", "run-study", study(), [*S, "model.dim"], 2, ["study.yaml", "model.dim", "key=value"]),
    ("override-unknown", "run-study", study(), [*S, "modle.dim=3"], 2, ["modle.dim", "model"]),
    ("override-type", "run-study", study(), [*S, "model.dim=abc"], 2, ["study.yaml.base.model.dim"]),
    ("override-axis", "run-study", study(), [*S, "model.mixer=pool"], 2, ["model.mixer", "grid.model.mixer"]),
    ("override-seeds-zero", "run-study", study(), [*S, "seeds=0"], 2, ["study.yaml.seeds"]),
    ("override-run-typo", "run-study", study(), [*S, "run.paralel=2"], 2, ["study.yaml.run.paralel", "parallel"]),
    ("results-is-file", "run-study", {**study(), "res": "a file"}, [*S, "--results", "res"], 2,
     ["study.yaml.run.results", "res"]),
    ("results-read-only", "run-study", study(), [*S, "--results", "/proc/tokenmix"], 2,
     ["study.yaml.run.results", "/proc"]),
    ("report-before-run", "run-study", study(), [*S, "--report"], 2, ["study.yaml", "--report"]),
    # mixer-train
    ("train-missing-config", "mixer-train", {}, ["nope.yaml"], 2, ["nope.yaml"]),
    ("train-config-folder", "mixer-train", {"cfg.yaml/x": "1"}, ["cfg.yaml"], 2, ["cfg.yaml", "folder"]),
    ("train-utf16", "mixer-train", {"run.yaml": edited(RUN).encode("utf-16")}, R, 2, ["run.yaml", "UTF-16"]),
    ("train-duplicate-key", "mixer-train", {"run.yaml": "seed: 1\nseed: 2\n"}, R, 2, ["run.yaml", "'seed'"]),
    ("train-unknown-section", "mixer-train", run_config(modle={}), R, 2, ["run.yaml.modle", "model"]),
    ("train-override-no-equals", "mixer-train", run_config(), [*R, "recipe.epochs"], 2, ["recipe.epochs"]),
    ("train-override-type", "mixer-train", run_config(), [*R, "recipe.epochs=abc"], 2, ["run.yaml.recipe.epochs"]),
    ("train-out-is-file", "mixer-train", {**run_config(), "out": "x"}, [*R, "--out", "out"], 2, ["--out", "out"]),
    ("train-cuda", "mixer-train", run_config(system={"device": "cuda"}), R, 2, ["run.yaml.system.device"]),
    ("train-batch", "mixer-train", run_config(recipe={"batch_size": 4096}), R, 2, ["run.yaml.recipe.batch_size"]),
    ("train-heads", "mixer-train", run_config(model={"mixer": "attention", "mixer_kwargs": {"num_heads": 0}}), R, 2,
     ["run.yaml.model", "num_heads"]),
    ("train-compile", "mixer-train", run_config(system={"compile": "maybe"}), R, 2, ["run.yaml.system.compile"]),
    ("train-bench-threads", "mixer-train", run_config(system={"threads": 0}), R, 2, ["run.yaml.system.threads"]),
    # mixer-bench
    ("bench-batch-zero", "mixer-bench", {}, ["--batch-size", "0"], 2, ["--batch-size"]),
    ("bench-iters-zero", "mixer-bench", {}, ["--iters", "0"], 2, ["--iters"]),
    ("bench-mixer-typo", "mixer-bench", {}, ["--mixers", "dwconvv"], 2, ["--mixers", "dwconv"]),
    ("bench-cuda", "mixer-bench", {}, ["--device", "cuda"], 2, ["--device", "cuda"]),
    ("bench-patch", "mixer-bench", {}, ["--patch-size", "64"], 2, ["--patch-size 64", "larger"]),
    ("bench-budget", "mixer-bench", {}, ["--budget-s", "0"], 2, ["--budget-s"]),
    ("bench-dim-text", "mixer-bench", {}, ["--dim", "wide"], 2, ["--dim"]),
    # mixer-summary
    ("summary-dim-zero", "mixer-summary", {}, ["--dim", "0"], 2, ["--dim"]),
    ("summary-patch", "mixer-summary", {}, ["--patch-size", "64"], 2, ["--patch-size 64", "larger"]),
    ("summary-depth-text", "mixer-summary", {}, ["--depth", "deep"], 2, ["--depth"]),
    # study-report
    ("report-missing", "study-report", {}, ["results/none"], 2, ["results/none"]),
    ("report-no-study", "study-report", {"results/empty/x.txt": "1"}, ["results/empty"], 2, ["results/empty"]),
    ("report-file", "study-report", {"notes.txt": "1"}, ["notes.txt"], 2, ["notes.txt"]),
]


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root` (the cache aside) with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns if p.is_file()
                                       else 0)
            for p in root.rglob("*") if "cache" not in p.relative_to(root).parts}


def invoke(command: str, argv: list[str]) -> int:
    try:
        return COMMANDS[command](argv)
    except SystemExit as e:  # argparse's own usage errors
        return int(e.code or 0)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOKENMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TOKENMIX_DEBUG", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # plugin folders added by a case go with it
    return tmp_path


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_the_corpus_has_80_distinct_mistakes_over_every_command() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 80
    assert {c[1] for c in CASES} == set(COMMANDS)


@pytest.mark.parametrize("name,command,files,argv,code,needles", CASES, ids=[c[0] for c in CASES])
def test_mistake(name: str, command: str, files: dict[str, str | bytes], argv: list[str], code: int,
                 needles: list[str], workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, files)
    if name.startswith("plugin"):
        sys.modules.pop("my_plugin", None)
    before = tree(workdir)
    assert invoke(command, argv) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err}"
    assert tree(workdir) == before, "the command wrote files"


def test_exclude_matching_nothing_is_a_warning(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, study(exclude=[{"model.mixer": "fourier"}], include=[{"model.mixer": "pool"}]))
    assert run_study(["study.yaml", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "study.yaml.exclude[0]" in err and "excludes nothing" in err
    assert "study.yaml.include[0]" in err and "adds nothing" in err


@pytest.mark.slow
def test_overrides_are_applied_checked_and_recorded(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, study())
    argv = ["study.yaml", "model.dim=8", "seeds=2", "grid.model.mixer=[identity]", "run.executor=debug",
            "recipe.epochs=1", "data.train_limit=64"]
    assert run_study(argv) == 0, capsys.readouterr().err
    recorded = yaml.safe_load((workdir / "results" / "s" / "study.yaml").read_text())
    assert recorded["overrides"] == argv[1:]
    assert recorded["base"]["model"]["dim"] == 8 and recorded["seeds"] == [0, 1]
    assert [c["params"]["model.mixer"] for c in recorded["cells"]] == ["identity", "identity"]


def test_slurm_without_a_cluster_fails_before_any_write(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir = workdir / "bin"  # python only: no sinfo, no sbatch
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    write(workdir, study(run={"executor": "slurm"}))
    before = tree(workdir)
    assert run_study(["study.yaml"]) == 2
    err = capsys.readouterr().err
    assert "study.yaml.run.executor" in err and "sinfo" in err and "Traceback" not in err
    assert tree(workdir) == before


SUBPROCESS_CASES = ["study-is-folder", "utf16-study", "heads-negative", "cuda-without-gpu", "train-out-is-file",
                    "bench-batch-zero", "summary-patch", "report-missing"]
ENTRY = {"run-study": "runner.cli", "mixer-train": "harness.cli", "mixer-bench": "harness.throughput",
         "mixer-summary": "mixers.summary", "study-report": "analysis"}


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_mistake_in_a_real_process(name: str, tmp_path: Path) -> None:
    _, command, files, argv, code, needles = next(c for c in CASES if c[0] == name)
    write(tmp_path, files)
    before = tree(tmp_path)
    env = {**os.environ, "TOKENMIX_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("TOKENMIX_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", ENTRY[command], *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert all(n in done.stderr for n in needles), done.stderr
    usage = done.stderr.split(f"{command}:")[0]  # argparse's usage lines come before its message
    assert not usage.strip() or usage.startswith("usage:")
    assert 1 <= done.stderr.count(f"{command}:") <= 2  # one or two lines of ours
    assert tree(tmp_path) == before


def test_debug_shows_the_traceback(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, study(base__model__dim=-1))
    with pytest.raises(Exception, match="base.model.dim"):
        run_study(["study.yaml", "--debug"])


def test_a_rebuilt_report_replaces_exactly_the_files_it_wrote(tmp_path: Path) -> None:
    folder = write_study(tmp_path, mixers=("dwconv", "identity"), patch_sizes=(1, 2), seeds=(0, 1),
                         report={"control": {"model.mixer": "dwconv"}})
    build_report(folder, figures=False, echo=None)
    first = set(json.loads((folder / MANIFEST).read_text()))
    assert {"tables/significance.md", "tables/significance.tex", "report.md", "summary.csv"} <= first
    assert all((folder / name).is_file() for name in first)
    (folder / "notes.md").write_text("mine")  # not the report's: left alone
    study = yaml.safe_load((folder / "study.yaml").read_text())
    study["report"] = {}
    (folder / "study.yaml").write_text(yaml.safe_dump(study))
    build_report(folder, figures=False, echo=None)
    second = set(json.loads((folder / MANIFEST).read_text()))
    assert not (folder / "tables" / "significance.md").exists() and "tables/significance.md" not in second
    assert all((folder / name).is_file() for name in second) and (folder / "notes.md").read_text() == "mine"


def test_dry_run_never_downloads_nor_creates_data_folders(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir, study(base__data={"dataset": "cifar10", "root": "data"}))
    before = tree(workdir)
    assert run_study(["study.yaml", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "cifar10 is not in" in err and "2 would be submitted" in out
    assert tree(workdir) == before and not (workdir / "data").exists()


def test_yaml_is_read_by_the_1_2_core_schema() -> None:
    from harness.yamlio import loads
    data = loads("a: no\nb: off\nc: 2:00:00\nd: 1e-3\ne: true\nf: 0x10\ng: 12\nh: .inf\ni: yes\n", "t.yaml")
    assert data == {"a": "no", "b": "off", "c": "2:00:00", "d": 0.001, "e": True, "f": 16, "g": 12,
                    "h": float("inf"), "i": "yes"}

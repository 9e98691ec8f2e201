"""Read a study's result files into one tidy DataFrame: a row per planned run, its config, state and metrics.

No file is trusted to exist or to parse. A run's problems become its `status` and `reason` (an unreadable
result.json is status "unreadable"), so that every planned run has a row and none is silently dropped.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

STUDY_FILE = "study.yaml"
RUNS_DIR = "runs"

# The ledger's statuses (state.json) of a run on its way or resumable: its results are still to come. Spelled out
# rather than imported from harness/status.py: `analysis` imports nothing of the toolkit (a results folder alone).
ACTIVE = ("submitting", "queued", "running", "interrupted")

RESULT_METRICS = ["train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "test_loss", "test_top1",
                  "test_top5", "selected_epoch", "val_top1_selected", "test_top1_selected", "test_top5_selected",
                  "epochs"]
DATA_KEYS = ["train_size", "val_size", "test_size", "val_fraction", "data_seed"]  # result.json `data`
SETTING_FIELDS = ["layout", "precision", "compiled", "batch_size"]  # of a throughput measurement
ENV_KEYS = ["device", "device_name", "torch", "cuda", "python", "hostname", "cpu_count"]

RUN_COLUMNS = ["run_id", "status", "reason", "attempts", "last_epoch", "diverged_epoch", "job_ids", "updated",
               "ignored", "stale"]
METRIC_COLUMNS = [*RESULT_METRICS, "params", "flops", "infer_img_s", "train_img_s", "peak_mem_bytes", "mem_kind",
                  "wall_s", "train_s"]
SETTING_COLUMNS = [f"{mode}_{field}" for mode in ("infer", "train") for field in SETTING_FIELDS]
ENV_COLUMNS = [*DATA_KEYS, *ENV_KEYS, "commit", "dirty", "source", "finished_at"]
CURVE_COLUMNS = ["epoch", "train_top1", "train_loss", "val_top1", "val_top5", "val_loss", "test_top1", "test_top5",
                 "test_loss"]

# libyaml's loader when present: a 1,000-cell study.yaml takes seconds with the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StudyError(Exception):
    """A folder that cannot be reported on: no readable study.yaml, or one without the contract's fields."""


class NotApplicable:
    """The value of an axis that a cell's model does not use (study.yaml lists the axis in the cell's `ignored`):
    printed "n/a", one value of its own, never equal to a real one (None stays "none": a real null setting)."""

    _instance: NotApplicable | None = None

    def __new__(cls) -> NotApplicable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "n/a"

    def __reduce__(self) -> str:
        return "NA"  # copies and pickles stay the one instance


NA = NotApplicable()


@dataclass(frozen=True)
class Study:
    dir: Path
    name: str
    description: str
    axes: list[str]                 # dotted config keys in grid order; the seed is not an axis
    seeds: list[int]
    base: dict[str, Any]            # the resolved base run config
    report: dict[str, Any]          # the study's `report` section, possibly empty
    cells: list[dict[str, Any]]     # {"run_id", "params": {axis or "seed": value}, "ignored": [axis, ...]}
    code: dict[str, Any]            # of the latest submission: {"commit", "dirty", "source"}
    select: dict[str, Any]          # {"metric": val_top1, "over": [axis, ...]}, or empty
    match: dict[str, Any]           # {"params" | "flops": target, "solve": axis}, or empty

    @property
    def file(self) -> Path:
        return self.dir / STUDY_FILE

    def values(self, axis: str) -> list[Any]:
        """The distinct values of an axis over the planned cells, in grid order (n/a ones left out)."""
        return list(dict.fromkeys(cell["params"].get(axis) for cell in self.cells
                                  if axis not in (cell.get("ignored") or [])))


def load_study(study_dir: Path) -> Study:
    path = Path(study_dir) / STUDY_FILE
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except FileNotFoundError:
        raise StudyError(f"{path} not found: is {study_dir} a study's results folder?") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise StudyError(f"{path} is unreadable: {e}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: expected a mapping, got {type(raw).__name__}")
    cells = raw.get("cells") or []
    if not isinstance(cells, list) or not cells:
        raise StudyError(f"{path}: `cells` lists no planned runs; the study runner writes one per run")
    for i, cell in enumerate(cells):
        if not (isinstance(cell, dict) and isinstance(cell.get("run_id"), str)
                and isinstance(cell.get("params"), dict) and isinstance(cell.get("ignored") or [], list)):
            raise StudyError(f"{path}: cells[{i}] needs a run_id, a params mapping and optionally an `ignored` "
                             f"list, got {cell!r}")
    sections = {key: raw.get(key) or {} for key in ("report", "code", "select", "match")}
    for key, value in sections.items():
        if not isinstance(value, dict):
            raise StudyError(f"{path}: `{key}` must be a mapping, got {type(value).__name__}")
    if raw.get("solve") and "solve" not in sections["match"]:  # `solve` may stand beside `match` or inside it
        sections["match"] = {**sections["match"], "solve": raw["solve"]}
    return Study(
        dir=Path(study_dir),
        name=str(raw.get("name") or Path(study_dir).name),
        description=str(raw.get("description") or ""),
        axes=[str(a) for a in raw.get("axes") or []],
        seeds=list(raw.get("seeds") or []),
        base=raw.get("base") or {},
        cells=cells,
        **sections,
    )


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists become JSON text so that every value can be grouped on and written."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = scalar(value)
    return flat


def scalar(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, tuple, dict)) else value


def read_runs(study: Study) -> pd.DataFrame:
    """The tidy table: one row per planned run, columns axes, seed, the rest of the config, run state, metrics, env.

    An axis a cell ignores holds NA. `stale` is True for a finished run whose code (`code.source`, the hash of the
    toolkit's source) differs from the study's latest submission, or is unknown while the study's is known.
    """
    rows = [_run_row(study, cell) for cell in study.cells]
    frame = pd.DataFrame(rows)
    known = set(RUN_COLUMNS + METRIC_COLUMNS + SETTING_COLUMNS + ENV_COLUMNS)
    leading = [*study.axes, "seed"]
    config = sorted(c for c in frame.columns if c not in known and c not in leading)
    return frame.reindex(columns=[*leading, *config, *RUN_COLUMNS, *METRIC_COLUMNS, *SETTING_COLUMNS, *ENV_COLUMNS])


def stray_runs(study: Study) -> list[str]:
    """Run folders the study's current grid does not plan (left from an earlier version of the study file)."""
    planned = {cell["run_id"] for cell in study.cells}
    try:
        with os.scandir(study.dir / RUNS_DIR) as entries:
            return sorted(e.name for e in entries if e.is_dir() and e.name not in planned)
    except FileNotFoundError:
        return []


def read_curves(study: Study, runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per-epoch metrics of every run that has any (running ones included), with the runs' axes, seed and status.

    Returns the curves and the problems met: a line that is not JSON is skipped and reported, except a last line
    without its newline, which is an epoch being appended right now.
    """
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for run_id in runs["run_id"]:
        path = study.dir / RUNS_DIR / run_id / "metrics.jsonl"
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{run_id}: metrics.jsonl is unreadable: {e}")
            continue
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records.append({"run_id": run_id, **{k: _number(record.get(k)) for k in CURVE_COLUMNS}})
            except (json.JSONDecodeError, AttributeError) as e:
                if number < len(lines):  # a complete line (a newline follows it), so not one being written
                    problems.append(f"{run_id}: metrics.jsonl line {number} skipped: {e}")
    curves = pd.DataFrame(records, columns=["run_id", *CURVE_COLUMNS])
    keys = runs[["run_id", *study.axes, "seed", "status"]]
    return curves.merge(keys, on="run_id", how="left"), problems


def read_erf(study: Study, runs: pd.DataFrame) -> tuple[list[dict[str, Any]], list[str]]:
    """The effective receptive fields of every finished run that has an erf.npz, averaged over the seeds of each
    cell: [{axis: value ..., "init": (H, W), "trained": (H, W), "n": seeds}], and the problems met (files that do
    not load, or whose maps do not match their cell's shape, are left out and reported)."""
    cells: dict[tuple, dict[str, Any]] = {}
    problems: list[str] = []
    done = runs[runs["status"] == "done"]
    for row in done[["run_id", *study.axes]].to_dict("records"):
        path = study.dir / RUNS_DIR / row["run_id"] / "erf.npz"
        if not path.exists():
            continue
        try:
            with np.load(path) as npz:
                maps = {k: np.asarray(npz[k], dtype=np.float64) for k in ("init", "trained")}
        except (OSError, ValueError, KeyError, EOFError) as e:
            problems.append(f"{row['run_id']}: erf.npz is unreadable: {type(e).__name__}: {e}")
            continue
        key = tuple(str(row[a]) for a in study.axes)
        cell = cells.setdefault(key, {**{a: row[a] for a in study.axes}, "init": 0.0, "trained": 0.0, "n": 0})
        shapes = {m.shape for m in maps.values()} | ({cell["init"].shape} if cell["n"] else set())
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            problems.append(f"{row['run_id']}: erf.npz maps of shapes {sorted(shapes)}; expected one (H, W) per cell")
            continue
        cell.update(init=cell["init"] + maps["init"], trained=cell["trained"] + maps["trained"], n=cell["n"] + 1)
    return [{**c, "init": c["init"] / c["n"], "trained": c["trained"] / c["n"]} for c in cells.values()], problems


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(content, None), (None, None) when the file does not exist, or (None, why) when it cannot be used."""
    try:
        content = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError and UnicodeDecodeError
        return None, f"{path.name}: {type(e).__name__}: {e}"
    if not isinstance(content, dict):
        return None, f"{path.name}: expected a JSON object, got {type(content).__name__}"
    return content, None


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _status(result: dict[str, Any] | None, result_error: str | None, state: dict[str, Any] | None,
            state_error: str | None) -> tuple[str, str | None]:
    """(status, reason): result.json's when there is one, else state.json's, else "missing"."""
    if result_error:
        return "unreadable", result_error
    if result is not None:
        status, reason = result.get("status"), result.get("reason")
        if not isinstance(status, str):
            return "unreadable", "result.json: no status"
        if status != "done" and _get(state, "status") in (*ACTIVE, "new"):  # resubmitted: the old result is old
            return state["status"], f"requeued after {status}" + (f": {reason}" if reason else "")
        return status, reason
    if state_error:
        return "unreadable", state_error
    if state is not None:
        status = state.get("status")
        return (status, state.get("error")) if isinstance(status, str) else ("unreadable", "state.json: no status")
    return "missing", None


def _run_row(study: Study, cell: dict[str, Any]) -> dict[str, Any]:
    run_id, params = cell["run_id"], cell["params"]
    run_dir = study.dir / RUNS_DIR / run_id
    result, result_error = _read_json(run_dir / "result.json")
    state, state_error = _read_json(run_dir / "state.json")
    if result is not None:
        config, config_error = result.get("config"), None
    else:
        config_file, config_error = _read_json(run_dir / "config.json")
        config = _get(config_file, "config")

    status, reason = _status(result, result_error, state, state_error)
    reason = "; ".join(r for r in (reason, config_error) if r) or None

    ignored = cell.get("ignored") or []
    row: dict[str, Any] = flatten(config if isinstance(config, dict) else study.base)
    row.update({key: NA if key in ignored else scalar(value) for key, value in params.items()})
    source = _get(result, "code", "source")
    row.update(
        run_id=run_id, status=status, reason=reason, ignored=",".join(ignored) or None,
        stale=status == "done" and bool(study.code.get("source")) and source != study.code["source"],
        attempts=_number(_get(state, "attempts")), last_epoch=_number(_get(state, "last_epoch")),
        diverged_epoch=_number(_get(result, "diverged_epoch")),
        job_ids=",".join(map(str, _get(state, "job_ids") or [])) or None, updated=_get(state, "updated"),
    )
    if result is None:
        return row
    metrics = result.get("metrics")
    row.update({key: _number(_get(metrics, key)) for key in RESULT_METRICS})
    row.update(
        params=_number(_get(result, "model", "params")), flops=_number(_get(result, "model", "flops")),
        infer_img_s=_number(_get(result, "throughput", "infer_img_s")),
        train_img_s=_number(_get(result, "throughput", "train_img_s")),
        peak_mem_bytes=_number(_get(result, "memory", "peak_bytes")), mem_kind=_get(result, "memory", "kind"),
        wall_s=_number(_get(result, "timing", "wall_s")), train_s=_number(_get(result, "timing", "train_s")),
        finished_at=result.get("finished_at"),
        commit=_get(result, "code", "commit"), dirty=_get(result, "code", "dirty"), source=source,
    )
    row.update({key: _get(result, "data", key) for key in DATA_KEYS})
    for mode in ("infer", "train"):
        setting = _get(result, "throughput", f"{mode}_setting")
        row.update({f"{mode}_{field}": scalar(_get(setting, field)) for field in SETTING_FIELDS})
    row.update({key: scalar(_get(result, "env", key)) for key in ENV_KEYS})
    return row

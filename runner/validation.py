"""Every cell of a study checked before anything runs: its data (files present, geometry) and its model (built on
the meta device). Model checks need torch, which takes seconds to import, so a study whose distinct models already
passed with the same source code is not checked again: the verdict is cached under the toolkit's cache folder,
keyed by the code and the models. `--dry-run` and re-runs of a study then stay fast."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from harness.datasets import Geometry, cache_dir
from harness.records import PACKAGE_ROOT, atomic_write_json
from harness.schema import to_dict
from harness.validate import check_data

from .spec import Cell, StudyError, StudySpec, cell_label


def _source_fingerprint(imports: list[str]) -> str:
    """Changes whenever the code that builds models changes (the packages, or a study's plugin modules)."""
    files = [p for pkg in ("mixers", "harness") for p in sorted((PACKAGE_ROOT / pkg).glob("*.py"))]
    for module in imports:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            files.append(Path(spec.origin))
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def load_plugins(spec: StudySpec, where: str) -> None:
    """Import the study's plugin modules; they are looked up beside the study file first, then on sys.path."""
    if spec.folder not in sys.path:
        sys.path.insert(0, spec.folder)
    for i, module in enumerate(spec.imports):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise StudyError(f"{where}.imports[{i}]: cannot import {module!r} ({e})") from None


def check_design(spec: StudySpec, cells: list[Cell], where: str) -> None:
    """The study's `report` and `select` sections checked as the report will read them (`analysis.check_report`:
    axes that exist, a control level among its axis's values, a validation metric to select on), so that a typo
    fails before anything trains."""
    from analysis import SpecError, check_report
    values = {axis: list({json.dumps(c.params[axis], sort_keys=True): c.params[axis] for c in cells
                          if axis not in c.ignored}.values()) for axis in spec.axes}  # distinct (dicts included)
    try:
        check_report(to_dict(spec.report), values, to_dict(spec.select) if spec.select else None, where)
    except SpecError as e:
        raise StudyError(str(e)) from None


def validate_cells(spec: StudySpec, cells: list[Cell], where: str) -> None:
    """Raise StudyError naming the first bad cell (or report setting); returns quietly when every cell can run."""
    check_design(spec, cells, where)
    load_plugins(spec, where)
    geometries: dict[str, Geometry] = {}
    models: dict[str, tuple[Cell, Geometry]] = {}
    for cell in cells:
        config = cell.config.to_dict()
        data_key = json.dumps(config["data"], sort_keys=True)
        if data_key not in geometries:
            geometries[data_key] = check_data(cell.config, cell_label(where, cell.params))
        geometry = geometries[data_key]
        models.setdefault(json.dumps([config["model"], geometry.__dict__], sort_keys=True), (cell, geometry))
    key = hashlib.sha256((_source_fingerprint(spec.imports) + "".join(sorted(models))).encode()).hexdigest()
    verdict = cache_dir() / "validated" / f"{key[:32]}.json"
    if verdict.exists():
        return
    from harness.validate import check_model  # imports torch: only when this code and these models are new
    for cell, geometry in models.values():
        check_model(cell.config, geometry, cell_label(where, cell.params))
    atomic_write_json(verdict, {"models": len(models)})

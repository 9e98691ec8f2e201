"""Every cell of a study checked before anything runs: its data (files present, geometry) and its model (built on
the meta device). Model checks need torch, which takes seconds to import, so a study whose distinct models already
passed with the same source code is not checked again: the verdict is cached under the toolkit's cache folder,
keyed by the code, the installed torch and timm versions and the models. `--dry-run` and re-runs of a study then stay
fast; the first check of new models (or of new code, or a new torch or timm) imports torch."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json

from harness.datasets import Geometry, cache_dir
from harness.plugins import import_plugins, locate_plugins
from harness.records import PACKAGE_ROOT, atomic_write_json
from harness.validate import check_data

from .spec import Cell, StudyError, StudySpec, cell_label


def _installed(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _source_fingerprint(imports: list[str], folder: str) -> str:
    """Changes whenever the code that builds models changes: the packages, a study's plugin modules, or the installed
    torch and timm (read from their package metadata, which does not import them)."""
    files = [p for pkg in ("mixers", "harness") for p in sorted((PACKAGE_ROOT / pkg).glob("*.py"))]
    digest = hashlib.sha256(f"torch {_installed('torch')}, timm {_installed('timm')}".encode())
    for path in [*files, *locate_plugins(imports, [folder])]:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def load_plugins(spec: StudySpec, where: str) -> None:
    """Import the study's plugin modules; they are looked up on sys.path, then beside the study file."""
    for i, module in enumerate(spec.imports):
        try:
            import_plugins([module], [spec.folder])
        except ImportError as e:
            raise StudyError(f"{where}.imports[{i}]: cannot import {module!r} ({e})") from None


def validate_cells(spec: StudySpec, cells: list[Cell], where: str) -> None:
    """Raise StudyError naming the first bad cell; returns quietly when every cell can run."""
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
    key = hashlib.sha256((_source_fingerprint(spec.imports, spec.folder) + "".join(sorted(models))).encode()).hexdigest()
    verdict = cache_dir() / "validated" / f"{key[:32]}.json"
    if verdict.exists():
        return
    from harness.validate import check_model  # imports torch: only when this code and these models are new
    for cell, geometry in models.values():
        check_model(cell.config, geometry, cell_label(where, cell.params))
    atomic_write_json(verdict, {"models": len(models)})

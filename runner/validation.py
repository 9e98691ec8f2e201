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
from harness.schema import to_dict
from harness.validate import check_batch, check_data

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
        except SyntaxError as e:
            raise StudyError(f"{where}.imports[{i}]: {module!r} has a syntax error: {e.filename}, line {e.lineno}: "
                             f"{e.msg}") from None
        except Exception as e:  # a plugin that fails as it registers (a name taken, a bad argument): its own words
            raise StudyError(f"{where}.imports[{i}]: importing {module!r} failed: {type(e).__name__}: {e}") from None


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


def validate_cells(spec: StudySpec, cells: list[Cell], where: str, here: bool = False, download: bool = True) -> None:
    """Raise StudyError naming the first bad cell; returns quietly when every cell can run. `here`: the cells run on
    this machine, so their devices must exist and their models fit its memory; `download=False` (a dry run): data
    that a run would download is not fetched."""
    check_design(spec, cells, where)
    load_plugins(spec, where)
    geometries: dict[str, Geometry] = {}
    models: dict[str, tuple[Cell, Geometry]] = {}
    for cell in cells:
        config = cell.config.to_dict()
        data_key = json.dumps(config["data"], sort_keys=True)
        if data_key not in geometries:
            geometries[data_key] = check_data(cell.config, cell_label(where, cell.params), download)
        geometry = geometries[data_key]
        models.setdefault(json.dumps([config["model"], geometry.__dict__], sort_keys=True), (cell, geometry))
        check_batch(cell.config, cell_label(where, cell.params))
    here_key = device_memory_key() if here else ""
    fingerprint = _source_fingerprint(spec.imports, spec.folder) + here_key + "".join(sorted(models))
    key = hashlib.sha256(fingerprint.encode()).hexdigest()
    verdict = cache_dir() / "validated" / f"{key[:32]}.json"
    if verdict.exists():
        return
    from harness.validate import check_device, check_memory, check_model  # torch: only for new code and models
    for cell, geometry in models.values():
        label = cell_label(where, cell.params)
        params = check_model(cell.config, geometry, label)
        if here:
            check_device(cell.config, label)
            check_memory(cell.config, geometry, params, label)
    atomic_write_json(verdict, {"models": len(models)})


def device_memory_key() -> str:
    """This machine's devices, for the verdict cache of checks made `here` (torch-free: /proc and nvidia's files)."""
    import os
    gpus = sorted(os.listdir("/proc/driver/nvidia/gpus")) if os.path.isdir("/proc/driver/nvidia/gpus") else []
    return f"here:{os.sysconf('SC_PHYS_PAGES')}:{','.join(gpus)}"

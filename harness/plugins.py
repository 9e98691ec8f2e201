"""A study's plugin modules (`imports:` in the study file): found beside the study file, and remembered, because their
source is part of the code that decides a result (`records.source_hash` includes every plugin located here)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

_LOCATED: dict[str, Path] = {}


def locate_plugins(modules: list[str], folders: list[str]) -> list[Path]:
    """The source files of the plugin modules, without running them; a module that cannot be found is left to
    import_plugins to report. Folders go after the installed packages, so a plugin never shadows one."""
    for folder in folders:
        if folder not in sys.path:
            sys.path.append(folder)
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a parent package that is missing, or an empty name
            continue
        if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
            _LOCATED[module] = Path(spec.origin).resolve()
    return [_LOCATED[m] for m in modules if m in _LOCATED]


def import_plugins(modules: list[str], folders: list[str]) -> None:
    """Import the plugin modules (they register mixers, blocks or datasets); ImportError goes to the caller."""
    locate_plugins(modules, folders)
    for module in modules:
        importlib.import_module(module)


def plugin_files() -> tuple[str, ...]:
    """Every plugin file located in this process, in a stable order."""
    return tuple(str(path) for _, path in sorted(_LOCATED.items()))

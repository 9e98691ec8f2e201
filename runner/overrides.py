"""Command-line overrides of a study file, the way researchers use Hydra:

    run-study studies/quickstart.yaml model.dim=512 seeds=5 run.executor=local grid.model.mixer=[dwconv,pool]

Each item is `key=value`, the value read as YAML by the same strict rules as files (`harness.yamlio`). The key is
a study-file key (`name`, `seeds`, `run.parallel`, `report.table.metric`), an axis of the grid or a zip group written
after `grid.` (`grid.model.patch_size=[1,2]`: the axis name keeps its dots), or a run-config key path, which sets the
study's base (`model.dim=512` is `base.model.dim`). Overrides are applied to the file's mapping before it is validated,
so they get exactly the file's checks; the study records them in study.yaml (`overrides`).
"""
from __future__ import annotations

import copy
from typing import Any

from harness.config import RunConfig
from harness.schema import ConfigError, did_you_mean, set_dotted
from harness.yamlio import scalar

RUN_SECTIONS = [name for name in RunConfig.__dataclass_fields__ if name != "seed"]  # the seed comes from `seeds`
STUDY_KEYS = ["name", "description", "base", "grid", "zip", "include", "exclude", "seeds", "run", "report", "imports"]
WHOLE_VALUE_KEYS = ("name", "description", "zip", "include", "exclude", "seeds", "imports")


def split(items: list[str], where: str) -> list[tuple[str, Any]]:
    """["model.dim=512"] -> [("model.dim", 512)]; an item without `=` is a mistake named as such."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: argument {item!r} is not key=value (e.g. model.dim=512, seeds=3)")
        out.append((key, scalar(raw, f"override {key}")))
    return out


def apply_overrides(raw: dict[str, Any], items: list[str], where: str) -> dict[str, Any]:
    """The study file's mapping `raw` with `items` applied (a copy); unknown keys get the closest valid name."""
    data = copy.deepcopy(raw)
    for key, value in split(items, where):
        head, _, rest = key.partition(".")
        if head == "grid" and rest:
            data["grid"] = {**(data.get("grid") or {}), rest: value}
        elif head in WHOLE_VALUE_KEYS and not rest:
            data[head] = value
        elif head in ("run", "report", "base") and rest:
            data[head] = data.get(head) or {}
            set_dotted(data[head], rest, value)
        elif head in RUN_SECTIONS and rest:
            axes = set(data.get("grid") or {}) | {k for group in data.get("zip") or [] for k in group}
            if key in axes:
                raise ConfigError(f"override {key}: a grid axis of {where}; set its values with grid.{key}=[...]")
            base = data["base"] = data.get("base") or {}
            if isinstance(base.get("recipe"), str) and head == "recipe":
                base["recipe"] = {"name": base["recipe"]}  # a named recipe, so that recipe.<field> overrides it
            set_dotted(base, key, value)
        else:
            known = STUDY_KEYS + RUN_SECTIONS
            raise ConfigError(f"override {key}: not a study key{did_you_mean(head, known)}; valid: a run-config key "
                              f"path ({', '.join(s + '.*' for s in RUN_SECTIONS)}), grid.<axis>, run.*, report.*, "
                              f"or one of {', '.join(WHOLE_VALUE_KEYS)}")
    return data


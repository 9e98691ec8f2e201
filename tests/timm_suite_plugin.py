"""pytest plugin for running timm's own `tests/test_models.py` (from the sdist of the installed timm) on the zoo.

It only registers the toolkit's variants with timm (before test_models.py lists its models) and selects them: every
collected test whose `model_name` is not one of SELECTED, and every test without a `model_name`, is deselected. It
changes no assertion. `tests/test_timm_suite.py` runs it: `pytest -p timm_suite_plugin .../tests/test_models.py`.
"""
from __future__ import annotations

import pytest

from mixers.zoo import VARIANTS

# every small variant (all mixers x both blocks, CIFAR-shaped) and the three that equal timm's ConvMixers
SELECTED = sorted(name for name, v in VARIANTS.items()
                  if v["dim"] == 256 or (v["mixer"], v["block"]) == ("dwconv", "convmixer"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = set(SELECTED)
    keep = [item for item in items
            if hasattr(item, "callspec") and item.callspec.params.get("model_name") in selected]
    kept = set(map(id, keep))
    config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept])
    items[:] = keep

"""Matched size (`match: {params: 1.0e6, solve: model.dim}`): each cell's width or depth solved so that its
parameters or forward FLOPs land within 3% of the target.

Models are counted on the meta device (`mixers.summary`: no memory, milliseconds each). A width is searched on the
coarsest grid that reaches the target (multiples of 8, then 4, 2, 1), and a candidate the model builder refuses
(a width the attention heads do not divide, say) is stepped over, so every solved width builds. Solutions are cached
under the toolkit's cache folder by the code of `mixers/` and the cell's config, so `--dry-run` and `--status` of a
matched study import torch once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from harness.config import RunConfig, resolve
from harness.datasets import Geometry, cache_dir
from harness.identity import mixers_digest
from harness.records import atomic_write_json

from .spec import MatchSpec, StudyError

TOLERANCE = 0.03
GRANULARITY = {"model.dim": (8, 4, 2, 1), "model.depth": (1,)}
LIMIT = {"model.dim": 1 << 14, "model.depth": 1 << 12}
STEP_OVER = 64  # refused candidates stepped over before a width counts as impossible


class MatchSolver:
    def __init__(self, match: MatchSpec):
        self.match = match
        self.field = match.solve.split(".")[1]
        self._solved: dict[str, tuple[int, int]] = {}

    def solve(self, config: RunConfig, label: str) -> tuple[RunConfig, dict[str, Any]]:
        """The config with its solved dimension, and {solved key: value, params|flops: achieved}."""
        key = json.dumps({**config.to_dict(), "seed": None, "match": dataclasses.asdict(self.match)}, sort_keys=True)
        if key not in self._solved:
            path = cache_dir() / "matched" / f"{hashlib.sha256((mixers_digest() + key).encode()).hexdigest()[:32]}.json"
            if path.exists():
                self._solved[key] = tuple(json.loads(path.read_text()))
            else:
                self._solved[key] = self._search(config, label)
                atomic_write_json(path, list(self._solved[key]))
        value, achieved = self._solved[key]
        return resolve(config.to_dict(), {self.match.solve: value}, path=label), {self.match.solve: value,
                                                                                  self.match.kind: achieved}

    def _search(self, config: RunConfig, label: str) -> tuple[int, int]:
        from harness.validate import check_data
        geometry = check_data(config, label)
        target = self.match.target
        nearest: tuple[int, int] | None = None
        for step in GRANULARITY[self.match.solve]:
            found = self._closest(config, geometry, step)
            if found is None:
                continue
            if nearest is None or abs(found[1] - target) < abs(nearest[1] - target):
                nearest = found
            if abs(found[1] / target - 1) <= TOLERANCE:
                return found
        what = f"{self.match.kind} {target:.4g}"
        if nearest is None:
            raise StudyError(f"{label}.match: no {self.match.solve} up to {LIMIT[self.match.solve]} builds a model")
        raise StudyError(f"{label}.match: cannot land within {TOLERANCE:.0%} of {what} by solving {self.match.solve}: "
                         f"the nearest is {self.match.solve}={nearest[0]} with {nearest[1]:.4g} "
                         f"({100 * (nearest[1] / target - 1):+.1f}%); pick another target or solve the other dimension")

    def _closest(self, config: RunConfig, geometry: Geometry, step: int) -> tuple[int, int] | None:
        """(value, count) of the multiple of `step` whose count is nearest the target (counts grow with the value)."""
        target, limit = self.match.target, LIMIT[self.match.solve]

        def first_valid(k: int, below: int) -> tuple[int, int] | None:  # the first buildable multiple in [k, below)
            for j in range(k, min(k + STEP_OVER, below)):
                n = self._count(config, geometry, j * step)
                if n is not None:
                    return j, n
            return None

        ceiling = limit // step + 1
        low = first_valid(1, ceiling)
        if low is None or low[1] >= target:
            return None if low is None else (low[0] * step, low[1])
        while True:  # double until the count reaches the target
            probe = first_valid(low[0] * 2, ceiling)
            if probe is None:
                return low[0] * step, low[1]
            if probe[1] >= target:
                high = probe
                break
            low = probe
        ceiling = high[0]
        while ceiling - low[0] > 1:  # low is below the target, high at or above it; between them, bisect
            mid = first_valid((low[0] + ceiling) // 2, ceiling)
            if mid is None:
                ceiling = (low[0] + ceiling) // 2
            elif mid[1] < target:
                low = mid
            else:
                high, ceiling = mid, mid[0]
        best = min((low, high), key=lambda c: abs(c[1] - target))
        return best[0] * step, best[1]

    def _count(self, config: RunConfig, geometry: Geometry, value: int) -> int | None:
        """The parameters or FLOPs of the cell's model at `value`; None if the builder refuses that value."""
        import torch

        from harness.train import build_model
        from mixers.summary import count_flops, count_params
        changes: dict[str, Any] = {self.field: value}
        trial = dataclasses.replace(config, model=dataclasses.replace(config.model, **changes))
        try:
            with torch.device("meta"):
                model = build_model(trial, geometry.channels, geometry.num_classes, geometry.image_size)
        except ValueError:
            return None
        if self.match.kind == "params":
            return count_params(model)
        return count_flops(model, (geometry.channels, geometry.image_size, geometry.image_size))

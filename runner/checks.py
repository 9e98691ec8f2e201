"""Checks of a study made before its cells are expanded: its size (a study of a million cells is refused at once, not
after minutes of resolving them) and include/exclude rules that change nothing (a typo in a value, usually)."""
from __future__ import annotations

import itertools
import math
import sys

from .spec import StudyError, StudySpec, _matches

CONFIRM_CELLS = 5_000     # larger studies need --yes
MAX_CELLS = 200_000       # the runner's ledger is one folder per cell; beyond this, split the study
MAX_SEED = 2 ** 32 - 1    # numpy's seeds


def grid_points(spec: StudySpec) -> int:
    """How many grid points (grid x zip, before exclude/include): a product, never enumerated."""
    return math.prod(len(v) for v in spec.grid.values()) * math.prod(len(next(iter(g.values()), [])) for g in spec.zip)


def check_size(spec: StudySpec, where: str, confirmed: bool) -> int:
    """The study's cell count (an upper bound: excluded cells counted); refuse it if too large or not confirmed."""
    for i, seed in enumerate(spec.seeds):
        if not 0 <= seed <= MAX_SEED:
            raise StudyError(f"{where}.seeds[{i}]: {seed} is not a valid seed; valid: 0 to {MAX_SEED}")
    points = grid_points(spec) + len(spec.include)
    cells = points * len(spec.seeds)
    size = f"{cells:,} cells ({points:,} grid points x {len(spec.seeds):,} seeds)"
    if cells > MAX_CELLS:
        raise StudyError(f"{where}: the study has {size}; the runner takes at most {MAX_CELLS:,}: split it into "
                         f"several studies or use fewer seeds")
    if cells > CONFIRM_CELLS and not confirmed:
        raise StudyError(f"{where}: the study has {size}, more than {CONFIRM_CELLS:,}; check its size and cost with "
                         f"--dry-run, then confirm with --yes")
    return cells


def warn_unused_rules(spec: StudySpec, where: str) -> list[str]:
    """A warning (printed, and returned) for every exclude rule that matches no grid point and every include rule
    that adds no cell; the study still runs."""
    if grid_points(spec) > MAX_CELLS:
        return []
    points = [dict(zip(spec.grid, values)) for values in itertools.product(*spec.grid.values())]
    for group in spec.zip:
        rows = [dict(zip(group, values)) for values in zip(*group.values())]
        points = [{**p, **r} for p in points for r in rows]
    warnings = [f"{where}.exclude[{i}]: {rule} matches no cell of the grid; it excludes nothing"
                for i, rule in enumerate(spec.exclude) if not any(_matches(p, rule) for p in points)]
    kept = [p for p in points if not any(_matches(p, rule) for rule in spec.exclude)]
    warnings += [f"{where}.include[{i}]: {rule} is already a cell of the grid; it adds nothing"
                 for i, rule in enumerate(spec.include) if rule in kept]
    for line in warnings:
        print(f"run-study: warning: {line}", file=sys.stderr)
    return warnings

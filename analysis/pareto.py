"""The Pareto front of cells on two objectives to maximise (accuracy and inference throughput)."""
from __future__ import annotations

import numpy as np


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where no other point is at least as good on both x and y and strictly better on one.

    Points with a missing coordinate are never on the front. Equal points are all on it (none dominates another).
    O(n^2) memory, which is fine for the few hundred cells a study has.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    valid = np.isfinite(x) & np.isfinite(y)
    xv, yv = x[valid], y[valid]
    # dominated[i, j]: point j dominates point i
    dominated = (xv[None, :] >= xv[:, None]) & (yv[None, :] >= yv[:, None]) & (
        (xv[None, :] > xv[:, None]) | (yv[None, :] > yv[:, None]))
    mask = np.zeros(len(x), dtype=bool)
    mask[valid] = ~dominated.any(axis=1)
    return mask

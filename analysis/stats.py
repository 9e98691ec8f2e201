"""Statistics over seeds: Student's t quantiles for the per-cell intervals, and the tests behind comparisons
(Welch's t-test with its interval, Holm's step-down adjustment, the seeds a difference would need).

`t_quantile` is kept here rather than taken from scipy: `import scipy.stats` costs about 0.6 s on a 2-core
machine, more than the rest of a tables-only build, and every build needs the per-cell intervals. The tests that
compare cells need scipy and import it when a report asks for them (a control, findings over several seeds).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

ALPHA = 0.05    # significance level of every test the report makes
POWER = 0.8     # of the seeds-needed estimate


def t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` degrees of freedom (Abramowitz & Stegun 26.7.3 and 26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        term = total = math.cos(theta)
        for j in range(1, df - 2, 2):  # the series' powers of cos(theta) run 1, 3, ..., df - 2
            term *= cos2 * (j + 1) / (j + 2)
            total += term
        return 2 / math.pi * (theta + (math.sin(theta) * total if df > 1 else 0.0))
    term = total = 1.0
    for j in range(0, df - 3, 2):  # powers 0, 2, ..., df - 2
        term *= cos2 * (j + 1) / (j + 2)
        total += term
    return math.sin(theta) * total


@lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The `p` quantile (p > 0.5) of Student's t with `df` >= 1 degrees of freedom, by bisection on the exact CDF."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    mass = 2 * p - 1  # P(|T| <= t) at the quantile
    lo, hi = 0.0, 1.0
    while t_two_sided_mass(hi, df) < mass:
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_mass(mid, df) < mass else (lo, mid)
        if hi - lo <= 1e-13 * hi:
            break
    return (lo + hi) / 2



def scipy_stats() -> Any:
    import scipy.stats  # imported only where a report compares cells: it costs more than a tables-only build
    return scipy.stats


@dataclass(frozen=True)
class Welch:
    delta: float    # mean(a) - mean(b)
    low: float      # its 95% interval, Welch-Satterthwaite degrees of freedom
    high: float
    p: float        # two-sided Welch t-test; NaN when it cannot be tested (fewer than 2 values, or no spread)


def welch(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
          confidence: float = 0.95) -> Welch:
    """Welch's t-test and interval for mean(a) - mean(b) from each side's mean, std (ddof=1) and count."""
    delta = mean_a - mean_b
    if n_a < 2 or n_b < 2 or not (math.isfinite(std_a) and math.isfinite(std_b)):
        return Welch(delta, math.nan, math.nan, math.nan)
    va, vb = std_a ** 2 / n_a, std_b ** 2 / n_b
    if va + vb == 0:
        return Welch(delta, delta, delta, math.nan)
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    se = math.sqrt(va + vb)
    t = scipy_stats().t
    half = t.ppf(0.5 + confidence / 2, df) * se
    return Welch(delta, delta - half, delta + half, float(2 * t.sf(abs(delta) / se, df)))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values over the finite ones (NaNs stay NaN and do not count as tests)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order])) if m else []
    out[order] = adjusted
    return out


def seeds_needed(delta: float, std_a: float, std_b: float, alpha: float = ALPHA, power: float = POWER,
                 limit: int = 1000) -> float:
    """Seeds per side for Welch's test at `alpha` to detect `delta` with `power`, if the spread is as observed.

    NaN when the spread is unknown (a side with one seed) or zero; inf when delta is 0 or more than `limit` seeds
    would be needed. The power is exact (noncentral t with Welch's degrees of freedom) for equal seed counts.
    """
    var = np.array([std_a, std_b], dtype=float) ** 2
    if not np.isfinite(var).all() or var.sum() == 0:
        return math.nan
    if delta == 0:
        return math.inf
    stats = scipy_stats()
    n = np.arange(2, limit + 1, dtype=float)
    df = (n - 1) * var.sum() ** 2 / (var ** 2).sum()
    ncp = abs(delta) / np.sqrt(var.sum() / n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    reached = stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp) >= power
    return float(n[np.argmax(reached)]) if reached.any() else math.inf

"""Student's t quantiles for confidence intervals, exact for the integer degrees of freedom that seed counts give.

Kept here rather than taken from scipy: `import scipy.stats` alone costs about 2 s, more than the whole tables
build is allowed.
"""
from __future__ import annotations

import math
from functools import lru_cache


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


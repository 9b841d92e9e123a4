"""Summary statistics for the report: mean with a Student-t confidence interval, Pearson
correlation (scipy.stats)."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats


class MeanCI(NamedTuple):
    mean: float
    half_width: float          # the interval is mean ± half_width

    @property
    def lo(self) -> float:
        return self.mean - self.half_width

    @property
    def hi(self) -> float:
        return self.mean + self.half_width


class PearsonResult(NamedTuple):
    r: float
    p: float


def mean_ci(x, level: float = 0.95) -> MeanCI:
    """Mean and half-width of the ``level`` confidence interval of the mean:
    ``t_{(1+level)/2, n−1} · s / √n``.

    Non-finite values are dropped.  ``n = 0`` → (NaN, NaN); ``n = 1`` → (x, NaN); zero spread →
    half-width 0.
    """
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a = np.asarray(x, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    n = a.size
    if n == 0:
        return MeanCI(float("nan"), float("nan"))
    mean = float(a.mean())
    if n == 1:
        return MeanCI(mean, float("nan"))
    sem = float(a.std(ddof=1)) / np.sqrt(n)
    return MeanCI(mean, float(stats.t.ppf(0.5 + level / 2.0, df=n - 1) * sem))


def pearson(x, y) -> PearsonResult:
    """Pearson ``(r, p)`` (two-sided, ``scipy.stats.pearsonr``) over the pairs where both values
    are finite.

    Fewer than 3 pairs, or a constant input, → (NaN, NaN).
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"x has {a.size} values, y {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return PearsonResult(float("nan"), float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.pearsonr(a, b)
    return PearsonResult(float(res.statistic), float(res.pvalue))

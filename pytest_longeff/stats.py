"""Summaries of repeated measurements: median, quartiles, mean and a 95 % CI that is what it says at small n.

Below :data:`T_INTERVAL_BELOW` positive values the interval is Student's t on the logarithms (exact for log-normal
noise at every n; a percentile bootstrap of the median from 3 values covers only about 75 %); from there on it is a
percentile bootstrap of the median. ``tests/unit/test_stats.py`` checks the coverage by simulation.

Pure Python on purpose: the inputs are a handful of repeats (n <= 100), and the plugin must not import numpy
in every pytest run of the environment.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_RESAMPLES = 2000
T_INTERVAL_BELOW = 20


@dataclass(frozen=True)
class Summary:
    """Location and spread of one measured quantity over repeats; all values in the quantity's own unit."""

    n: int
    """Number of values summarised."""
    median: float
    """Median (50th percentile, linear interpolation)."""
    q1: float
    """First quartile (25th percentile)."""
    q3: float
    """Third quartile (75th percentile)."""
    iqr: float
    """Interquartile range, ``q3 - q1``."""
    mean: float
    """Arithmetic mean."""
    ci95_low: float
    """Lower end of the 95 % confidence interval of the typical value (see :attr:`ci_method`)."""
    ci95_high: float
    """Upper end of the 95 % confidence interval of the typical value."""
    ci_method: str
    """How the interval was obtained, e.g. the bootstrap's resamples and seed, or "single sample"."""

    def to_dict(self) -> dict[str, object]:
        """Record fields: n, median, iqr, q1, q3, mean, ci95 as ``[low, high]``, ci_method."""
        return {
            "n": self.n,
            "median": self.median,
            "iqr": self.iqr,
            "q1": self.q1,
            "q3": self.q3,
            "mean": self.mean,
            "ci95": [self.ci95_low, self.ci95_high],
            "ci_method": self.ci_method,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 <= q <= 100) with linear interpolation between order statistics.

    Same definition as numpy's default ("linear"): position ``(n - 1) * q / 100`` in the sorted values.
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within [0, 100], got {q!r}")
    return _sorted_percentile(sorted(values), q)


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q / 100.0
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    low, high = ordered[below], ordered[above]
    value = low + (high - low) * (position - below)
    # Rounding can put the interpolated value a hair outside its bracket; keep order statistics ordered.
    return min(max(value, low), high)


def summarize(
    values: Sequence[float], *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES, t_below: int = T_INTERVAL_BELOW
) -> Summary | None:
    """Summary of ``values``, or None when there are none.

    The CI: for fewer than ``t_below`` (:data:`T_INTERVAL_BELOW`) positive values, Student's t on the logarithms (the interval of
    the geometric mean, which is the median of log-normal noise); else a percentile bootstrap of the median,
    ``resamples`` resamples with replacement drawn by a ``random.Random(seed)``, so the same values always give the
    same interval. With one value the interval collapses to it (and the gate does not use it).
    """
    if not values:
        return None
    if any(math.isnan(v) for v in values):
        raise ValueError("cannot summarise values containing NaN")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    median = _sorted_percentile(ordered, 50.0)
    q1 = _sorted_percentile(ordered, 25.0)
    q3 = _sorted_percentile(ordered, 75.0)
    mean = math.fsum(ordered) / n
    if n == 1:
        ci_low = ci_high = ordered[0]
        ci_method = "single sample"
    elif ordered[0] == ordered[-1]:
        # Every resample of a constant sequence has the same median; skip the work.
        ci_low = ci_high = median
        ci_method = "constant values"
    elif n < t_below and ordered[0] > 0:
        ci_low, ci_high = log_t_interval(ordered)
        # The reported figure is the median: the interval always holds it (wider, never narrower).
        ci_low, ci_high = min(ci_low, median), max(ci_high, median)
        ci_method = f"Student t on logarithms, {n - 1} degrees of freedom"
    else:
        # Drawing from the sorted values (not the caller's order) makes the interval permutation invariant.
        rng = random.Random(seed)
        medians = sorted(
            _sorted_percentile(sorted(rng.choices(ordered, k=n)), 50.0) for _ in range(resamples)
        )
        ci_low = _sorted_percentile(medians, 2.5)
        ci_high = _sorted_percentile(medians, 97.5)
        ci_method = f"percentile bootstrap of the median ({resamples} resamples, seed {seed})"
    return Summary(
        n=n,
        median=median,
        q1=q1,
        q3=q3,
        iqr=q3 - q1,
        mean=mean,
        ci95_low=ci_low,
        ci95_high=ci_high,
        ci_method=ci_method,
    )


def log_t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The ``level`` interval of the geometric mean of positive ``values`` (at least two): Student's t on logs."""
    logs = [math.log(v) for v in values]
    n = len(logs)
    mean = math.fsum(logs) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in logs) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return _exp(mean - half), _exp(mean + half)


def _exp(x: float) -> float:
    return math.inf if x > 700 else math.exp(x)


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (``0.5 < p < 1``), by bisection on the CDF (no SciPy)."""
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_cdf(x: float, df: int) -> float:
    """Student's t CDF through the regularised incomplete beta function."""
    if df <= 0:
        raise ValueError("degrees of freedom must be >= 1")
    z = df / (df + x * x)
    tail = 0.5 * _betainc(df / 2, 0.5, z)
    return 1 - tail if x >= 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + num * d
        d = 1 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1 + num / (c if abs(c) > 1e-300 else 1e-300)
        f *= c * d
        if abs(1 - c * d) < 1e-12:
            break
    return front * (f - 1) / a

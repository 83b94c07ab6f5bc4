"""Summaries of repeated measurements: median, quartiles, mean and a bootstrap 95 % CI of the median.

Pure Python on purpose: the inputs are a handful of repeats (n <= 100), and the plugin must not import numpy
in every pytest run of the environment.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_RESAMPLES = 2000


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
    """Lower end of the 95 % confidence interval of the median."""
    ci95_high: float
    """Upper end of the 95 % confidence interval of the median."""
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
    values: Sequence[float], *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES
) -> Summary | None:
    """Summary of ``values``, or None when there are none.

    The CI is a percentile bootstrap of the median: ``resamples`` resamples with replacement drawn by a
    ``random.Random(seed)``, so the same values always give the same interval. With one value the interval
    collapses to it.
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

"""The statistics of a paired comparison: intervals over independent process pairs and three verdicts.

Each figure is compared as ``w = log(head / base)`` of a cost (seconds per sample, seconds per token, joules, bytes),
so ``w > 0`` is worse whatever the figure. Two identical processes can differ by 10-15 % for as long as they live
(memory layout, cores, allocator state), and more rounds inside one pair of processes do not average that away, so
the unit of replication is the **process pair**: each pair's value is the mean of its rounds' log ratios, and the
interval is Student's t over the pairs' values (df = pairs - 1). For normal log ratios it covers the true change at
its nominal level at every n (``tests/unit/ab/test_stats.py`` checks >= 0.93 by simulation, also under heavier
tails). Every measurement counts: nothing is selected among rounds or pairs.

Verdicts, for a tolerance ``tol`` (``tau = log(1 + tol)``):

* ``no regression``: the interval's upper end is within the tolerance (``high <= tau``): a change beyond it is
  excluded.
* ``regression``: the whole interval lies beyond the tolerance (``low > tau``), or, once the pair budget is spent,
  the change is significant (``low > 0``) and its estimate is at least half the tolerance (closer to a change of the
  tolerance than to none).
* ``inconclusive``: neither; :attr:`Estimate.resolvable` is the smallest change the measurements could have resolved
  (the interval's half-width).

The run applies Benjamini-Hochberg over the (cell, figure) regressions' one-sided p-values (``w <= 0``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_longeff.stats import t_cdf, t_quantile

LEVEL = 0.95
FDR_Q = 0.05
REGRESSION, NO_REGRESSION, INCONCLUSIVE = "regression", "no regression", "inconclusive"


@dataclass(frozen=True)
class Estimate:
    """The change of one figure over ``n`` process pairs, as a log ratio head/base of a cost (> 0 is worse)."""

    n: int
    mean: float
    low: float
    high: float
    p_worse: float
    """One-sided p-value of "not worse" (w <= 0)."""

    @property
    def resolvable(self) -> float:
        """The smallest relative change these measurements resolve: the interval's half-width, as a ratio - 1."""
        return math.expm1((self.high - self.low) / 2) if math.isfinite(self.high - self.low) else math.inf

    @property
    def change(self) -> float:
        """The estimated relative change of the cost (head / base - 1)."""
        return math.expm1(self.mean)

    def to_dict(self) -> dict[str, float | int]:
        """For the report: the change and its interval as relative changes of the cost."""
        return {"pairs": self.n, "change": self.change, "low": math.expm1(self.low),
                "high": math.expm1(self.high) if math.isfinite(self.high) else None,
                "p_worse": self.p_worse, "resolvable": self.resolvable if math.isfinite(self.resolvable) else None}


def estimate(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean and t interval of per-pair log ratios; one value gives an unbounded interval."""
    n = len(values)
    if n == 0:
        raise ValueError("no pairs to estimate from")
    mean = statistics.fmean(values)
    if n == 1:
        return Estimate(1, mean, -math.inf, math.inf, 0.5)
    se = statistics.stdev(values) / math.sqrt(n)
    if se == 0:
        return Estimate(n, mean, mean, mean, 0.0 if mean > 0 else 1.0)
    half = t_quantile(0.5 + level / 2, n - 1) * se
    return Estimate(n, mean, mean - half, mean + half, 1 - t_cdf(mean / se, n - 1))


def verdict(e: Estimate, tau: float, final: bool) -> str:
    """The three-way verdict on one estimate (see the module's text): ``tau`` is the tolerance as a log ratio of the
    cost (``log(1 + tol)``; for a rate that may drop by ``tol``, ``-log(1 - tol)``); ``final``: the pair budget is
    spent."""
    if e.high <= tau:
        return NO_REGRESSION
    if e.low > tau or (final and e.low > 0 and e.mean >= tau / 2):
        return REGRESSION
    return INCONCLUSIVE


def pair_value(rounds: Sequence[tuple[float, float]]) -> float:
    """One process pair's log ratio: the mean over its rounds of log(head / base)."""
    return statistics.fmean(math.log(h / b) for b, h in rounds)

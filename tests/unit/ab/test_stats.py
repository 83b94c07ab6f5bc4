"""The paired statistics: Student's t against tabled values, the interval's coverage by simulation at the pair
counts the job uses, and the three verdicts."""

from __future__ import annotations

import math
import random

import pytest

from pytest_longeff.ab.stats import (
    INCONCLUSIVE,
    NO_REGRESSION,
    REGRESSION,
    Estimate,
    estimate,
    t_cdf,
    t_quantile,
    verdict,
)


@pytest.mark.parametrize(("df", "q975"), [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (7, 2.365), (30, 2.042)])
def test_t_quantiles_match_the_table(df: int, q975: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(q975, abs=1e-3)
    assert t_cdf(q975, df) == pytest.approx(0.975, abs=1e-4)


def _coverage(n: int, draw: object, trials: int = 4000, seed: int = 1) -> float:
    rng = random.Random(seed)
    hits = 0
    for _ in range(trials):
        e = estimate([draw(rng) for _ in range(n)])  # type: ignore[operator]
        hits += e.low <= 0.05 <= e.high
    return hits / trials


@pytest.mark.parametrize("n", [3, 4, 6, 8])
def test_the_interval_covers_the_true_change_at_its_level(n: int) -> None:
    # A process-level effect (sd 0.08) plus the mean of two rounds (sd 0.1 each) around a true change of 0.05.
    def pair(rng: random.Random) -> float:
        return 0.05 + rng.gauss(0, 0.08) + (rng.gauss(0, 0.1) + rng.gauss(0, 0.1)) / 2

    assert _coverage(n, pair) >= 0.93


@pytest.mark.parametrize("n", [3, 6])
def test_coverage_holds_under_heavier_tails(n: int) -> None:
    def pair(rng: random.Random) -> float:  # Student t with 5 df, scaled
        z = rng.gauss(0, 1) / math.sqrt(sum(rng.gauss(0, 1) ** 2 for _ in range(5)) / 5)
        return 0.05 + 0.08 * z

    assert _coverage(n, pair) >= 0.93


def test_one_pair_has_no_interval() -> None:
    e = estimate([0.3])
    assert (e.low, e.high) == (-math.inf, math.inf)
    assert verdict(e, math.log(1.1), final=True) == INCONCLUSIVE


def test_verdicts() -> None:
    tau = math.log(1.1)
    assert verdict(Estimate(5, 0.0, -0.04, 0.04, 0.5), tau, final=False) == NO_REGRESSION
    assert verdict(Estimate(5, 0.3, 0.2, 0.4, 0.001), tau, final=False) == REGRESSION
    between = Estimate(5, 0.08, 0.01, 0.15, 0.02)  # significant, estimate near the tolerance, interval across it
    assert verdict(between, tau, final=False) == INCONCLUSIVE
    assert verdict(between, tau, final=True) == REGRESSION
    small = Estimate(5, 0.03, 0.01, 0.15, 0.02)  # significant but closer to no change than to the tolerance
    assert verdict(small, tau, final=True) == INCONCLUSIVE
    assert estimate([0.0, 0.2, -0.2]).resolvable > 0.3  # wide: says how much it could have resolved

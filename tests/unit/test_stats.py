"""Tests for pytest_longeff.stats: percentile definition, bootstrap CI, and summary invariants."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_longeff.stats import T_INTERVAL_BELOW, Summary, percentile, summarize

# Measured quantities (seconds, joules, scores) are finite and far from float overflow.
values_st = st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=40)

# Few resamples keep the properties fast; the invariants do not depend on the count.
FAST = 200


def test_percentile_matches_numpy_linear_definition() -> None:
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(data, 0) == 15.0
    assert percentile(data, 100) == 50.0
    assert percentile(data, 50) == 35.0
    assert percentile(data, 25) == 20.0
    assert percentile(data, 40) == pytest.approx(29.0)  # position 1.6: 20 + 0.6 * 15
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([7.0], 90) == 7.0


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1.0], 101)


def test_empty_summary_is_none() -> None:
    assert summarize([]) is None


def test_single_value() -> None:
    summary = summarize([4.2])
    assert summary == Summary(
        n=1,
        median=4.2,
        q1=4.2,
        q3=4.2,
        iqr=0.0,
        mean=4.2,
        ci95_low=4.2,
        ci95_high=4.2,
        ci_method="single sample",
    )


def test_to_dict_layout() -> None:
    summary = summarize([1.0, 2.0, 3.0, 4.0, 100.0], resamples=FAST, t_below=0)
    assert summary is not None
    record = summary.to_dict()
    assert list(record) == ["n", "median", "iqr", "q1", "q3", "mean", "ci95", "ci_method"]
    assert record["n"] == 5
    assert record["median"] == 3.0
    assert record["q1"] == 2.0 and record["q3"] == 4.0 and record["iqr"] == 2.0
    assert record["mean"] == pytest.approx(22.0)
    assert record["ci95"] == [summary.ci95_low, summary.ci95_high]
    assert "bootstrap" in str(record["ci_method"]) and f"{FAST} resamples" in str(record["ci_method"])


def test_same_seed_same_interval_and_default_is_cheap() -> None:
    rng = random.Random(7)
    data = [rng.gauss(10.0, 2.0) for _ in range(100)]
    first = summarize(data)
    second = summarize(data)
    assert first == second
    assert first is not None and first.ci95_low < first.median < first.ci95_high
    # The median of 100 draws from N(10, 2) has a standard error of about 0.25.
    assert 0.3 < first.ci95_high - first.ci95_low < 2.0


def test_nan_is_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        summarize([1.0, math.nan])


@given(values=values_st)
@settings(max_examples=150)
def test_order_of_location_statistics(values: list[float]) -> None:
    summary = summarize(values, resamples=FAST, t_below=0)
    assert summary is not None
    assert summary.n == len(values)
    assert min(values) <= summary.q1 <= summary.median <= summary.q3 <= max(values)
    assert summary.ci95_low <= summary.median <= summary.ci95_high
    assert min(values) <= summary.ci95_low and summary.ci95_high <= max(values)
    assert summary.iqr >= 0.0
    small_n = summarize(values, resamples=FAST)  # Student t where the values allow it: holds the median too
    assert small_n is not None and small_n.ci95_low <= small_n.median <= small_n.ci95_high


@given(value=st.floats(min_value=-1e9, max_value=1e9), n=st.integers(1, 30))
def test_constant_sequence_has_no_spread(value: float, n: int) -> None:
    summary = summarize([value] * n, resamples=FAST)
    assert summary is not None
    assert summary.iqr == 0.0
    assert summary.median == summary.q1 == summary.q3 == value
    assert summary.ci95_low == summary.ci95_high == value


@given(values=values_st, seed=st.integers(0, 2**32), data=st.data())
@settings(max_examples=100)
def test_summary_is_permutation_invariant(values: list[float], seed: int, data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(values))
    assert summarize(values, seed=seed, resamples=FAST) == summarize(shuffled, seed=seed, resamples=FAST)


# --- mutation-testing additions (see docs/validation/mutation.md)


def _bootstrap_ci_by_numpy(values: list[float], seed: int, resamples: int) -> tuple[float, float]:
    """A second implementation of the documented interval: same draws, numpy's median and percentiles."""
    np = pytest.importorskip("numpy")
    ordered = sorted(values)
    rng = random.Random(seed)
    medians = [float(np.median(rng.choices(ordered, k=len(ordered)))) for _ in range(resamples)]
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.parametrize(
    ("values", "seed", "resamples"),
    [
        ([1.0, 2.0, 4.0, 8.0], 3, 50),
        ([5.0, 1.0, 9.0, 2.0, 7.0, 3.0], 0, 1),
        # Spread out, so that the resampled medians near both tails differ from their neighbours.
        ([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0], 0, 40),
    ],
)
def test_bootstrap_interval_matches_an_independent_implementation(
    values: list[float], seed: int, resamples: int
) -> None:
    summary = summarize(values, seed=seed, resamples=resamples, t_below=0)
    assert summary is not None
    low, high = _bootstrap_ci_by_numpy(values, seed, resamples)
    assert (summary.ci95_low, summary.ci95_high) == pytest.approx((low, high))
    assert summary.ci_method == f"percentile bootstrap of the median ({resamples} resamples, seed {seed})"


def test_default_seed_is_zero() -> None:
    values = [1.0, 2.0, 4.0, 8.0, 16.0]
    summary = summarize(values, resamples=40, t_below=0)
    assert summary is not None and summary.ci_method.endswith("seed 0)")
    assert (summary.ci95_low, summary.ci95_high) == pytest.approx(_bootstrap_ci_by_numpy(values, 0, 40))


def test_resamples_must_be_at_least_one() -> None:
    with pytest.raises(ValueError) as caught:
        summarize([1.0, 2.0], resamples=0)
    assert str(caught.value) == "resamples must be at least 1, got 0"
    assert summarize([1.0, 2.0], resamples=1) is not None


def test_error_messages_are_exact() -> None:
    with pytest.raises(ValueError) as empty:
        percentile([], 50)
    assert str(empty.value) == "percentile of an empty sequence"
    with pytest.raises(ValueError) as nan:
        summarize([math.nan])
    assert str(nan.value) == "cannot summarise values containing NaN"


@pytest.mark.parametrize(
    ("values", "method"),
    [
        ([3.0, 3.0, 3.0], "constant values"),
        ([1.0, 1.0, 2.0], "percentile bootstrap of the median (20 resamples, seed 0)"),
        ([1.0, 2.0, 2.0], "percentile bootstrap of the median (20 resamples, seed 0)"),
        ([1.0, 2.0, 2.0, 2.0], "percentile bootstrap of the median (20 resamples, seed 0)"),
    ],
)
def test_only_an_all_equal_sequence_skips_the_bootstrap(values: list[float], method: str) -> None:
    summary = summarize(values, resamples=20, t_below=0)
    assert summary is not None and summary.ci_method == method


def _coverage(n: int, t_below: int, trials: int = 2000) -> float:
    """How often the 95 % interval of ``n`` log-normal values covers their median (1.0), by simulation."""
    rng = random.Random(7)
    hits = 0
    for _ in range(trials):
        s = summarize([math.exp(rng.gauss(0, 0.2)) for _ in range(n)], resamples=200, t_below=t_below)
        assert s is not None
        hits += s.ci95_low <= 1.0 <= s.ci95_high
    return hits / trials


@pytest.mark.parametrize("n", [3, 5, 10])
def test_small_n_intervals_cover_what_they_say(n: int) -> None:
    assert _coverage(n, T_INTERVAL_BELOW) >= 0.93


def test_a_bootstrap_from_three_values_covers_far_less_than_95_percent() -> None:
    """Why small n takes Student's t: the percentile bootstrap of a median of 3 is a 75 % interval."""
    assert _coverage(3, 0, trials=1000) < 0.85

"""Tests for pytest_longeff.energy's pure arithmetic and value objects: integration, gaps, the legacy figure,
readings, idle baselines and net energy."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pytest_longeff.energy import (
    EnergyReading,
    IdleBaseline,
    NullMeter,
    integrate_power,
    legacy_as_extracted,
    legacy_bucket_means,
    legacy_energy,
    max_sample_gap,
    measure_idle,
    net_energy_j,
    power_uncertainty_j,
)

# -- integrate_power -------------------------------------------------------------------------------------------

times = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
powers = st.floats(min_value=0.0, max_value=2000.0, allow_nan=False)


@given(
    power_w=powers,
    sample_times=st.lists(times, min_size=1, max_size=30),
    window=st.tuples(times, times),
)
def test_constant_power_integrates_to_power_times_duration(
    power_w: float, sample_times: list[float], window: tuple[float, float]
) -> None:
    t0, t1 = sorted(window)
    samples = [(t, power_w) for t in sample_times]
    assert integrate_power(samples, t0, t1) == pytest.approx(power_w * (t1 - t0), rel=1e-9, abs=1e-6)


@given(
    a=st.floats(-500, 500),
    b=st.floats(-50, 50),
    inner=st.lists(st.floats(0.0, 1.0), min_size=0, max_size=20),
    window=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    span=st.tuples(st.floats(-10, 10), st.floats(0.1, 20)),
)
def test_linear_power_integrates_exactly_when_samples_bracket_the_window(
    a: float,
    b: float,
    inner: list[float],
    window: tuple[float, float],
    span: tuple[float, float],
) -> None:
    start, length = span
    lo_frac, hi_frac = sorted(window)
    t0, t1 = start + lo_frac * length, start + hi_frac * length
    sample_times = [start, start + length, *(start + f * length for f in inner)]
    samples = [(t, a + b * t) for t in sample_times]
    analytic = a * (t1 - t0) + b * (t1 * t1 - t0 * t0) / 2.0
    assert integrate_power(samples, t0, t1) == pytest.approx(analytic, rel=1e-6, abs=1e-6)


@st.composite
def step_traces(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    edges = sorted(set(draw(st.lists(st.floats(0.0, 100.0), min_size=2, max_size=12))))
    assume(len(edges) >= 2)
    levels = draw(st.lists(powers, min_size=len(edges) - 1, max_size=len(edges) - 1))
    return edges, levels


@given(trace=step_traces(), window=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)))
def test_piecewise_constant_trace_matches_analytic_integral(
    trace: tuple[list[float], list[float]], window: tuple[float, float]
) -> None:
    edges, levels = trace
    span = edges[-1] - edges[0]
    lo, hi = sorted(window)
    t0, t1 = edges[0] + lo * span, edges[0] + hi * span
    # A step at each edge is two samples at the same time: the old level, then the new one.
    samples: list[tuple[float, float]] = []
    for i, level in enumerate(levels):
        samples.append((edges[i], level))
        samples.append((edges[i + 1], level))
    analytic = sum(level * max(0.0, min(t1, edges[i + 1]) - max(t0, edges[i])) for i, level in enumerate(levels))
    assert integrate_power(samples, t0, t1) == pytest.approx(analytic, rel=1e-9, abs=1e-6)


@given(
    knots=st.lists(st.tuples(st.floats(0.0, 100.0), powers), min_size=2, max_size=10, unique_by=lambda k: k[0]),
    extra=st.lists(st.floats(0.0, 1.0), max_size=10),
)
def test_adding_interpolated_samples_does_not_change_a_piecewise_linear_integral(
    knots: list[tuple[float, float]], extra: list[float]
) -> None:
    knots.sort()
    first, last = knots[0][0], knots[-1][0]
    refined = list(knots)
    for frac in extra:
        t = first + frac * (last - first)
        refined.append((t, _interpolate(knots, t)))
    exact = sum((tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in itertools.pairwise(knots))
    assert integrate_power(knots, first, last) == pytest.approx(exact, rel=1e-9, abs=1e-6)
    assert integrate_power(refined, first, last) == pytest.approx(exact, rel=1e-6, abs=1e-6)


def _interpolate(knots: list[tuple[float, float]], t: float) -> float:
    for (ta, pa), (tb, pb) in itertools.pairwise(knots):
        if ta <= t <= tb:
            return pa + (pb - pa) * (t - ta) / (tb - ta)
    raise AssertionError("t outside the knots")


@given(
    samples=st.lists(st.tuples(times, powers), min_size=1, max_size=30),
    cuts=st.lists(times, min_size=3, max_size=3),
)
def test_integration_is_additive_over_split_windows(samples: list[tuple[float, float]], cuts: list[float]) -> None:
    a, b, c = sorted(cuts)
    whole = integrate_power(samples, a, c)
    split = integrate_power(samples, a, b) + integrate_power(samples, b, c)
    assert split == pytest.approx(whole, rel=1e-9, abs=1e-6)


def test_integrate_power_rejects_empty_traces_and_reversed_windows() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        integrate_power([], 0.0, 1.0)
    with pytest.raises(ValueError, match="ends before it starts"):
        integrate_power([(0.0, 1.0)], 1.0, 0.0)


def test_integrate_power_holds_the_first_value_before_and_the_last_value_after_the_trace() -> None:
    """Kills the mutant "integrate_power holds the wrong power value after the last sample" (and its mirror
    before the first): the trace rises from 10 W to 50 W, so holding the first sample's value after the trace,
    the last's before it, or swapping both each gives a different number from the right one."""
    samples = [(2.0, 50.0), (1.0, 10.0)]  # unsorted on purpose: "first" and "last" are by time
    # Right: 10 W held over [0, 1], ramp 10 -> 50 W over [1, 2] (30 J), 50 W held over [2, 4].
    assert integrate_power(samples, 0.0, 4.0) == pytest.approx(10.0 + 30.0 + 100.0)
    assert integrate_power(samples, 3.0, 5.0) == pytest.approx(100.0)  # wholly after the trace: last value
    assert integrate_power(samples, -2.0, 0.0) == pytest.approx(20.0)  # wholly before the trace: first value
    assert integrate_power(samples, 0.5, 0.5) == 0.0


def test_max_sample_gap_counts_window_edges() -> None:
    assert max_sample_gap([-1.0, 0.2, 0.3, 2.0], 0.0, 1.0) == pytest.approx(0.7)
    assert max_sample_gap([], 0.0, 1.0) == pytest.approx(1.0)


def test_legacy_formula_is_sum_of_30s_means_over_1000() -> None:
    trace = [(float(t), 300.0) for t in range(-1, 62)]
    # 60 s of 300 W: two 30-s buckets of mean 300 -> 0.6 (the seed study's "kJ"), against 18 000 J of energy.
    assert legacy_energy(trace, 0.0, 60.0) == pytest.approx(0.6)
    # A partial last bucket counts as a bucket.
    assert legacy_energy(trace, 0.0, 45.0) == pytest.approx(0.6)
    # A step from 100 W to 400 W at 15 s: one bucket, polls 0..28 s see 100 W for 8 polls and 400 W for 7.
    step = [(-1.0, 100.0), (14.999, 100.0), (15.0, 400.0), (40.0, 400.0)]
    assert legacy_energy(step, 0.0, 30.0) == pytest.approx((8 * 100 + 7 * 400) / 15 / 1000)
    assert legacy_energy([], 0.0, 30.0) is None


# -- value objects ---------------------------------------------------------------------------------------------


def test_reading_to_dict_keys() -> None:
    reading = EnergyReading(
        energy_j=12.5,
        time_s=2.0,
        method="nvml-power",
        valid=True,
        note="ok",
        samples=41,
        max_gap_s=0.06,
        legacy_j=0.006,
    )
    assert reading.to_dict() == {
        "energy_j": 12.5,
        "time_s": 2.0,
        "energy_method": "nvml-power",
        "energy_valid": True,
        "energy_note": "ok",
        "energy_samples": 41,
        "energy_max_gap_s": 0.06,
        "legacy_sum_of_30s_mean_power_kw": 0.006,
        "energy_uncertainty_j": None,
        "energy_coarse": False,
        "energy_update_period_s": None,
        "energy_other_processes": [],
        "energy_throttle_reasons": [],
        "legacy_buckets": None,
        "legacy_sum_as_extracted_kw": None,
    }


def test_new_reading_and_idle_fields_serialise_with_units_in_their_keys() -> None:
    reading = EnergyReading(
        12.5, 2.0, "nvml", False, "shared", 2, None, 0.006,
        uncertainty_j=0.7, coarse=True, update_period_s=0.1, other_processes=(42,),
        throttle_reasons=("sw_power_cap",), legacy_buckets=1, legacy_as_extracted=0.006,
    )  # fmt: skip
    record = reading.to_dict()
    assert record["energy_uncertainty_j"] == 0.7 and record["energy_coarse"] is True
    assert record["energy_other_processes"] == [42]
    assert record["energy_throttle_reasons"] == ["sw_power_cap"]
    assert record["legacy_buckets"] == 1 and record["legacy_sum_as_extracted_kw"] == 0.006
    idle = IdleBaseline(20.0, 10.0, "nvml", True, None, uncertainty_w=0.5, pstate=8, sm_clock_mhz=345,
                        mem_clock_mhz=1593)  # fmt: skip
    assert idle.to_dict() == {
        "idle_power_w": 20.0,
        "idle_time_s": 10.0,
        "idle_method": "nvml",
        "idle_valid": True,
        "idle_note": None,
        "idle_uncertainty_w": 0.5,
        "idle_pstate": 8,
        "idle_sm_clock_mhz": 345,
        "idle_mem_clock_mhz": 1593,
    }


# -- idle baseline and net energy ------------------------------------------------------------------------------


def test_idle_on_a_null_meter_is_unmeasured() -> None:
    idle = measure_idle(NullMeter(), 0.0)
    assert idle.power_w is None and not idle.valid
    assert "no energy meter selected" in (idle.note or "")


def test_net_energy_is_none_when_either_side_is_unmeasured() -> None:
    good = EnergyReading(100.0, 1.0, "nvml", True, None, 2, None, None)
    unmeasured = EnergyReading(None, 1.0, "none", False, "no energy meter selected", 0, None, None)
    idle = IdleBaseline(power_w=40.0, time_s=5.0, method="nvml", valid=True, note=None)
    assert net_energy_j(good, idle) == pytest.approx(60.0)
    assert net_energy_j(unmeasured, idle) is None
    assert net_energy_j(good, None) is None
    assert net_energy_j(good, IdleBaseline(None, 5.0, "nvml", False, "failed")) is None
    assert net_energy_j(good, IdleBaseline(40.0, 5.0, "rapl", True, None)) is None  # different meters


def test_net_energy_may_be_negative_rather_than_clamped() -> None:
    reading = EnergyReading(10.0, 1.0, "nvml", True, None, 2, None, None)
    idle = IdleBaseline(power_w=12.0, time_s=5.0, method="nvml", valid=True, note=None)
    assert net_energy_j(reading, idle) == pytest.approx(-2.0)
    assert math.isfinite(net_energy_j(reading, idle) or math.nan)


# -- exact values worked out by hand (each pins down one line of the arithmetic) -------------------------------


def test_empty_trace_errors_name_the_function() -> None:
    with pytest.raises(ValueError, match=r"^integrate_power needs at least one sample$"):
        integrate_power([], 0.0, 1.0)
    with pytest.raises(ValueError, match=r"^power_uncertainty_j needs at least one sample$"):
        power_uncertainty_j([], 0.0, 1.0)


# Unsorted, with a step at 2 s (40 W then 5 W, in that order): by time (1, 10), (2, 40), (2, 5), (3, 20).
STEP_TRACE = [(3.0, 20.0), (2.0, 40.0), (1.0, 10.0), (2.0, 5.0)]


def test_power_uncertainty_by_hand() -> None:
    # Window [0.5, 5]: 1 mW x 4.5 s = 0.0045 J; before the trace 0.5 s held at max(ceiling, 10 W); after it 2 s at
    # max(ceiling, 20 W); segments 1-2 s: |40 - 10| x 1 / 2 = 15 J, 2-2 s: nothing, 2-3 s: |20 - 5| x 1 / 2 = 7.5 J.
    assert power_uncertainty_j(STEP_TRACE, 0.5, 5.0, ceiling_w=100.0) == pytest.approx(
        0.0045 + 100 * 0.5 + 100 * 2 + 15 + 7.5, rel=1e-12
    )
    assert power_uncertainty_j(STEP_TRACE, 0.5, 5.0) == pytest.approx(0.0045 + 10 * 0.5 + 20 * 2 + 22.5, rel=1e-12)
    # A sensor averaging over 0.5 s adds 0.5 / 2 x (40 - 5) = 8.75 J.
    assert power_uncertainty_j(STEP_TRACE, 0.5, 5.0, sensor_average_s=0.5) == pytest.approx(
        0.0045 + 5 + 40 + 22.5 + 8.75, rel=1e-12
    )
    # Partly covered segments count |dP| x overlap: [1.5, 2.5] covers half of each -> 30 x 0.5 + 15 x 0.5.
    assert power_uncertainty_j(STEP_TRACE, 1.5, 2.5) == pytest.approx(0.001 + 15 + 7.5, rel=1e-12)
    # Below 1 W and without a ceiling the held power is the sample's own: [0, 3] around (1, 0.5 W), (2, 0.25 W).
    low = [(1.0, 0.5), (2.0, 0.25)]
    assert power_uncertainty_j(low, 0.0, 3.0) == pytest.approx(0.003 + 0.5 + 0.25 + 0.125, rel=1e-12)
    # A window wholly after the trace: [4, 6] at max(ceiling 30 W, 20 W) for 2 s, plus 1 mW x 2 s.
    assert power_uncertainty_j(STEP_TRACE, 4.0, 6.0, ceiling_w=30.0) == pytest.approx(0.002 + 60.0, rel=1e-12)


# By time: (-1, 100), (10, 400), (10, 200), (20, 50). Polls at 0, 2, ... see 100 W up to 8 s, the later of the two
# samples at 10 s (200 W) from 10 s on, and 50 W from 20 s on.
LEGACY_TRACE = [(10.0, 400.0), (20.0, 50.0), (-1.0, 100.0), (10.0, 200.0)]


def test_legacy_bucket_means_by_hand() -> None:
    # [0, 40): polls 0..28 s (15) in the first bucket: 5 x 100 + 5 x 200 + 5 x 50; polls 30..38 s (5) at 50 W.
    assert legacy_bucket_means(LEGACY_TRACE, 0.0, 40.0) == pytest.approx([(500 + 1000 + 250) / 15, 50.0], rel=1e-12)
    # From 1 s: polls at 1, 3, ..., 29 s: 5 x 100 (1-9 s), 5 x 200 (11-19 s), 5 x 50 (21-29 s).
    assert legacy_bucket_means(LEGACY_TRACE, 1.0, 30.0) == pytest.approx([1750 / 15], rel=1e-12)
    assert legacy_bucket_means(LEGACY_TRACE, 5.0, 5.0) == []
    assert legacy_bucket_means([], 0.0, 5.0) == []


def test_legacy_as_extracted_keeps_evenly_spaced_rows() -> None:
    assert legacy_as_extracted([]) is None
    assert legacy_as_extracted([70.0]) == pytest.approx(0.07, rel=1e-12)
    assert legacy_as_extracted([100.0, 200.0, 300.0], max_rows=3) == pytest.approx(0.6, rel=1e-12)
    buckets = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert legacy_as_extracted(buckets, max_rows=3) == pytest.approx((10 + 30 + 50) / 1000, rel=1e-12)  # rows 0, 2, 4
    assert legacy_as_extracted(buckets, max_rows=2) == pytest.approx((10 + 50) / 1000, rel=1e-12)  # first and last
    assert legacy_as_extracted(buckets, max_rows=1) == pytest.approx(10 / 1000, rel=1e-12)  # the first only
    assert legacy_as_extracted([1.0] * 1000) == pytest.approx(500 / 1000, rel=1e-12)  # at most 500 rows by default


def test_net_energy_needs_a_valid_reading_and_a_valid_idle_and_scales_with_time() -> None:
    idle = IdleBaseline(power_w=40.0, time_s=5.0, method="nvml", valid=True, note=None)
    assert net_energy_j(EnergyReading(100.0, 2.0, "nvml", True, None, 2, None, None), idle) == pytest.approx(20.0)
    assert net_energy_j(EnergyReading(100.0, 2.0, "nvml", False, "shared", 2, None, None), idle) is None
    reading = EnergyReading(100.0, 2.0, "nvml", True, None, 2, None, None)
    assert net_energy_j(reading, IdleBaseline(40.0, 5.0, "nvml", False, "noisy")) is None


class FakeMeter:
    """Returns a set reading and set facts; records the window."""

    method = "fake"

    def __init__(self, reading: EnergyReading, facts: dict[str, object]) -> None:
        self.reading, self.facts = reading, facts
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def read(self) -> EnergyReading:
        return self.reading

    def stop(self) -> EnergyReading:
        self.calls.append("stop")
        return self.reading

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> dict[str, object]:
        self.calls.append("describe")
        return self.facts


GPU_FACTS: dict[str, object] = {
    "gpus": [{"pstate": 8, "sm_clock_mhz": 345.0, "mem_clock_mhz": 1593}, {"pstate": 2, "sm_clock_mhz": 99}, "junk"]
}


def _fake_reading(
    energy_j: float | None, time_s: float, valid: bool = True, uncertainty_j: float | None = None
) -> EnergyReading:
    return EnergyReading(energy_j, time_s, "fake", valid, "a note", 3, None, None, uncertainty_j=uncertainty_j)


def test_measure_idle_divides_the_reading_by_its_length() -> None:
    slept: list[float] = []
    meter = FakeMeter(_fake_reading(200.0, 10.0, uncertainty_j=5.0), GPU_FACTS)
    idle = measure_idle(meter, 10.0, sleep=slept.append)
    # 200 J / 10 s = 20 W, 5 J / 10 s = 0.5 W; the highest P-state of the GPUs; clocks of the first GPU.
    assert idle == IdleBaseline(20.0, 10.0, "fake", True, "a note", uncertainty_w=0.5, pstate=8, sm_clock_mhz=345,
                                mem_clock_mhz=1593)  # fmt: skip
    assert slept == [10.0] and meter.calls == ["start", "stop", "describe"]
    short = measure_idle(FakeMeter(_fake_reading(1.0, 0.5), {}), 0.5, sleep=slept.append)
    assert short == IdleBaseline(2.0, 0.5, "fake", True, "a note")  # 1 J / 0.5 s, no uncertainty, no GPU facts


@pytest.mark.parametrize(
    ("energy_j", "time_s", "valid"), [(200.0, 10.0, False), (None, 10.0, True), (200.0, 0.0, True)]
)
def test_measure_idle_is_unmeasured_for_an_invalid_unmeasured_or_empty_reading(
    energy_j: float | None, time_s: float, valid: bool
) -> None:
    meter = FakeMeter(_fake_reading(energy_j, time_s, valid, uncertainty_j=5.0), GPU_FACTS)
    idle = measure_idle(meter, 1.0, sleep=lambda s: None)
    assert idle == IdleBaseline(None, time_s, "fake", False, "idle baseline not measured: a note", pstate=8,
                                sm_clock_mhz=345, mem_clock_mhz=1593)  # fmt: skip


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"gpus": ["junk", {"pstate": 5, "sm_clock_mhz": 1}]}, (5, None, None)),  # first entry not a GPU: no clocks
        ({"gpus": []}, (None, None, None)),
        ({"gpus": {"pstate": 5}}, (None, None, None)),  # not a list
        ({"gpus": [{"pstate": "P8", "sm_clock_mhz": "fast", "mem_clock_mhz": 7}]}, (None, None, 7)),
    ],
)
def test_idle_state_reads_only_well_formed_gpu_facts(facts: dict[str, object], expected: tuple[object, ...]) -> None:
    idle = measure_idle(FakeMeter(_fake_reading(10.0, 1.0), facts), 1.0, sleep=lambda s: None)
    assert (idle.pstate, idle.sm_clock_mhz, idle.mem_clock_mhz) == expected

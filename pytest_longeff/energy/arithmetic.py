"""Pure arithmetic of energy measurement: integrating a power trace, its gaps, the seed study's figure, and the
idle baseline that turns gross into net energy."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence

from pytest_longeff.energy.base import Meter
from pytest_longeff.energy.readings import EnergyReading, IdleBaseline

#: The seed study polled power every 2 s, averaged the polls in 30-s buckets and summed the bucket means / 1000.
LEGACY_POLL_PERIOD_S = 2.0
LEGACY_BUCKET_S = 30.0
#: The run history the study's extraction read returned at most this many sampled rows (one per 30-s bucket).
LEGACY_HISTORY_ROWS = 500


def integrate_power(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> float:
    """Energy in joules over ``[t0, t1]`` from ``(time_s, power_w)`` samples, by the trapezoid rule.

    Power between samples is interpolated linearly; before the first and after the last sample it is held at
    that sample's value, so a window that reaches slightly past the trace is extended rather than truncated.
    The result is the exact integral of that piecewise-linear function, hence additive over split windows.
    Samples need not be sorted; two samples at the same time make a step.
    """
    if not samples:
        raise ValueError("integrate_power needs at least one sample")
    if t1 < t0:
        raise ValueError(f"window ends before it starts: t0={t0}, t1={t1}")
    points = sorted(samples, key=lambda s: s[0])
    first_t, first_p = points[0]
    last_t, last_p = points[-1]
    total = 0.0
    if t0 < first_t:
        total += first_p * (min(t1, first_t) - t0)
    if t1 > last_t:
        total += last_p * (t1 - max(t0, last_t))
    for (ta, pa), (tb, pb) in itertools.pairwise(points):
        lo = max(ta, t0)
        hi = min(tb, t1)
        if hi <= lo:
            continue
        # Interpolate by fraction of the segment, not by slope: samples a few ulps apart would make the slope
        # overflow.
        width = tb - ta
        p_lo = pa + (pb - pa) * ((lo - ta) / width)
        p_hi = pa + (pb - pa) * ((hi - ta) / width)
        total += (hi - lo) * (p_lo + p_hi) / 2.0
    return total


def max_sample_gap(times: Sequence[float], t0: float, t1: float) -> float:
    """Largest interval between consecutive sample times inside ``[t0, t1]``, the window edges included, seconds."""
    inside = sorted(t for t in times if t0 < t < t1)
    edges = [t0, *inside, t1]
    return max((b - a for a, b in itertools.pairwise(edges)), default=0.0)


def legacy_bucket_means(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> list[float]:
    """The seed study's 30-s bucket means of 2-s power polls over ``[t0, t1]``, watts.

    The polls are emulated at ``t0, t0 + 2 s, ...`` (before ``t1``), each seeing the latest sample at or before
    its time, as a 2-s poller of the sensor would. A partial last bucket counts as a bucket, as a time-indexed
    resample does. Empty when there are no samples or the window is empty.
    """
    if not samples or t1 <= t0:
        return []
    points = sorted(samples, key=lambda s: s[0])
    polls_per_bucket = round(LEGACY_BUCKET_S / LEGACY_POLL_PERIOD_S)
    buckets: list[list[float]] = []
    cursor = 0
    k = 0
    while (poll_t := t0 + k * LEGACY_POLL_PERIOD_S) < t1:
        while cursor + 1 < len(points) and points[cursor + 1][0] <= poll_t:
            cursor += 1
        if k % polls_per_bucket == 0:
            buckets.append([])
        buckets[-1].append(points[cursor][1])
        k += 1
    return [math.fsum(b) / len(b) for b in buckets]


def legacy_energy(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> float | None:
    """The seed study's quantity over ``[t0, t1]``: sum of the :func:`legacy_bucket_means` divided by 1000.

    Kept only to compare with published numbers; see :attr:`EnergyReading.legacy_j` (unit: kW, summed). None
    when there is no bucket.
    """
    means = legacy_bucket_means(samples, t0, t1)
    return math.fsum(means) / 1000.0 if means else None


def legacy_as_extracted(bucket_means: Sequence[float], max_rows: int = LEGACY_HISTORY_ROWS) -> float | None:
    """The legacy figure as the study's extraction produced it: the run history it read returned at most
    ``max_rows`` sampled rows, so with more buckets only ``max_rows`` evenly spaced bucket means (first and last
    included) are summed, / 1000 (kW, summed). Equal to the full sum up to ``max_rows`` buckets; above, about
    ``max_rows * mean W / 1000`` however long the run. None without buckets."""
    n = len(bucket_means)
    if n == 0:
        return None
    if n <= max_rows:
        return math.fsum(bucket_means) / 1000.0
    if max_rows == 1:
        return bucket_means[0] / 1000.0
    picked = [bucket_means[round(k * (n - 1) / (max_rows - 1))] for k in range(max_rows)]
    return math.fsum(picked) / 1000.0


def power_uncertainty_j(
    samples: Sequence[tuple[float, float]],
    t0: float,
    t1: float,
    ceiling_w: float | None = None,
    sensor_average_s: float = 0.0,
) -> float:
    """Bound on the error of :func:`integrate_power` over ``[t0, t1]``, joules.

    Assumes the power between two consecutive samples lies between their values, which holds for a sensor
    that updates at most once between samples (sampling faster than it refreshes, as the default 20 Hz does
    against NVML's ~10 Hz). Then the true energy of a whole segment of length ``g`` lies within
    ``|dP| * g / 2`` of its trapezoid, and of a partly covered segment within ``|dP| * overlap``. Parts of
    the window outside the trace (normally none: samples bracket the window) are bounded by
    ``max(ceiling_w, held power) * length``. A sensor that averages over ``A`` seconds moves energy across the
    window edges: ``A / 2 * (max - min)`` of the sampled powers is added for that (an estimate: the true power
    near the edges is not observed). Plus 1 mW of resolution over the window.
    """
    points = sorted(samples, key=lambda s: s[0])
    if not points:
        raise ValueError("power_uncertainty_j needs at least one sample")
    total = 0.001 * (t1 - t0)
    (first_t, first_p), (last_t, last_p) = points[0], points[-1]
    if t0 < first_t:
        total += max(ceiling_w or 0.0, first_p) * (min(t1, first_t) - t0)
    if t1 > last_t:
        total += max(ceiling_w or 0.0, last_p) * (t1 - max(t0, last_t))
    for (ta, pa), (tb, pb) in itertools.pairwise(points):
        lo, hi = max(ta, t0), min(tb, t1)
        if hi <= lo:
            continue
        whole = lo == ta and hi == tb
        total += abs(pb - pa) * ((hi - lo) / 2.0 if whole else hi - lo)
    if sensor_average_s > 0:
        powers = [p for _, p in points]
        total += sensor_average_s / 2.0 * (max(powers) - min(powers))
    return total


def net_energy_j(reading: EnergyReading, idle: IdleBaseline | None) -> float | None:
    """Gross energy minus idle power x window length, joules.

    None when either side is unmeasured or invalid, or when they come from different meters (subtracting a
    RAPL idle power from an NVML energy would be meaningless). Not clamped at zero: a small negative value is
    measurement noise and should stay visible.
    """
    if reading.energy_j is None or not reading.valid:
        return None
    if idle is None or idle.power_w is None or not idle.valid or idle.method != reading.method:
        return None
    return reading.energy_j - idle.power_w * reading.time_s


def measure_idle(meter: Meter, seconds: float, sleep: Callable[[float], None] = time.sleep) -> IdleBaseline:
    """Measure the idle power of ``meter``'s devices over ``seconds`` of doing nothing.

    On a GPU pass at least 10 s: the counter's edge error is one update's energy, spread over the window.
    The baseline's ``uncertainty_w`` is the reading's ``uncertainty_j`` / its length. The GPU's performance
    state and SM / memory clocks are read from ``meter.describe()`` right after the idle window (None where the
    meter does not report them, e.g. RAPL).
    """
    meter.start()
    sleep(seconds)
    reading = meter.stop()
    state = _idle_state(meter.describe())
    if reading.energy_j is None or not reading.valid or reading.time_s <= 0:
        return IdleBaseline(
            power_w=None,
            time_s=reading.time_s,
            method=reading.method,
            valid=False,
            note=f"idle baseline not measured: {reading.note}",
            **state,
        )
    uncertainty_w = None if reading.uncertainty_j is None else reading.uncertainty_j / reading.time_s
    return IdleBaseline(
        power_w=reading.energy_j / reading.time_s,
        time_s=reading.time_s,
        method=reading.method,
        valid=True,
        note=reading.note,
        uncertainty_w=uncertainty_w,
        **state,
    )


def _idle_state(facts: dict[str, object]) -> dict[str, int | None]:
    gpus = facts.get("gpus")
    first = gpus[0] if isinstance(gpus, list) and gpus and isinstance(gpus[0], dict) else {}
    states = [g.get("pstate") for g in gpus if isinstance(g, dict)] if isinstance(gpus, list) else []
    known = [s for s in states if isinstance(s, int)]

    def _int(value: object) -> int | None:
        return int(value) if isinstance(value, (int, float)) else None

    return {
        "pstate": max(known) if known else None,
        "sm_clock_mhz": _int(first.get("sm_clock_mhz")),
        "mem_clock_mhz": _int(first.get("mem_clock_mhz")),
    }

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


def legacy_energy(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> float | None:
    """The seed study's quantity over ``[t0, t1]``: sum of 30-s means of 2-s power polls, divided by 1000.

    The polls are emulated at ``t0, t0 + 2 s, ...`` (before ``t1``), each seeing the latest sample at or before
    its time, as a 2-s poller of the sensor would. A partial last bucket counts as a bucket, as a time-indexed
    resample does. Kept only to compare with published numbers; see :attr:`EnergyReading.legacy_j` (unit: kW,
    summed).
    """
    if not samples or t1 <= t0:
        return None
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
    return sum(math.fsum(b) / len(b) for b in buckets) / 1000.0


def net_energy_j(reading: EnergyReading, idle: IdleBaseline | None) -> float | None:
    """Gross energy minus idle power × window length, joules.

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
    """Measure the idle power of ``meter``'s devices over ``seconds`` of doing nothing."""
    meter.start()
    sleep(seconds)
    reading = meter.stop()
    if reading.energy_j is None or not reading.valid or reading.time_s <= 0:
        return IdleBaseline(
            power_w=None,
            time_s=reading.time_s,
            method=reading.method,
            valid=False,
            note=f"idle baseline not measured: {reading.note}",
        )
    return IdleBaseline(
        power_w=reading.energy_j / reading.time_s,
        time_s=reading.time_s,
        method=reading.method,
        valid=True,
        note=reading.note,
    )

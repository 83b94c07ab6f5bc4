"""Counters that advance in ticks: measuring the update period, waiting for a tick, and the error bound of a
window read at its edges.

A counter that the driver refreshes every ``P`` seconds reads, at time ``t``, the energy integrated up to its
last update ``tau(t) <= t``. A window read at ``t0`` and ``t1`` therefore reports ``E(tau(t1)) - E(tau(t0))``
while the truth is ``E(t1) - E(t0)``; the error is ``a - b`` with ``a = E(t0) - E(tau(t0))`` and
``b = E(t1) - E(tau(t1))``, both between 0 and the energy of one update interval. Since both are non-negative,
``|a - b| <= max(a, b)``: one update's worth of energy, not two.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass

#: A window shorter than this many update periods is flagged coarse (valid, never gated): its edge error, up to
#: one update's energy, is then 10 % or more of the energy it measures.
COARSE_PERIODS = 10.0

#: Changes of the counter :func:`measure_update_period` waits for; the median of the intervals between them
#: is the period. Six changes give five intervals, enough for a median robust to one late poll.
PERIOD_TICKS = 6


@dataclass(frozen=True)
class UpdatePeriod:
    """What :func:`measure_update_period` found out about a counter's refresh."""

    period_s: float
    """Median interval between counter changes, seconds (the assumed period when not measured)."""
    max_interval_s: float
    """Longest interval seen between changes, seconds; the error bound uses it (jitter-safe). Equals
    ``period_s`` when not measured."""
    increments: tuple[int, ...]
    """Counter units each observed tick added (empty when not measured)."""
    measured: bool
    """Whether the period was measured (False: the assumed value, see ``note``)."""
    note: str
    """How the period was obtained."""
    last_tick_s: float | None
    """Clock time at which the last change was seen, seconds, giving the tick phase; None when not measured."""

    def describe(self) -> dict[str, object]:
        """The period as environment facts (seconds, counts)."""
        return {
            "counter_update_period_s": self.period_s,
            "counter_update_max_interval_s": self.max_interval_s,
            "counter_update_measured": self.measured,
            "counter_update_note": self.note,
        }


def measure_update_period(
    read_counter: Callable[[], int],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    assumed_s: float,
    max_s: float = 2.0,
    poll_s: float | None = None,
) -> UpdatePeriod:
    """Poll ``read_counter`` every ``poll_s`` (default ``assumed_s / 20``) until it has changed
    :data:`PERIOD_TICKS` times, and return the median interval between changes.

    Gives up after ``max_s`` seconds of ``clock`` (or as many polls, if the clock does not move) and returns
    ``assumed_s`` with a note saying why: a counter that does not move (no load and a coarse counter) or a
    counter that fails to read. Each change time is known to within one poll, so intervals are too.
    """
    step = poll_s if poll_s is not None else assumed_s / 20.0
    start = clock()
    changes: list[tuple[float, int]] = []
    try:
        last = read_counter()
        for _ in range(int(max_s / step) + 2):
            if clock() - start > max_s or len(changes) >= PERIOD_TICKS:
                break
            before = clock()
            sleep(step)
            if clock() == before:
                return _assumed(assumed_s, "the clock did not move while sleeping (an injected clock?)")
            value = read_counter()
            if value != last:
                changes.append((clock(), value - last))
                last = value
    except Exception as exc:  # noqa: BLE001 - any failure means "not measured"; the meter reports reads itself
        return _assumed(assumed_s, f"counter read failed while measuring its period ({exc})")
    if len(changes) < 3:
        return _assumed(assumed_s, f"counter changed {len(changes)} time(s) in {max_s:g} s of polling")
    intervals = [b[0] - a[0] for a, b in itertools.pairwise(changes)]
    period = statistics.median(intervals)
    return UpdatePeriod(
        period_s=period,
        max_interval_s=max(intervals),
        increments=tuple(inc for _, inc in changes[1:]),
        measured=True,
        note=f"measured: median of {len(intervals)} intervals between counter changes, polled every {step:.4g} s",
        last_tick_s=changes[-1][0],
    )


def _assumed(assumed_s: float, why: str) -> UpdatePeriod:
    note = f"assumed {assumed_s:g} s: {why}"
    return UpdatePeriod(assumed_s, assumed_s, (), False, note, None)


@dataclass(frozen=True)
class Tick:
    """A counter change seen by :func:`wait_for_tick`."""

    time_s: float
    """Clock time the change was seen, seconds."""
    lag_s: float
    """Time between the last poll that saw the old value and this one, seconds: the tick happened within it."""
    before: int
    """The counter's value before the tick, counter units."""
    after: int
    """Its value after the tick, counter units."""


def wait_for_tick(
    read_counter: Callable[[], int],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    poll_s: float,
    max_wait_s: float,
) -> Tick | None:
    """Poll until the counter changes, at most ``max_wait_s``; None if it did not (or a read failed)."""
    try:
        before = read_counter()
        previous = clock()
        start = previous
        for _ in range(int(max_wait_s / poll_s) + 2):
            sleep(poll_s)
            value = read_counter()
            now = clock()
            if now == previous:
                return None  # the clock does not move while sleeping: nothing to align to
            if value != before:
                return Tick(now, now - previous, before, value)
            if now - start > max_wait_s:
                return None
            previous = now
    except Exception:  # noqa: BLE001 - a failed read here only means "not aligned"; the window's reads report it
        return None
    return None


def edge_bound_j(ceiling_w: float, period: UpdatePeriod, resolution_j: float) -> float:
    """Error bound of a window read at unaligned edges, joules: ``ceiling_w * max_interval_s + resolution_j``.

    One update's worth of energy (see the module docstring) at the highest plausible power, over the longest
    update interval seen, plus one counter unit for the truncation of the two reads.
    """
    return ceiling_w * period.max_interval_s + resolution_j


def is_coarse(time_s: float, period: UpdatePeriod) -> bool:
    """Whether a window of ``time_s`` seconds is shorter than :data:`COARSE_PERIODS` update periods."""
    return time_s < COARSE_PERIODS * period.period_s

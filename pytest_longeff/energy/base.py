"""The :class:`Meter` protocol, and :class:`CounterMeter`, the shared logic of meters that read energy counters."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Protocol

from pytest_longeff.energy.readings import EnergyReading, Inspection, invalid_reading
from pytest_longeff.energy.ticks import UpdatePeriod, edge_bound_j, is_coarse, measure_update_period, wait_for_tick


class Meter(Protocol):
    """One way of measuring energy over a window."""

    method: str
    """The meter's name as recorded in :attr:`EnergyReading.method`."""

    def start(self) -> None:
        """Open a window (the caller has already synchronised the device). Starting again restarts it."""
        ...

    def read(self) -> EnergyReading:
        """Energy since :meth:`start`, leaving the window open (for budgets that watch energy as it is spent).

        Same rules as :meth:`stop`: errors give an invalid reading. Raises RuntimeError outside a window.
        """
        ...

    def stop(self) -> EnergyReading:
        """Close the window and return its reading. Measurement errors give an invalid reading, not an exception."""
        ...

    def close(self) -> None:
        """Release resources (threads, the NVML session). Idempotent."""
        ...

    def describe(self) -> dict[str, object]:
        """Facts about the measured environment (device names, driver, power limit in W, clocks in MHz), or {}."""
        ...


class CounterReadError(Exception):
    """A counter could not be read; the message is the detail that follows "... at window start: "."""


class CounterMeter(ABC):
    """A meter that reads monotonic energy counters at the window's edges (and at :meth:`read`).

    Subclasses supply :meth:`_read_counters` and their constants. A counter that went down is an invalid reading
    ("went backwards", e.g. a driver reload or device reset) unless the subclass's :meth:`_counter_delta`
    explains it as a wrap-around.

    **Uncertainty.** The counters advance only every update period ``P``, measured once per meter by
    :func:`~pytest_longeff.energy.ticks.measure_update_period` (``update_period``). Read at unaligned edges, a
    window is off by at most one update's energy (see :mod:`pytest_longeff.energy.ticks`), so
    ``uncertainty_j = W_max * P_max + 1 unit``, with ``P_max`` the longest update interval seen and ``W_max``
    the power ceiling: the largest of the device's power limit (:meth:`_power_ceiling_w`), the window's mean
    power and the largest per-tick increment seen / P. Sound as long as the power averaged over one update
    interval stays below the limit; where no limit is known, twice the window's mean power stands in (said in
    the note). With ``align=True``, :meth:`start` waits for the next tick (at most one period, spent before the
    window opens) and :meth:`stop` waits for the tick after the window (at most one period, after it closed)
    to see the energy of the update interval that holds the end: then
    ``uncertainty_j = max(W_max * start_lag, end_increment) + 1 unit``, which follows the actual power instead
    of the limit. Windows shorter than 10 periods are ``coarse``; shorter than one period, invalid.
    """

    method: str
    """The meter's name, set by each subclass."""
    units_per_joule: ClassVar[float]
    """Counter units in one joule (1000 for millijoules, 1e6 for microjoules)."""
    read_error_prefix: ClassVar[str] = "counter read failed"
    """Start of the note when a read fails, e.g. "NVML error" (then " at window start: <detail>")."""
    still_note: ClassVar[str] = "energy counters did not move over {time_s:.3f} s"
    """Note when no counter moved; formatted with ``time_s``."""
    assumed_period_s: ClassVar[float] = 0.001
    """Update period assumed when it cannot be measured, seconds."""
    period_probe_s: ClassVar[float] = 0.05
    """Longest time spent measuring the update period, seconds."""
    short_window_note: ClassVar[str] = "window of {time_ms:.1f} ms is shorter than {min_ms:.1f} ms"
    """Note for a window shorter than one update period; formatted with ``time_ms`` and ``min_ms``."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        align: bool = False,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._align = align
        self._period: UpdatePeriod | None = None
        self._t0: float | None = None
        self._start_counts: list[int] | None = None
        self._start_error: str | None = None
        self._start_lag_s: float | None = None
        self._start_inspection = Inspection()

    @abstractmethod
    def _read_counters(self) -> list[int]:
        """Every counter's current value in counter units; raises :class:`CounterReadError` on failure."""

    @abstractmethod
    def _valid_note(self) -> str:
        """How a valid reading was obtained."""

    def _power_ceiling_w(self) -> float | None:
        """Highest plausible power of the measured devices together, watts; None when unknown."""
        return None

    def _inspect(self) -> Inspection:
        """Sharing and throttling of the measured devices now (nothing by default)."""
        return Inspection()

    def _counter_delta(self, index: int, start: int, end: int, time_s: float) -> int | str:
        """Units counter ``index`` advanced by over ``time_s`` seconds, or why that cannot be known."""
        if end >= start:
            return end - start
        return f"energy counter {index} went backwards ({start} -> {end}; device reset?)"

    def _read_total(self) -> int:
        return sum(self._read_counters())

    @property
    def update_period(self) -> UpdatePeriod:
        """The counters' update period, measured on first use (at most :attr:`period_probe_s` seconds)."""
        if self._period is None:
            self._period = measure_update_period(
                self._read_total, self._clock, self._sleep, self.assumed_period_s, self.period_probe_s
            )
        return self._period

    def start(self) -> None:
        """Read the counters and open the window; a failed read makes this window's readings invalid.

        With ``align``, first wait for the next counter tick (at most about one period) so the window opens
        on it."""
        period = self.update_period
        self._start_error = None
        self._start_counts = None
        self._start_lag_s = None
        self._start_inspection = self._inspect()
        tick = None
        if self._align:
            tick = wait_for_tick(
                self._read_total, self._clock, self._sleep, period.period_s / 20.0, 1.5 * period.max_interval_s
            )
        try:
            self._start_counts = self._read_counters()
        except CounterReadError as exc:
            self._start_error = f"{self.read_error_prefix} at window start: {exc}"
        self._t0 = self._clock()
        if tick is not None:
            self._start_lag_s = tick.lag_s + (self._t0 - tick.time_s)

    def read(self) -> EnergyReading:
        """Energy since :meth:`start` from a fresh counter read; the window stays open (never waits a tick)."""
        if self._t0 is None:
            raise RuntimeError("read() called before start()")
        return self._measure(self._clock() - self._t0, final=False)

    def stop(self) -> EnergyReading:
        """Close the window and return the energy the counters advanced by."""
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        time_s = self._clock() - self._t0
        self._t0 = None
        return self._measure(time_s, final=True)

    def _measure(self, time_s: float, final: bool) -> EnergyReading:
        inspection = self._start_inspection.merge(self._inspect())
        if self._start_error is not None or self._start_counts is None:
            note = self._start_error or "no counter read at window start"
            return invalid_reading(self.method, time_s, note, seen=inspection)
        try:
            end_counts = self._read_counters()
        except CounterReadError as exc:
            note = f"{self.read_error_prefix} at window end: {exc}"
            return invalid_reading(self.method, time_s, note, samples=1, seen=inspection)
        total = 0
        for index, (start, end) in enumerate(zip(self._start_counts, end_counts, strict=True)):
            delta = self._counter_delta(index, start, end, time_s)
            if isinstance(delta, str):
                return invalid_reading(self.method, time_s, delta, samples=2, seen=inspection)
            total += delta
        period = self.update_period
        problem = self._window_problem(time_s, total, period, inspection)
        if problem is not None:
            return invalid_reading(self.method, time_s, problem, samples=2, seen=inspection)
        energy_j = total / self.units_per_joule
        bound_j, how = self._bound(energy_j, time_s, sum(end_counts) if final else None)
        return EnergyReading(
            energy_j=energy_j,
            time_s=time_s,
            method=self.method,
            valid=True,
            note=f"{self._valid_note()}; update period {period.period_s * 1000:.1f} ms ({period.note}); {how}"
            + inspection.note_suffix(),
            samples=2,
            max_gap_s=None,
            legacy_j=None,
            uncertainty_j=bound_j,
            coarse=is_coarse(time_s, period),
            update_period_s=period.period_s,
            other_processes=inspection.other_processes,
            throttle_reasons=inspection.throttle_reasons,
        )

    def _window_problem(self, time_s: float, total: int, period: UpdatePeriod, inspection: Inspection) -> str | None:
        if inspection.problems:
            return "; ".join(inspection.problems)
        if time_s < period.period_s:
            return self.short_window_note.format(time_ms=time_s * 1000, min_ms=period.period_s * 1000)
        if total == 0:
            return self.still_note.format(time_s=time_s)
        return None

    def _ceiling_w(self, energy_j: float, time_s: float) -> tuple[float, str]:
        period = self.update_period
        mean_w = energy_j / time_s if time_s > 0 else 0.0
        tick_w = max(period.increments, default=0) / self.units_per_joule / max(period.period_s, 1e-12)
        limit = self._power_ceiling_w()
        if limit is None:
            return max(2.0 * mean_w, tick_w), "power ceiling 2x the window's mean power (no power limit known)"
        return max(limit, mean_w, tick_w), f"power ceiling {max(limit, mean_w, tick_w):.0f} W"

    def _bound(self, energy_j: float, time_s: float, end_total: int | None) -> tuple[float, str]:
        """The uncertainty in joules and how it was obtained (see the class docstring)."""
        period = self.update_period
        ceiling_w, ceiling_how = self._ceiling_w(energy_j, time_s)
        resolution_j = 1.0 / self.units_per_joule
        if self._align and self._start_lag_s is not None and end_total is not None:
            tick = wait_for_tick(
                self._read_total, self._clock, self._sleep, period.period_s / 20.0, 1.5 * period.max_interval_s
            )
            if tick is not None and tick.before == end_total:
                end_j = (tick.after - tick.before) / self.units_per_joule
                bound = max(ceiling_w * self._start_lag_s, end_j) + resolution_j
                return bound, f"edges aligned to counter ticks, {ceiling_how}"
        return edge_bound_j(ceiling_w, period, resolution_j), f"unaligned edges, {ceiling_how}"

    def describe_period(self) -> dict[str, object]:
        """The update period facts (see :meth:`UpdatePeriod.describe`) and whether edges are aligned."""
        return {**self.update_period.describe(), "align_to_ticks": self._align}

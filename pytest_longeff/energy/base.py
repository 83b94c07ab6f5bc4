"""The :class:`Meter` protocol, and :class:`CounterMeter`, the shared logic of meters that read energy counters."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Protocol

from pytest_longeff.energy.readings import EnergyReading, Inspection, invalid_reading
from pytest_longeff.energy.ticks import UpdatePeriod, edge_bound_j, is_coarse, measure_update_period, wait_for_tick
from pytest_longeff.energy.watch import WindowWatch


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


class DeviceChecks(Protocol):
    """Watches the measured devices for sharing and throttling over one window at a time."""

    def open(self) -> None:
        """Begin a window's checks (ending an earlier window's)."""
        ...

    def seen(self, final: bool) -> Inspection:
        """What was seen since :meth:`open`; ``final`` ends the checks."""
        ...

    def close(self) -> None:
        """End the checks (threads included). Idempotent."""
        ...


class CounterReadError(Exception):
    """A counter could not be read; the message is the detail that follows "... at window start: "."""


class _Chain:
    """One window's counters, read after read: the units each advanced by so far, each step checked (a wrap-around
    undone, a reset refused) by the meter's ``_counter_delta``. Shared with the window's poll thread: hold
    :attr:`lock` around a read and its :meth:`advance`."""

    def __init__(self, counts: list[int], time_s: float, delta: Callable[[int, int, int, float], int | str]) -> None:
        self.lock = threading.Lock()
        self.open = True
        """False once the window's end was read: later polls must not read again."""
        self.progress = [0] * len(counts)
        """Units each counter advanced by from the window's start to the last read."""
        self.error: str | None = None
        """Why the energy cannot be known (a counter that went backwards), from the first bad step on."""
        self._last = counts
        self._last_s = time_s
        self._delta = delta

    def advance(self, counts: list[int], time_s: float) -> None:
        """Add the step from the last read to this one (``counts`` read at ``time_s``)."""
        if self.error is not None:
            return
        steps: list[int] = []
        for index, (before, after) in enumerate(zip(self._last, counts, strict=True)):
            step = self._delta(index, before, after, time_s - self._last_s)
            if isinstance(step, str):
                self.error = step
                return
            steps.append(step)
        self.progress = [done + step for done, step in zip(self.progress, steps, strict=True)]
        self._last, self._last_s = counts, time_s


class CounterMeter(ABC):
    """A meter that reads monotonic energy counters at the window's edges (and at :meth:`read`).

    Subclasses supply :meth:`_read_counters` and their constants. A counter that went down is an invalid reading
    ("went backwards", e.g. a driver reload or device reset) unless the subclass's :meth:`_counter_delta`
    explains it as a wrap-around. A counter that can wrap within a window is also read every
    :meth:`_poll_period_s` seconds on a daemon thread while the window is open, so that each step between reads
    holds at most one wrap-around and all of them are counted; the thread ends with the window (or at
    :meth:`close`). ``checks`` watch the measured devices for sharing and throttling; :meth:`stop` reads the
    time and the counters first and asks the checks after, so the energy covers exactly ``time_s``.

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
    of the limit. Windows shorter than 10 periods are ``coarse``; shorter than one period, invalid. The bound is
    the counter's quantisation in time only: how faithfully the device's counter integrates its power is not
    in it.
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
        checks: DeviceChecks | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._align = align
        self._device_checks = checks
        self._period: UpdatePeriod | None = None
        self._t0: float | None = None
        self._chain: _Chain | None = None
        self._watch: WindowWatch | None = None
        self._start_error: str | None = None
        self._start_lag_s: float | None = None

    @abstractmethod
    def _read_counters(self) -> list[int]:
        """Every counter's current value in counter units; raises :class:`CounterReadError` on failure."""

    @abstractmethod
    def _valid_note(self) -> str:
        """How a valid reading was obtained."""

    def _power_ceiling_w(self) -> float | None:
        """Highest plausible power of the measured devices together, watts; None when unknown."""
        return None

    def _poll_period_s(self) -> float | None:
        """Seconds between reads inside a window, short enough for at most one wrap-around between two reads;
        None when the counters cannot wrap within any window (then only the edges are read)."""
        return None

    def _release(self) -> None:
        """Release the meter's own resources (nothing by default)."""

    def _counter_delta(self, index: int, start: int, end: int, elapsed_s: float) -> int | str:
        """Units counter ``index`` advanced by between two reads ``elapsed_s`` seconds apart, or why that cannot
        be known."""
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
        """Open the window: begin the checks, then read the counters (the window's first instant); a failed read
        makes this window's readings invalid.

        With ``align``, first wait for the next counter tick (at most about one period) so the window opens
        on it."""
        period = self.update_period
        self._end_watch()
        self._start_error = None
        self._chain = None
        self._start_lag_s = None
        if self._device_checks is not None:
            self._device_checks.open()
        tick = None
        if self._align:
            tick = wait_for_tick(
                self._read_total, self._clock, self._sleep, period.period_s / 20.0, 1.5 * period.max_interval_s
            )
        counts: list[int] | None = None
        try:
            counts = self._read_counters()
        except CounterReadError as exc:
            self._start_error = f"{self.read_error_prefix} at window start: {exc}"
        self._t0 = self._clock()
        if counts is not None:
            self._chain = _Chain(counts, self._t0, self._counter_delta)
            self._begin_watch(self._chain)
        if tick is not None:
            self._start_lag_s = tick.lag_s + (self._t0 - tick.time_s)

    def _begin_watch(self, chain: _Chain) -> None:
        poll_s = self._poll_period_s()
        if poll_s is None:
            return

        def poll() -> None:
            with chain.lock:
                if not chain.open:
                    return
                try:
                    counts = self._read_counters()
                except CounterReadError:
                    return  # The next read, at the latest the window's end, takes the step instead.
                chain.advance(counts, self._clock())

        self._watch = WindowWatch(poll, poll_s, self.method)
        self._watch.start()

    def _end_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()

    def read(self) -> EnergyReading:
        """Energy since :meth:`start` from a fresh counter read; the window stays open (never waits a tick)."""
        if self._t0 is None:
            raise RuntimeError("read() called before start()")
        return self._measure(final=False)

    def stop(self) -> EnergyReading:
        """Close the window and return the energy the counters advanced by; the poll thread, if any, has ended
        when this returns, whatever happened."""
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        try:
            return self._measure(final=True)
        finally:
            self._t0 = None
            self._end_threads()

    def close(self) -> None:
        """End a window's threads, if any, and release the meter's resources. Idempotent."""
        self._end_threads()
        self._release()

    def _end_threads(self) -> None:
        self._end_watch()
        if self._device_checks is not None:
            self._device_checks.close()

    def _read_end(self, final: bool) -> tuple[float, list[int] | str | None]:
        """The time and the counters now, read before anything else, with the step to them taken: the counters,
        why they could not be read, or None when the window has no start read to step from."""
        chain = self._chain
        if chain is None:
            return self._clock(), None
        with chain.lock:
            now = self._clock()
            try:
                counts = self._read_counters()
            except CounterReadError as exc:
                return now, f"{self.read_error_prefix} at window end: {exc}"
            chain.advance(counts, self._clock())  # stamped after the read, as the start read and the polls are
            chain.open = not final
        return now, counts

    def _measure(self, final: bool) -> EnergyReading:
        assert self._t0 is not None
        now, end_counts = self._read_end(final)
        time_s = now - self._t0
        if final:
            self._end_watch()
        inspection = Inspection() if self._device_checks is None else self._device_checks.seen(final)
        chain = self._chain
        if chain is None or end_counts is None:
            note = self._start_error or "no counter read at window start"
            return invalid_reading(self.method, time_s, note, seen=inspection)
        if isinstance(end_counts, str):
            return invalid_reading(self.method, time_s, end_counts, samples=1, seen=inspection)
        if chain.error is not None:
            return invalid_reading(self.method, time_s, chain.error, samples=2, seen=inspection)
        total = sum(chain.progress)
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

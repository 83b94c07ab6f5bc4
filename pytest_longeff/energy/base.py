"""The :class:`Meter` protocol, and :class:`CounterMeter`, the shared logic of meters that read energy counters."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Protocol

from pytest_longeff.energy.readings import EnergyReading, invalid_reading


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
    """

    method: str
    """The meter's name, set by each subclass."""
    units_per_joule: ClassVar[float]
    """Counter units in one joule (1000 for millijoules, 1e6 for microjoules)."""
    read_error_prefix: ClassVar[str] = "counter read failed"
    """Start of the note when a read fails, e.g. "NVML error" (then " at window start: <detail>")."""
    still_note: ClassVar[str] = "energy counters did not move over {time_s:.3f} s"
    """Note when no counter moved; formatted with ``time_s``."""
    min_window_s: ClassVar[float] = 0.0
    """Windows shorter than this, seconds, are invalid (the counters refresh too rarely to resolve them)."""
    short_window_note: ClassVar[str] = "window of {time_ms:.1f} ms is shorter than {min_ms:.0f} ms"
    """Note for a too-short window; formatted with ``time_ms`` and ``min_ms``."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._t0: float | None = None
        self._start_counts: list[int] | None = None
        self._start_error: str | None = None

    @abstractmethod
    def _read_counters(self) -> list[int]:
        """Every counter's current value in counter units; raises :class:`CounterReadError` on failure."""

    @abstractmethod
    def _valid_note(self) -> str:
        """How a valid reading was obtained."""

    def _counter_delta(self, index: int, start: int, end: int, time_s: float) -> int | str:
        """Units counter ``index`` advanced by over ``time_s`` seconds, or why that cannot be known."""
        if end >= start:
            return end - start
        return f"energy counter {index} went backwards ({start} -> {end}; device reset?)"

    def start(self) -> None:
        """Read the counters and open the window; a failed read makes this window's readings invalid."""
        self._start_error = None
        self._start_counts = None
        try:
            self._start_counts = self._read_counters()
        except CounterReadError as exc:
            self._start_error = f"{self.read_error_prefix} at window start: {exc}"
        self._t0 = self._clock()

    def read(self) -> EnergyReading:
        """Energy since :meth:`start` from a fresh counter read; the window stays open."""
        if self._t0 is None:
            raise RuntimeError("read() called before start()")
        return self._measure(self._clock() - self._t0)

    def stop(self) -> EnergyReading:
        """Close the window and return the energy the counters advanced by."""
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        time_s = self._clock() - self._t0
        self._t0 = None
        return self._measure(time_s)

    def _measure(self, time_s: float) -> EnergyReading:
        if self._start_error is not None or self._start_counts is None:
            return invalid_reading(self.method, time_s, self._start_error or "no counter read at window start")
        try:
            end_counts = self._read_counters()
        except CounterReadError as exc:
            return invalid_reading(
                self.method, time_s, f"{self.read_error_prefix} at window end: {exc}", samples=1
            )
        total = 0
        for index, (start, end) in enumerate(zip(self._start_counts, end_counts)):
            delta = self._counter_delta(index, start, end, time_s)
            if isinstance(delta, str):
                return invalid_reading(self.method, time_s, delta, samples=2)
            total += delta
        if time_s < self.min_window_s:
            note = self.short_window_note.format(time_ms=time_s * 1000, min_ms=self.min_window_s * 1000)
            return invalid_reading(self.method, time_s, note, samples=2)
        if total == 0:
            return invalid_reading(self.method, time_s, self.still_note.format(time_s=time_s), samples=2)
        return EnergyReading(
            energy_j=total / self.units_per_joule,
            time_s=time_s,
            method=self.method,
            valid=True,
            note=self._valid_note(),
            samples=2,
            max_gap_s=None,
            legacy_j=None,
        )

"""The null meter: measures time only, for machines (or choices) without an energy meter."""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_longeff.energy.readings import EnergyReading, invalid_reading

NO_METER_NOTE = "no energy meter selected"


class NullMeter:
    """Measures time only; energy is None with a note saying why."""

    method = "none"

    def __init__(self, note: str = NO_METER_NOTE, clock: Callable[[], float] = time.perf_counter) -> None:
        self._note = note
        self._clock = clock
        self._t0: float | None = None

    def start(self) -> None:
        """Open the window."""
        self._t0 = self._clock()

    def read(self) -> EnergyReading:
        """Time so far, energy unmeasured; the window stays open."""
        if self._t0 is None:
            raise RuntimeError("read() called before start()")
        return invalid_reading(self.method, self._clock() - self._t0, self._note)

    def stop(self) -> EnergyReading:
        """Close the window: its length, energy unmeasured."""
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        time_s = self._clock() - self._t0
        self._t0 = None
        return invalid_reading(self.method, time_s, self._note)

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> dict[str, object]:
        """No facts."""
        return {}

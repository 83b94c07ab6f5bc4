"""The estimate meter: process CPU time times a nominal power per busy core. An estimate, never a measurement."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from pytest_longeff.energy.readings import EnergyReading

#: The ``estimate`` meter charges this many watts for each second of process CPU time, i.e. it assumes a busy
#: core of a current server CPU draws about 10 W above idle. It is an order-of-magnitude figure, not a
#: measurement; results from it are labelled as estimates everywhere.
ESTIMATE_W_PER_BUSY_CORE = 10.0


class EstimateMeter:
    """Process CPU time x :data:`ESTIMATE_W_PER_BUSY_CORE`. An estimate, never a measurement; CPU only."""

    method = "estimate"

    def __init__(
        self,
        w_per_busy_core: float = ESTIMATE_W_PER_BUSY_CORE,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self._w = w_per_busy_core
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._t0: float | None = None
        self._cpu0 = 0.0

    def start(self) -> None:
        """Note the process CPU time and open the window."""
        self._cpu0 = self._cpu_clock()
        self._t0 = self._clock()

    def read(self) -> EnergyReading:
        """The estimate so far; the window stays open."""
        if self._t0 is None:
            raise RuntimeError("read() called before start()")
        return self._reading(self._clock() - self._t0)

    def stop(self) -> EnergyReading:
        """Close the window and return the estimate."""
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        time_s = self._clock() - self._t0
        self._t0 = None
        return self._reading(time_s)

    def _reading(self, time_s: float) -> EnergyReading:
        cpu_s = self._cpu_clock() - self._cpu0
        return EnergyReading(
            energy_j=cpu_s * self._w,
            time_s=time_s,
            method=self.method,
            valid=True,
            note=(
                f"ESTIMATE, not a measurement: {cpu_s:.3f} s of process CPU time x {self._w:g} W per busy core "
                "(GPU and idle power not included)"
            ),
            samples=2,
            max_gap_s=None,
            legacy_j=None,
        )

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> dict[str, object]:
        """The assumed watts per busy core and the CPU count."""
        return {"estimate_w_per_busy_core": self._w, "cpu_count": os.cpu_count()}

"""The seed study's legacy figure as an opt-in wrapper: a 2-s power poll beside any meter."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

from pytest_longeff.energy.arithmetic import LEGACY_POLL_PERIOD_S, legacy_as_extracted, legacy_bucket_means
from pytest_longeff.energy.base import Meter
from pytest_longeff.energy.readings import EnergyReading
from pytest_longeff.energy.sampler import PowerSampler


class LegacyFigure:
    """Wraps a meter and fills in :attr:`EnergyReading.legacy_j` (with ``legacy_buckets`` and
    ``legacy_as_extracted``) from a power source polled every 2 s.

    The inner meter measures the energy; this adds only the seed study's "sum of 30-s mean power / 1000" (kW,
    summed), for comparison with published results. Its cost is one call of ``read_power_w`` per 2 s on a
    daemon thread that runs while a window is open. Invalid readings keep ``legacy_j`` None, as do windows in
    which the power source failed.
    """

    def __init__(
        self,
        inner: Meter,
        read_power_w: Callable[[], float],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.inner = inner
        """The wrapped meter."""
        self.method = inner.method
        self._clock = clock
        self._sampler = PowerSampler(read_power_w, 1.0 / LEGACY_POLL_PERIOD_S, clock)
        self._t0: float | None = None

    def start(self) -> None:
        """Start polling, then open the inner meter's window."""
        self._sampler.start()
        self.inner.start()
        self._t0 = self._clock()

    def read(self) -> EnergyReading:
        """The inner meter's reading so far, with the legacy figure over the polls so far."""
        if self._t0 is None:
            raise RuntimeError("read() called before start()")
        t1 = self._clock()
        return self._with_legacy(self.inner.read(), self._t0, t1)

    def stop(self) -> EnergyReading:
        """Close the inner meter's window, stop polling, and add the legacy figure to a valid reading."""
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        t0, t1 = self._t0, self._clock()
        self._t0 = None
        try:
            reading = self.inner.stop()
        finally:
            self._sampler.stop()
        return self._with_legacy(reading, t0, t1)

    def _with_legacy(self, reading: EnergyReading, t0: float, t1: float) -> EnergyReading:
        if not reading.valid or self._sampler.error is not None:
            return reading
        means = legacy_bucket_means(self._sampler.samples(), t0, t1)
        if not means:
            return reading
        return dataclasses.replace(
            reading,
            legacy_j=math.fsum(means) / 1000.0,
            legacy_buckets=len(means),
            legacy_as_extracted=legacy_as_extracted(means),
        )

    def close(self) -> None:
        """Stop polling and close the inner meter. Idempotent."""
        self._sampler.stop()
        self.inner.close()

    def describe(self) -> dict[str, object]:
        """The inner meter's facts."""
        return self.inner.describe()

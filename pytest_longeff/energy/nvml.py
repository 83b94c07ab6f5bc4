"""The two NVML meters: the total-energy counter (Volta and newer) and sampled, integrated power (any GPU)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_longeff.energy.arithmetic import integrate_power, legacy_energy, max_sample_gap
from pytest_longeff.energy.base import CounterMeter, CounterReadError
from pytest_longeff.energy.nvml_session import NvmlSession
from pytest_longeff.energy.readings import EnergyReading, invalid_reading
from pytest_longeff.energy.sampler import DEFAULT_SAMPLE_HZ, PowerSampler

#: NVML refreshes the total-energy counter (and the power reading) about every 100 ms; a window shorter than
#: this sees zero or one update, so its delta says nothing about the window.
NVML_UPDATE_PERIOD_S = 0.1

#: A gap between power samples longer than this many sampling periods is called out in the reading's note (the
#: sampling thread was starved, e.g. by a workload holding the GIL). The reading stays valid: the integrator
#: interpolates across the gap.
GAP_WARN_PERIODS = 5.0


class NvmlCounterMeter(CounterMeter):
    """Reads NVML's total-energy counter (millijoules since driver load) at window start and stop.

    The most accurate NVML method on Volta and newer: the driver integrates power internally. Summed over the
    measured GPUs. The counter is 64-bit: at 1 kW it would wrap after about 585,000 years, so a decrease is
    never a wrap-around but a driver reload or GPU reset, and the reading is invalid.
    """

    method = "nvml"
    units_per_joule = 1000.0
    read_error_prefix = "NVML error"
    still_note = "NVML energy counter did not move over {time_s:.3f} s; the driver is not updating it"
    min_window_s = NVML_UPDATE_PERIOD_S
    short_window_note = (
        "window of {time_ms:.1f} ms is shorter than the NVML energy counter's update period ({min_ms:.0f} ms); "
        "measure a longer window"
    )

    def __init__(self, session: NvmlSession, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(clock)
        self._session = session

    def read_power_w(self) -> float:
        """Total power of the measured GPUs now, watts (the legacy figure's power source)."""
        return self._session.read_power_w()

    def _read_counters(self) -> list[int]:
        nvml = self._session.nvml
        try:
            return [int(nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._session.handles]
        except nvml.NVMLError as exc:
            raise CounterReadError(f"{type(exc).__name__}: {exc}") from exc

    def _counter_delta(self, index: int, start: int, end: int, time_s: float) -> int | str:
        if end >= start:
            return end - start
        gpu = self._session.indices[index]
        return (
            f"NVML energy counter of GPU {gpu} went backwards ({start} -> {end} mJ; driver reload or GPU reset?)"
        )

    def _valid_note(self) -> str:
        return f"NVML total-energy counter, {len(self._session.handles)} GPU(s)"

    def close(self) -> None:
        """Shut the NVML session down. Idempotent."""
        self._session.close()

    def describe(self) -> dict[str, object]:
        """Driver version and, per GPU, name, power limit (W) and clocks (MHz)."""
        return self._session.describe()


class NvmlPowerMeter:
    """Samples NVML power (milliwatts) on a background thread and integrates it with the trapezoid rule.

    For GPUs without the energy counter. On many data-centre GPUs the reported power is itself a ~1 s moving
    average, so short windows are smeared; prefer the counter where it exists. The trace also gives the seed
    study's legacy figure at no extra cost, unless ``legacy`` is False.
    """

    method = "nvml-power"

    def __init__(
        self,
        session: NvmlSession,
        sample_hz: float = DEFAULT_SAMPLE_HZ,
        clock: Callable[[], float] = time.perf_counter,
        legacy: bool = True,
    ) -> None:
        self._session = session
        self._clock = clock
        self._legacy = legacy
        self._sampler = PowerSampler(session.read_power_w, sample_hz, clock)
        self._t0: float | None = None

    @property
    def sampler(self) -> PowerSampler:
        """The sampling thread's controller (for overhead measurements such as its CPU time)."""
        return self._sampler

    def start(self) -> None:
        """Start the sampling thread and open the window."""
        # The first sample is taken before the window opens, so the window is bracketed by samples.
        self._sampler.start()
        self._t0 = self._clock()

    def read(self) -> EnergyReading:
        """Energy so far, integrated over the trace up to now; sampling goes on."""
        if self._t0 is None:
            raise RuntimeError("read() called before start()")
        t1 = self._clock()
        if self._sampler.error is None:
            # A sample on this thread brackets the read's end, as the one after stop() brackets the window's.
            self._sampler.sample_once()
        return self._reading(self._t0, t1)

    def stop(self) -> EnergyReading:
        """Stop sampling and integrate the window's trace."""
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        t0, t1 = self._t0, self._clock()
        self._t0 = None
        self._sampler.stop()
        if self._sampler.error is None:
            self._sampler.sample_once()
        return self._reading(t0, t1)

    def _reading(self, t0: float, t1: float) -> EnergyReading:
        time_s = t1 - t0
        samples = self._sampler.samples()
        error = self._sampler.error
        if error is not None:
            return invalid_reading(self.method, time_s, f"NVML power sampling failed: {error}", len(samples))
        if len(samples) < 2:
            note = f"only {len(samples)} power sample(s); at least 2 are needed"
            return invalid_reading(self.method, time_s, note, len(samples))
        gap_s = max_sample_gap([t for t, _ in samples], t0, t1)
        note = f"NVML power sampled at {1.0 / self._sampler.period_s:g} Hz, trapezoid rule"
        if gap_s > GAP_WARN_PERIODS * self._sampler.period_s:
            note += f"; largest gap between samples {gap_s:.3f} s (sampling thread starved?)"
        return EnergyReading(
            energy_j=integrate_power(samples, t0, t1),
            time_s=time_s,
            method=self.method,
            valid=True,
            note=note,
            samples=len(samples),
            max_gap_s=gap_s,
            legacy_j=legacy_energy(samples, t0, t1) if self._legacy else None,
        )

    def close(self) -> None:
        """Stop the sampling thread and shut the NVML session down. Idempotent."""
        self._sampler.stop()
        self._session.close()

    def describe(self) -> dict[str, object]:
        """Driver version and, per GPU, name, power limit (W) and clocks (MHz)."""
        return self._session.describe()

"""The two NVML meters: the total-energy counter (Volta and newer) and sampled, integrated power (any GPU)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_longeff.energy.arithmetic import (
    integrate_power,
    legacy_as_extracted,
    legacy_bucket_means,
    max_sample_gap,
    power_uncertainty_j,
)
from pytest_longeff.energy.base import CounterMeter, CounterReadError
from pytest_longeff.energy.nvml_session import NVML_CHECK_PERIOD_S, POWER_USAGE_AVERAGE_S, NvmlSession, WindowChecks
from pytest_longeff.energy.readings import EnergyReading, invalid_reading
from pytest_longeff.energy.sampler import DEFAULT_SAMPLE_HZ, PowerSampler
from pytest_longeff.energy.ticks import COARSE_PERIODS

#: NVML refreshes the total-energy counter (and the power reading) about every 100 ms. Assumed only when the
#: counter meter cannot measure the period (:func:`~pytest_longeff.energy.ticks.measure_update_period`), and as
#: the sensor's refresh for the ``coarse`` flag of sampled power.
NVML_UPDATE_PERIOD_S = 0.1

#: A gap between power samples longer than this many sampling periods is called out in the reading's note (the
#: sampling thread was starved, e.g. by a workload holding the GIL). The reading stays valid: the integrator
#: interpolates across the gap.
GAP_WARN_PERIODS = 5.0


class NvmlCounterMeter(CounterMeter):
    """Reads NVML's total-energy counter (millijoules since driver load) at window start and stop.

    The most accurate NVML method on Volta and newer: the driver integrates power internally. Summed over the
    measured GPUs. The counter is 64-bit: at 1 kW it would wrap after about 585,000 years, so a decrease is
    never a wrap-around but a driver reload or GPU reset, and the reading is invalid; and unlike RAPL's, it is
    read at the edges only (no wrap-arounds to count in between).

    Uncertainty as in :class:`CounterMeter`, with the sum of the GPUs' power limits as the power ceiling. The
    update period is measured when the meter is made (about 0.6 s; at most 2 s). Other compute processes or
    thermal / hardware throttling seen at either edge or in between, or thermal violation time that grew over
    the window, make the reading invalid (:class:`~pytest_longeff.energy.nvml_session.WindowChecks`).
    """

    method = "nvml"
    units_per_joule = 1000.0
    read_error_prefix = "NVML error"
    still_note = "NVML energy counter did not move over {time_s:.3f} s; the driver is not updating it"
    assumed_period_s = NVML_UPDATE_PERIOD_S
    period_probe_s = 2.0
    short_window_note = (
        "window of {time_ms:.1f} ms is shorter than the NVML energy counter's update period ({min_ms:.0f} ms); "
        "measure a longer window"
    )

    def __init__(
        self,
        session: NvmlSession,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        align: bool = False,
        check_period_s: float = NVML_CHECK_PERIOD_S,
    ) -> None:
        super().__init__(clock, sleep, align, WindowChecks(session, check_period_s))
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
        return f"NVML energy counter of GPU {gpu} went backwards ({start} -> {end} mJ; driver reload or GPU reset?)"

    def _valid_note(self) -> str:
        return f"NVML total-energy counter, {len(self._session.handles)} GPU(s)"

    def _power_ceiling_w(self) -> float | None:
        return self._session.power_limit_w()

    def _release(self) -> None:
        self._session.close()

    def describe(self) -> dict[str, object]:
        """Driver version, per GPU name, power limit (W), clocks (MHz) and pstate, and the counter's update
        period (``counter_update_period_s``, measured or assumed, with ``counter_update_note``)."""
        return {**self._session.describe(), **self.describe_period()}


class NvmlPowerMeter:
    """Samples NVML power (milliwatts) on a background thread and integrates it with the trapezoid rule.

    For GPUs without the energy counter. Reads instantaneous power (``NVML_FI_DEV_POWER_INSTANT``) where the GPU
    offers it, else ``nvmlDeviceGetPowerUsage``, which on recent data-centre GPUs is a ~1 s moving average and
    smears short windows; the note and ``describe()`` say which. ``uncertainty_j`` is
    :func:`~pytest_longeff.energy.arithmetic.power_uncertainty_j` (trapezoid error from each gap's power change,
    plus the averaging of a smoothed sensor). Windows shorter than 10 sensor updates (or sampling periods, if
    longer) are ``coarse``. Other processes and throttling are checked as by the counter meter
    (:class:`~pytest_longeff.energy.nvml_session.WindowChecks`: at the edges, every second in between, and the
    violation counters over the window), not per sample (each check is several driver calls). The trace also gives
    the seed study's legacy figure at no extra cost, unless ``legacy`` is False.
    """

    method = "nvml-power"

    def __init__(
        self,
        session: NvmlSession,
        sample_hz: float = DEFAULT_SAMPLE_HZ,
        clock: Callable[[], float] = time.perf_counter,
        legacy: bool = True,
        check_period_s: float = NVML_CHECK_PERIOD_S,
    ) -> None:
        self._session = session
        self._clock = clock
        self._legacy = legacy
        self._sampler = PowerSampler(session.read_power_w, sample_hz, clock)
        self._window_checks = WindowChecks(session, check_period_s)
        self._t0: float | None = None

    @property
    def sampler(self) -> PowerSampler:
        """The sampling thread's controller (for overhead measurements such as its CPU time)."""
        return self._sampler

    def start(self) -> None:
        """Begin the checks, start the sampling thread and open the window."""
        self._window_checks.open()
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
        return self._reading(self._t0, t1, final=False)

    def stop(self) -> EnergyReading:
        """Stop sampling, end the checks and integrate the window's trace; both threads have ended when this
        returns, whatever happened."""
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        t0, t1 = self._t0, self._clock()
        self._t0 = None
        try:
            self._sampler.stop()
            if self._sampler.error is None:
                self._sampler.sample_once()
            return self._reading(t0, t1, final=True)
        finally:
            self._window_checks.close()

    def _reading(self, t0: float, t1: float, final: bool) -> EnergyReading:
        time_s = t1 - t0
        samples = self._sampler.samples()
        error = self._sampler.error
        inspection = self._window_checks.seen(final)
        if error is not None:
            note = f"NVML power sampling failed: {error}"
            return invalid_reading(self.method, time_s, note, len(samples), seen=inspection)
        if len(samples) < 2:
            note = f"only {len(samples)} power sample(s); at least 2 are needed"
            return invalid_reading(self.method, time_s, note, len(samples), seen=inspection)
        if inspection.problems:
            return invalid_reading(self.method, time_s, "; ".join(inspection.problems), len(samples), seen=inspection)
        gap_s = max_sample_gap([t for t, _ in samples], t0, t1)
        note = f"NVML {self._session.power_source} sampled at {1.0 / self._sampler.period_s:g} Hz, trapezoid rule"
        if gap_s > GAP_WARN_PERIODS * self._sampler.period_s:
            note += f"; largest gap between samples {gap_s:.3f} s (sampling thread starved?)"
        averaging_s = 0.0 if self._session.instant_power else POWER_USAGE_AVERAGE_S
        means = legacy_bucket_means(samples, t0, t1) if self._legacy else []
        return EnergyReading(
            energy_j=integrate_power(samples, t0, t1),
            time_s=time_s,
            method=self.method,
            valid=True,
            note=note + inspection.note_suffix(),
            samples=len(samples),
            max_gap_s=gap_s,
            legacy_j=sum(means) / 1000.0 if means else None,
            uncertainty_j=power_uncertainty_j(samples, t0, t1, self._session.power_limit_w(), averaging_s),
            coarse=time_s < COARSE_PERIODS * max(NVML_UPDATE_PERIOD_S, self._sampler.period_s),
            update_period_s=NVML_UPDATE_PERIOD_S,
            legacy_buckets=len(means) if means else None,
            legacy_as_extracted=legacy_as_extracted(means),
            other_processes=inspection.other_processes,
            throttle_reasons=inspection.throttle_reasons,
        )

    def close(self) -> None:
        """Stop the sampling and check threads and shut the NVML session down. Idempotent."""
        self._sampler.stop()
        self._window_checks.close()
        self._session.close()

    def describe(self) -> dict[str, object]:
        """Driver version, per GPU name, power limit (W), clocks (MHz) and pstate, and the power source."""
        return self._session.describe()

"""Value objects of energy measurement: a window's reading, an idle baseline, and the "meter unavailable" error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pytest_longeff.errors import LongeffError

_T = TypeVar("_T")


class MeterUnavailable(LongeffError):
    """A meter the user explicitly asked for cannot work on this machine; the message says why and how to fix.

    ``reason`` is the short form ("NVML not found", "RAPL not readable") used in the null meter's note.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


@dataclass(frozen=True)
class EnergyReading:
    """Energy used over one measurement window (or over the part of it elapsed so far, from ``Meter.read``)."""

    energy_j: float | None
    """Gross energy over the window in joules (device total, idle draw included); None when not measured."""
    time_s: float
    """Length of the window in seconds (``time.perf_counter`` between start and stop)."""
    method: str
    """The meter that produced the reading: "nvml", "nvml-power", "rapl", "estimate", "none" or a registered
    meter's name."""
    valid: bool
    """Whether ``energy_j`` can be trusted as a measurement (an estimate is valid but labelled as such)."""
    note: str | None
    """Human-readable reason the reading is invalid, or how it was obtained."""
    samples: int
    """Counter reads (start and stop) or power samples used for the reading; a count, no unit."""
    max_gap_s: float | None
    """Largest gap between consecutive power samples inside the window, seconds (nvml-power only)."""
    legacy_j: float | None
    """The seed study's number, for comparison with published results only: power polled every 2 s, averaged
    per 30-s bucket, bucket means summed and divided by 1000. Despite the field name it is not joules: it is a
    sum of mean powers in kW, about energy_kJ / 30 for whole buckets, and it depends on where the bucket edges
    fall. Energy is the time integral of power, which is what ``energy_j`` holds. None when not computable
    (no power trace, or the legacy figure was not asked for)."""
    uncertainty_j: float | None = None
    """Bound on the error the meter's own quantisation adds to ``energy_j``, joules: for a counter, its update
    period and resolution at the window's edges; for sampled power, the gaps between samples and a smoothed
    sensor's averaging (see each meter's docstring for its formula). It takes the device's counter or power sensor
    as the truth: it does not cover how faithfully that follows the actual power, e.g. A100/H100-class GPUs whose
    driver samples power over only part of each update period, so bursty work can err beyond it. None when the
    reading is invalid or the meter cannot bound its error (estimate)."""
    coarse: bool = False
    """True when the window is shorter than :data:`~pytest_longeff.energy.ticks.COARSE_PERIODS` update periods
    of the meter's source: the reading stays valid, but its relative uncertainty is large, so it must not be
    gated on."""
    update_period_s: float | None = None
    """Update period of the counter or power sensor the reading came from, seconds (measured where the meter
    could, else assumed: see the note and ``describe()``); None for meters without one."""
    other_processes: tuple[int, ...] = ()
    """PIDs of other compute processes seen on the measured GPUs at the window's edges or in between (checked
    every second; NVML only; as NVML reports them, i.e. in the host's PID namespace). Any makes the reading
    invalid. Outside the host's PID namespace, PIDs that may be our own are not listed here but noted ("cannot
    attribute other processes")."""
    throttle_reasons: tuple[str, ...] = ()
    """Clock-event reasons NVML reported at the window's edges or in between, e.g. "sw_power_cap",
    "hw_thermal_slowdown", and those whose violation counters grew over the window ("sw_power_cap",
    "thermal_slowdown"); see :mod:`pytest_longeff.energy.nvml_checks` for which ones invalidate the reading."""
    legacy_buckets: int | None = None
    """Number of 30-s buckets the legacy figure summed (a count); None when ``legacy_j`` is None."""
    legacy_as_extracted: float | None = None
    """The legacy figure as the seed study's extraction would have produced it, kW summed: the run history it
    read held at most 500 sampled rows, so above 500 buckets (about 4.2 h) it is 500 evenly sampled bucket means
    / 1000 instead of all of them; equal to ``legacy_j`` up to 500 buckets. None when ``legacy_j`` is None."""

    def to_dict(self) -> dict[str, object]:
        """Flat record fields; ``legacy_j`` is stored as ``legacy_sum_of_30s_mean_power_kw``: the seed study's
        "energy" was a sum of 30-s mean powers / 1000, so its unit is kW (summed), not an energy."""
        return {
            "energy_j": self.energy_j,
            "time_s": self.time_s,
            "energy_method": self.method,
            "energy_valid": self.valid,
            "energy_note": self.note,
            "energy_samples": self.samples,
            "energy_max_gap_s": self.max_gap_s,
            "legacy_sum_of_30s_mean_power_kw": self.legacy_j,
            "energy_uncertainty_j": self.uncertainty_j,
            "energy_coarse": self.coarse,
            "energy_update_period_s": self.update_period_s,
            "energy_other_processes": list(self.other_processes),
            "energy_throttle_reasons": list(self.throttle_reasons),
            "legacy_buckets": self.legacy_buckets,
            "legacy_sum_as_extracted_kw": self.legacy_as_extracted,
        }


@dataclass(frozen=True)
class IdleBaseline:
    """Power drawn by the measured devices while nothing runs, to turn gross into net energy."""

    power_w: float | None
    """Mean idle power in watts; None when the meter could not measure it."""
    time_s: float
    """Length of the idle window in seconds."""
    method: str
    """The meter used, as in :attr:`EnergyReading.method`."""
    valid: bool
    """Whether ``power_w`` is a usable measurement."""
    note: str | None
    """Why the baseline is invalid, or how it was obtained."""
    uncertainty_w: float | None = None
    """Bound on ``|power_w - true mean idle power|``, watts: the idle reading's ``uncertainty_j`` / ``time_s``."""
    pstate: int | None = None
    """The GPU's performance state at the idle measurement (0 = P0, fastest; 8 or higher is idle), from
    ``nvmlDeviceGetPerformanceState``; the highest over the measured GPUs; None where unknown."""
    sm_clock_mhz: int | None = None
    """SM clock at the idle measurement, MHz (first measured GPU); None where unknown."""
    mem_clock_mhz: int | None = None
    """Memory clock at the idle measurement, MHz (first measured GPU); None where unknown."""

    def to_dict(self) -> dict[str, object]:
        """Flat record fields, prefixed ``idle_`` so they can sit beside :meth:`EnergyReading.to_dict`'s."""
        return {
            "idle_power_w": self.power_w,
            "idle_time_s": self.time_s,
            "idle_method": self.method,
            "idle_valid": self.valid,
            "idle_note": self.note,
            "idle_uncertainty_w": self.uncertainty_w,
            "idle_pstate": self.pstate,
            "idle_sm_clock_mhz": self.sm_clock_mhz,
            "idle_mem_clock_mhz": self.mem_clock_mhz,
        }


@dataclass(frozen=True)
class Inspection:
    """What a meter saw about the measured devices at a window edge or in between: sharing, throttling, and what it
    could not check. Merged over a window; any ``problems`` make the reading invalid."""

    other_processes: tuple[int, ...] = ()
    """PIDs of other compute processes on the measured devices."""
    throttle_reasons: tuple[str, ...] = ()
    """Clock-event reasons reported (all of them, invalidating or not)."""
    problems: tuple[str, ...] = ()
    """Why the window cannot be trusted (e.g. "other compute processes on GPU 0: 1234")."""
    unchecked: tuple[str, ...] = ()
    """What could not be checked and why (e.g. an old driver without the function)."""

    def merge(self, other: Inspection) -> Inspection:
        """Both edges' findings, each item once, in first-seen order."""
        return Inspection(
            _union(self.other_processes, other.other_processes),
            _union(self.throttle_reasons, other.throttle_reasons),
            _union(self.problems, other.problems),
            _union(self.unchecked, other.unchecked),
        )

    def note_suffix(self) -> str:
        """ "; not checked: ..." for the reading's note, or ""."""
        return f"; not checked: {', '.join(self.unchecked)}" if self.unchecked else ""


def _union(a: tuple[_T, ...], b: tuple[_T, ...]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys((*a, *b)))


def invalid_reading(
    method: str,
    time_s: float,
    note: str,
    samples: int = 0,
    seen: Inspection | None = None,
) -> EnergyReading:
    """An unmeasured reading: ``energy_j`` is None (never 0.0 as a stand-in) and ``note`` says why; ``seen``
    gives the other processes and throttle reasons observed, if any."""
    return EnergyReading(
        energy_j=None,
        time_s=time_s,
        method=method,
        valid=False,
        note=note,
        samples=samples,
        max_gap_s=None,
        legacy_j=None,
        other_processes=seen.other_processes if seen else (),
        throttle_reasons=seen.throttle_reasons if seen else (),
    )

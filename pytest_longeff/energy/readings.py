"""Value objects of energy measurement: a window's reading, an idle baseline, and the "meter unavailable" error."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_longeff.errors import LongeffError


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

    def to_dict(self) -> dict[str, object]:
        """Flat record fields, prefixed ``idle_`` so they can sit beside :meth:`EnergyReading.to_dict`'s."""
        return {
            "idle_power_w": self.power_w,
            "idle_time_s": self.time_s,
            "idle_method": self.method,
            "idle_valid": self.valid,
            "idle_note": self.note,
        }


def invalid_reading(method: str, time_s: float, note: str, samples: int = 0) -> EnergyReading:
    """An unmeasured reading: ``energy_j`` is None (never 0.0 as a stand-in) and ``note`` says why."""
    return EnergyReading(
        energy_j=None,
        time_s=time_s,
        method=method,
        valid=False,
        note=note,
        samples=samples,
        max_gap_s=None,
        legacy_j=None,
    )

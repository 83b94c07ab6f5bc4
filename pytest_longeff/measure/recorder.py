"""Measured windows of a user's own benchmark: the work behind the ``longeff_window`` fixture.

A window is a named stretch of work measured like a cell's training or inference window: device-synchronised
edges, peak memory, and energy from the session's meter with the idle draw subtracted. Measuring one name several
times makes repeats; their summary (median time with a bootstrap CI, median energy, highest peak memory) lands in
the record's ``windows`` section, in JUnit properties and under the gate as ``window_<name>_<figure>``:
``window_decode_time_s``, ``window_decode_energy_j``, ``window_decode_energy_net_j`` and
``window_decode_peak_memory_bytes``. The ``window_`` prefix keeps these apart from the cell figures (a window
called ``train`` would otherwise be ``train_time_s``), and a name is known from the metric alone, so
``--longeff-fail-on`` can be checked before any window ran.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_longeff.record.figures import NAME
from pytest_longeff.record.sections import Energy

if TYPE_CHECKING:
    from pytest_longeff.energy import IdleBaseline, Meter
    from pytest_longeff.measure.window import WindowResult
    from pytest_longeff.stats import Summary

def check_name(name: str) -> str:
    """``name`` if usable as a window name (lower-case letters, digits, ``_``), else ValueError."""
    if not NAME.match(name):
        raise ValueError(f"window name {name!r}: use lower-case letters, digits and '_' (it becomes part of the "
                         f"gate metric window_{name}_time_s)")
    return name


@dataclass(frozen=True)
class WindowSample:
    """One measured repeat of a window."""

    time_s: float
    """Wall time in seconds between device-synchronised edges."""
    energy: Energy
    """Gross energy reading and the idle-subtracted net joules."""
    peak_memory_bytes: int | None
    """Peak memory the window added (CPU) or CUDA's peak allocated bytes, in bytes; None when unknown."""
    memory_method: str


def _median(values: list[float | None]) -> float | None:
    # A median over repeats only when every repeat was measured: a partial median would be a made-up figure.
    if not values or any(v is None for v in values):
        return None
    return float(statistics.median([v for v in values if v is not None]))


@dataclass(frozen=True)
class WindowSummary:
    """All repeats of one window and their summary figures."""

    name: str
    samples: tuple[WindowSample, ...]

    @property
    def time_s(self) -> float:
        """Median wall time over repeats, in seconds."""
        return float(statistics.median(s.time_s for s in self.samples))

    @property
    def time_stats(self) -> Summary | None:
        """Summary of the repeats' times, or None without repeats."""
        from pytest_longeff.stats import summarize

        return summarize([s.time_s for s in self.samples])

    @property
    def energy_j(self) -> float | None:
        """Median gross energy over repeats in joules; None unless every repeat has a valid reading."""
        return _median([s.energy.joules if s.energy.reading and s.energy.reading.valid else None
                        for s in self.samples])

    @property
    def energy_net_j(self) -> float | None:
        """Median energy above the idle draw in joules; None unless every repeat has one."""
        return _median([s.energy.net_j for s in self.samples])

    @property
    def peak_memory_bytes(self) -> int | None:
        """Highest peak memory over repeats, in bytes; None when any repeat could not tell."""
        peaks = [s.peak_memory_bytes for s in self.samples]
        return None if any(p is None for p in peaks) else max(p for p in peaks if p is not None)

    def to_dict(self) -> dict[str, Any]:
        """The window summary as record fields."""
        readings = [s.energy.reading for s in self.samples]
        methods = sorted({r.method for r in readings if r is not None}) or ["none"]
        notes = sorted({str(r.note) for r in readings if r is not None and r.note and not r.valid})
        stats = self.time_stats
        return {
            "repeats": len(self.samples), "time_s": self.time_s, "times_s": [s.time_s for s in self.samples],
            "time_s_stats": stats.to_dict() if stats is not None else None,
            "energy_j": self.energy_j, "energy_net_j": self.energy_net_j, "energy_method": ",".join(methods),
            "energy_valid": self.energy_j is not None,
            # A short window's energy is coarse (under ten counter periods): reported, never gated.
            "energy_coarse": any(r.coarse for r in readings if r is not None and r.valid),
            "energy_note": "; ".join(notes) if notes else (None if readings[0] else "no energy meter"),
            "peak_memory_bytes": self.peak_memory_bytes, "memory_method": self.samples[0].memory_method,
        }


class WindowRecorder:
    """The ``longeff_window`` fixture's value: measures named windows with the session's device and meter.

    Two forms, both adding one repeat per run of the work to the window's record:

    * a context manager, ``with longeff_window("decode") as w: model.generate(...)``; ``w`` (a
      :class:`pytest_longeff.measure.window.WindowResult`) holds that run's time, energy reading and peak memory
      after the block. Use the same name in a loop for repeats;
    * a call, ``summary = longeff_window.measure("decode", lambda: model.generate(...), repeats=5, warmup=1)``,
      which runs ``warmup`` unmeasured times, then ``repeats`` measured ones, and returns the
      :class:`WindowSummary`.

    ``longeff_window.summary("decode")`` returns the summary so far. After the test, every window lands in the
    test's record (JSON ``windows`` section, JUnit properties, the gate's ``window_<name>_<figure>`` metrics).
    """

    def __init__(self, device: str, meter: Meter | None, idle: IdleBaseline | None) -> None:
        self.device = device
        self.meter = meter
        self.idle = idle
        self._samples: dict[str, list[WindowSample]] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[WindowResult]:
        """Measure one repeat of window ``name``; it counts only if the body finishes."""
        from pytest_longeff.measure.window import window

        check_name(name)
        with window(name, self.device, self.meter) as result:
            yield result
        # Only a window whose body finished counts as a repeat; a failing body fails the test anyway.
        self._samples.setdefault(name, []).append(WindowSample(
            result.time_s, Energy.from_reading(result.energy, self.idle), result.peak_memory_bytes,
            result.memory_method))

    def measure(self, name: str, fn: Callable[[], object], repeats: int = 1, warmup: int = 0) -> WindowSummary:
        """Run ``fn`` ``warmup`` times unmeasured, then ``repeats`` times each in its own window; the summary."""
        if repeats < 1 or warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
        check_name(name)
        for _ in range(warmup):
            fn()
        for _ in range(repeats):
            with self(name):
                fn()
        return self.summary(name)

    def summary(self, name: str) -> WindowSummary:
        """The summary of every repeat of ``name`` so far; KeyError when it was never measured."""
        return WindowSummary(name, tuple(self._samples[name]))

    @property
    def names(self) -> list[str]:
        """Window names in the order first measured."""
        return list(self._samples)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The record's ``windows`` section."""
        return {name: self.summary(name).to_dict() for name in self._samples}


def window_record(record_id: str, device: str, windows: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a test that measured windows but ran no matrix cell (``kind`` tells it from a cell's)."""
    return {"id": record_id, "kind": "window", "device": device, "status": None, "reason": None,
            "windows": dict(windows)}

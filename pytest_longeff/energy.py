"""Energy meters: measurement windows over NVML, RAPL, a CPU-time estimate, or nothing.

A meter measures one window: the caller synchronises the device, calls ``start()``, runs the work,
synchronises again and calls ``stop()``, which returns an :class:`EnergyReading`. Meters are strategies behind
the :class:`Meter` protocol, one class each, chosen by :func:`make_meter` from a table.

Missing hardware is not an error: under ``auto`` the result is the null meter plus one warning. Only a meter the
user asked for by name that cannot work here raises :class:`MeterUnavailable`, with a message that says how to
fix it.

Nothing heavy is imported at module load: ``pynvml`` is imported the first time an NVML meter is made.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

# --------------------------------------------------------------------------------------------------------------
# Constants

ENERGY_CHOICES: tuple[str, ...] = ("auto", "nvml", "nvml-power", "rapl", "estimate", "none")

#: NVML refreshes the total-energy counter (and the power reading) about every 100 ms; a window shorter than
#: this sees zero or one update, so its delta says nothing about the window.
NVML_UPDATE_PERIOD_S = 0.1

#: nvmlDeviceGetTotalEnergyConsumption is an unsigned 64-bit millijoule counter.
NVML_COUNTER_MODULUS = 2**64

#: Default rate of the power-sampling thread. 20 Hz is well above NVML's 10 Hz refresh, so no update is missed,
#: and cheap enough (one driver call per 50 ms) not to perturb the workload.
DEFAULT_SAMPLE_HZ = 20.0

#: A gap between power samples longer than this many sampling periods is called out in the reading's note (the
#: sampling thread was starved, e.g. by a workload holding the GIL). The reading stays valid: the integrator
#: interpolates across the gap.
GAP_WARN_PERIODS = 5.0

#: The ``estimate`` meter charges this many watts for each second of process CPU time, i.e. it assumes a busy
#: core of a current server CPU draws about 10 W above idle. It is an order-of-magnitude figure, not a
#: measurement; results from it are labelled as estimates everywhere.
ESTIMATE_W_PER_BUSY_CORE = 10.0

#: The seed study polled power every 2 s, averaged the polls in 30-s buckets and summed the bucket means / 1000.
LEGACY_POLL_PERIOD_S = 2.0
LEGACY_BUCKET_S = 30.0

DEFAULT_RAPL_ROOT = "/sys/class/powercap"

#: How to make RAPL counters readable without running the whole benchmark as root; recent kernels restrict them
#: to root since the PLATYPUS side channel (CVE-2020-8694).
RAPL_PERMISSION_HINT = (
    "make the counters readable with `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*/intel-rapl:*/energy_uj` (resets at reboot) or run as root"
)

_NO_METER_NOTE = "no energy meter selected"


class MeterUnavailable(Exception):
    """A meter the user explicitly asked for cannot work on this machine; the message says why and how to fix.

    ``reason`` is the short form ("NVML not found", "RAPL not readable") used in the null meter's note.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


# --------------------------------------------------------------------------------------------------------------
# Value objects


@dataclass(frozen=True)
class EnergyReading:
    """Energy used over one measurement window."""

    energy_j: float | None
    """Gross energy over the window in joules (device total, idle draw included); None when not measured."""
    time_s: float
    """Length of the window in seconds (``time.perf_counter`` between start and stop)."""
    method: str
    """The meter that produced the reading: "nvml", "nvml-power", "rapl", "estimate" or "none"."""
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
    (counter-based meters keep no power trace)."""

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


class Meter(Protocol):
    """One way of measuring energy over a window."""

    method: str

    def start(self) -> None:
        """Open a window (the caller has already synchronised the device). Starting again restarts it."""
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


# --------------------------------------------------------------------------------------------------------------
# Pure functions


def integrate_power(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> float:
    """Energy in joules over ``[t0, t1]`` from ``(time_s, power_w)`` samples, by the trapezoid rule.

    Power between samples is interpolated linearly; before the first and after the last sample it is held at
    that sample's value, so a window that reaches slightly past the trace is extended rather than truncated.
    The result is the exact integral of that piecewise-linear function, hence additive over split windows.
    Samples need not be sorted; two samples at the same time make a step.
    """
    if not samples:
        raise ValueError("integrate_power needs at least one sample")
    if t1 < t0:
        raise ValueError(f"window ends before it starts: t0={t0}, t1={t1}")
    points = sorted(samples, key=lambda s: s[0])
    first_t, first_p = points[0]
    last_t, last_p = points[-1]
    total = 0.0
    # Held value before the first sample.
    if t0 < first_t:
        total += first_p * (min(t1, first_t) - t0)
    # Held value after the last sample.
    if t1 > last_t:
        total += last_p * (t1 - max(t0, last_t))
    for (ta, pa), (tb, pb) in itertools.pairwise(points):
        lo = max(ta, t0)
        hi = min(tb, t1)
        if hi <= lo:
            continue
        # Interpolate by fraction of the segment, not by slope: samples a few ulps apart would make the slope
        # overflow.
        width = tb - ta
        p_lo = pa + (pb - pa) * ((lo - ta) / width)
        p_hi = pa + (pb - pa) * ((hi - ta) / width)
        total += (hi - lo) * (p_lo + p_hi) / 2.0
    return total


def max_sample_gap(times: Sequence[float], t0: float, t1: float) -> float:
    """Largest interval between consecutive sample times inside ``[t0, t1]``, the window edges included, seconds."""
    inside = sorted(t for t in times if t0 < t < t1)
    edges = [t0, *inside, t1]
    return max((b - a for a, b in itertools.pairwise(edges)), default=0.0)


def legacy_energy(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> float | None:
    """The seed study's quantity over ``[t0, t1]``: sum of 30-s means of 2-s power polls, divided by 1000.

    The polls are emulated at ``t0, t0 + 2 s, ...`` (before ``t1``), each seeing the latest sample at or before
    its time, as a 2-s poller of the sensor would. A partial last bucket counts as a bucket, as a time-indexed
    resample does. Kept only to compare with published numbers; see :attr:`EnergyReading.legacy_j`.
    """
    if not samples or t1 <= t0:
        return None
    points = sorted(samples, key=lambda s: s[0])
    polls_per_bucket = round(LEGACY_BUCKET_S / LEGACY_POLL_PERIOD_S)
    buckets: list[list[float]] = []
    cursor = 0
    k = 0
    while (poll_t := t0 + k * LEGACY_POLL_PERIOD_S) < t1:
        while cursor + 1 < len(points) and points[cursor + 1][0] <= poll_t:
            cursor += 1
        if k % polls_per_bucket == 0:
            buckets.append([])
        buckets[-1].append(points[cursor][1])
        k += 1
    return sum(math.fsum(b) / len(b) for b in buckets) / 1000.0


def net_energy_j(reading: EnergyReading, idle: IdleBaseline | None) -> float | None:
    """Gross energy minus idle power × window length, joules.

    None when either side is unmeasured or invalid, or when they come from different meters (subtracting a
    RAPL idle power from an NVML energy would be meaningless). Not clamped at zero: a small negative value is
    measurement noise and should stay visible.
    """
    if reading.energy_j is None or not reading.valid:
        return None
    if idle is None or idle.power_w is None or not idle.valid or idle.method != reading.method:
        return None
    return reading.energy_j - idle.power_w * reading.time_s


def measure_idle(meter: Meter, seconds: float, sleep: Callable[[float], None] = time.sleep) -> IdleBaseline:
    """Measure the idle power of ``meter``'s devices over ``seconds`` of doing nothing."""
    meter.start()
    sleep(seconds)
    reading = meter.stop()
    if reading.energy_j is None or not reading.valid or reading.time_s <= 0:
        return IdleBaseline(
            power_w=None,
            time_s=reading.time_s,
            method=reading.method,
            valid=False,
            note=f"idle baseline not measured: {reading.note}",
        )
    return IdleBaseline(
        power_w=reading.energy_j / reading.time_s,
        time_s=reading.time_s,
        method=reading.method,
        valid=True,
        note=reading.note,
    )


def _invalid(method: str, time_s: float, note: str, samples: int = 0) -> EnergyReading:
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


# --------------------------------------------------------------------------------------------------------------
# Power sampling thread


class PowerSampler:
    """Calls ``read_power_w`` on a daemon thread at ``sample_hz`` and keeps ``(time_s, power_w)`` samples.

    Separate from NVML so that the sampling loop can be measured with a stand-in power source (see
    ``benchmarks/meter_overhead.py``) and tested without a driver. An exception from the power source ends the
    sampling and is kept in :attr:`error`; it never escapes the thread.
    """

    def __init__(
        self,
        read_power_w: Callable[[], float],
        sample_hz: float = DEFAULT_SAMPLE_HZ,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not sample_hz > 0 or math.isinf(sample_hz):
            raise ValueError(f"sample_hz must be a positive finite number, got {sample_hz!r}")
        self._read = read_power_w
        self.period_s = 1.0 / sample_hz
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: list[tuple[float, float]] = []
        self._error: str | None = None
        self._cpu_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def error(self) -> str | None:
        """The first error raised by the power source since :meth:`start`, as text."""
        with self._lock:
            return self._error

    @property
    def cpu_time_s(self) -> float:
        """CPU time the sampling thread itself used in its last run, seconds (complete after :meth:`stop`)."""
        with self._lock:
            return self._cpu_s

    def samples(self) -> list[tuple[float, float]]:
        """A copy of the samples taken since :meth:`start`."""
        with self._lock:
            return list(self._samples)

    def sample_once(self) -> bool:
        """Take one sample on the calling thread; False (and :attr:`error` set) if the source failed."""
        return self._sample(None)

    def _sample(self, stop: threading.Event | None) -> bool:
        before = self._clock()
        try:
            power_w = float(self._read())
        except Exception as exc:  # noqa: BLE001 - any failure of the source ends the trace; it is reported
            with self._lock:
                if self._error is None:
                    self._error = f"{type(exc).__name__}: {exc}"
            return False
        # The driver call takes a little time; stamp the sample at its middle.
        stamp = (before + self._clock()) / 2.0
        with self._lock:
            if stop is not None and stop.is_set():
                # A thread from an earlier window that outlived its join (hung driver) must not add to this one.
                return False
            self._samples.append((stamp, power_w))
        return True

    def start(self) -> None:
        """Clear the trace, take one sample now, and start the thread."""
        self.stop()
        with self._lock:
            self._samples = []
            self._error = None
            self._cpu_s = 0.0
        self._stop = threading.Event()
        if not self.sample_once():
            return
        thread = threading.Thread(
            target=self._run, args=(self._stop,), name="longeff-power-sampler", daemon=True
        )
        self._thread = thread
        thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; safe to call when not running."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            # The loop waits on the event, so it wakes at once; the timeout only guards against a hung driver.
            thread.join(timeout=max(1.0, 10 * self.period_s))

    def _run(self, stop: threading.Event) -> None:
        try:
            # Schedule against absolute deadlines so the rate does not drift by the cost of each read.
            next_t = time.perf_counter() + self.period_s
            while not stop.wait(max(0.0, next_t - time.perf_counter())):
                if not self._sample(stop):
                    return
                next_t += self.period_s
                now = time.perf_counter()
                if next_t < now:
                    # Fell behind (starved thread): resume the cadence from now instead of sampling in a burst.
                    next_t = now + self.period_s
        finally:
            cpu_s = time.thread_time()
            with self._lock:
                if stop is self._stop:  # not a thread of an earlier window
                    self._cpu_s = cpu_s


# --------------------------------------------------------------------------------------------------------------
# NVML plumbing


def _load_pynvml() -> ModuleType | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def _nvml_error_type(nvml: Any, name: str) -> type[BaseException]:
    """An NVMLError subclass by name, or a class nothing raises when this pynvml lacks it."""
    found = getattr(nvml, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    return _NeverRaised


class _NeverRaised(Exception):
    pass


def _text(value: object) -> str:
    # Older pynvml releases return bytes for names and versions.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _NvmlSession:
    """One nvmlInit with the handles of the devices a meter measures; shut down once."""

    def __init__(self, nvml: Any, indices: Sequence[int], handles: Sequence[object]) -> None:
        self.nvml = nvml
        self.indices = list(indices)
        self.handles = list(handles)
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError:
                pass  # Shutting down a broken session must not mask the result it produced.

    def describe(self) -> dict[str, object]:
        nvml = self.nvml
        clock_kinds = {
            "graphics_clock_mhz": getattr(nvml, "NVML_CLOCK_GRAPHICS", 0),
            "sm_clock_mhz": getattr(nvml, "NVML_CLOCK_SM", 1),
            "mem_clock_mhz": getattr(nvml, "NVML_CLOCK_MEM", 2),
        }
        devices: list[dict[str, object]] = []
        for index, handle in zip(self.indices, self.handles):
            name = self._ask(nvml.nvmlDeviceGetName, handle)
            limit_mw = self._ask(nvml.nvmlDeviceGetPowerManagementLimit, handle)
            entry: dict[str, object] = {
                "nvml_index": index,
                "name": None if name is None else _text(name),
                "power_limit_w": None if limit_mw is None else float(limit_mw) / 1000.0,
            }
            for key, kind in clock_kinds.items():
                entry[key] = self._ask(nvml.nvmlDeviceGetClockInfo, handle, kind)
            devices.append(entry)
        driver = self._ask(nvml.nvmlSystemGetDriverVersion)
        return {"driver_version": None if driver is None else _text(driver), "gpus": devices}

    def _ask(self, fn: Callable[..., Any], *args: object) -> Any:
        # Environment facts are best effort: a GPU that does not report one still gets the others.
        try:
            return fn(*args)
        except self.nvml.NVMLError:
            return None


@dataclass(frozen=True)
class _Target:
    kind: str  # "cpu", "cuda" or "other"
    index: int | None  # CUDA ordinal for "cuda"


def _parse_device(device: str) -> _Target:
    text = device.strip().lower()
    if text == "cpu":
        return _Target("cpu", None)
    if text == "cuda":
        return _Target("cuda", 0)
    if text.startswith("cuda:") and text[5:].isdigit():
        return _Target("cuda", int(text[5:]))
    return _Target("other", None)


def _nvml_indices(target: _Target, count: int, nvml: Any) -> tuple[list[int], list[object]]:
    """NVML indices and handles for the target; raises LookupError with a readable reason."""
    if target.kind == "cpu":
        # An explicit NVML meter on a CPU cell measures every GPU: whatever they draw is the cell's cost.
        indices = list(range(count))
        return indices, [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
    assert target.index is not None
    # CUDA numbers the devices CUDA_VISIBLE_DEVICES lets through; NVML numbers every device on the machine.
    # (With CUDA_DEVICE_ORDER other than PCI_BUS_ID, CUDA may also order mixed GPU models differently from NVML;
    # on such machines set CUDA_DEVICE_ORDER=PCI_BUS_ID.)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        if target.index >= count:
            raise LookupError(f"cuda:{target.index} does not exist (NVML sees {count} GPU(s))")
        return [target.index], [nvml.nvmlDeviceGetHandleByIndex(target.index)]
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if target.index >= len(entries):
        raise LookupError(f"cuda:{target.index} is not among CUDA_VISIBLE_DEVICES={visible!r}")
    entry = entries[target.index]
    if entry.isdigit():
        physical = int(entry)
        if physical >= count:
            raise LookupError(f"CUDA_VISIBLE_DEVICES names GPU {physical}, but NVML sees {count} GPU(s)")
        return [physical], [nvml.nvmlDeviceGetHandleByIndex(physical)]
    if entry.startswith("GPU-") and hasattr(nvml, "nvmlDeviceGetHandleByUUID"):
        handle = nvml.nvmlDeviceGetHandleByUUID(entry)
        index_of = getattr(nvml, "nvmlDeviceGetIndex", None)
        return [int(index_of(handle)) if index_of else -1], [handle]
    raise LookupError(
        f"cannot map CUDA_VISIBLE_DEVICES entry {entry!r} to an NVML device (MIG instances have no energy counter)"
    )


def _open_nvml(nvml: ModuleType | None, target: _Target, device: str) -> _NvmlSession:
    """Initialise NVML and resolve the target's devices; raises MeterUnavailable with the reason."""
    module: Any = nvml if nvml is not None else _load_pynvml()
    if module is None:
        raise MeterUnavailable(
            "NVML is not available: the Python package `pynvml` cannot be imported; "
            "install it with `pip install nvidia-ml-py`",
            reason="pynvml not installed",
        )
    if target.kind == "other":
        raise MeterUnavailable(
            f"NVML meters measure CUDA devices; {device!r} is neither 'cpu' nor 'cuda[:N]'",
            reason=f"no meter for device {device!r}",
        )
    try:
        module.nvmlInit()
    except _nvml_error_type(module, "NVMLError_LibraryNotFound") as exc:
        raise MeterUnavailable(
            f"NVML is not available: {exc} (libnvidia-ml.so, part of the NVIDIA driver, was not found). "
            "Run on a machine with an NVIDIA GPU and driver, or choose another energy meter "
            "('estimate' for a CPU-time estimate, 'none' to skip energy)",
            reason="NVML not found",
        ) from exc
    except module.NVMLError as exc:
        raise MeterUnavailable(
            f"NVML could not be initialised: {exc}. Check that the NVIDIA driver is loaded (`nvidia-smi`), "
            "or choose another energy meter ('auto', 'estimate' or 'none')",
            reason=f"NVML failed to initialise: {exc}",
        ) from exc
    try:
        count = int(module.nvmlDeviceGetCount())
        if count == 0:
            raise LookupError("NVML sees no GPU")
        indices, handles = _nvml_indices(target, count, module)
    except (LookupError, module.NVMLError) as exc:
        try:
            module.nvmlShutdown()
        except module.NVMLError:
            pass
        raise MeterUnavailable(f"NVML cannot measure {device}: {exc}", reason=f"NVML: {exc}") from exc
    return _NvmlSession(module, indices, handles)


# --------------------------------------------------------------------------------------------------------------
# Meters


class NvmlCounterMeter:
    """Reads NVML's total-energy counter (millijoules since driver load) at window start and stop.

    The most accurate NVML method on Volta and newer: the driver integrates power internally. Summed over the
    measured GPUs; a single 64-bit wrap-around per device is undone.
    """

    method = "nvml"

    def __init__(self, session: _NvmlSession, clock: Callable[[], float] = time.perf_counter) -> None:
        self._session = session
        self._clock = clock
        self._t0: float | None = None
        self._start_mj: list[int] | None = None
        self._start_error: str | None = None
        # The seed study's own figure needs power polled every 2 s: a slow sampler beside the counter, so the
        # legacy figure is reported with the default meter too. It costs one NVML call per 2 s.
        self._legacy = PowerSampler(self._read_power_w, 1.0 / LEGACY_POLL_PERIOD_S, clock)

    def _read_power_w(self) -> float:
        nvml = self._session.nvml
        return sum(float(nvml.nvmlDeviceGetPowerUsage(h)) for h in self._session.handles) / 1000.0

    def _legacy_j(self, t0: float, t1: float) -> float | None:
        self._legacy.stop()
        if self._legacy.error is not None:
            return None
        return legacy_energy(self._legacy.samples(), t0, t1)

    def _read_mj(self) -> list[int]:
        nvml = self._session.nvml
        return [int(nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._session.handles]

    def start(self) -> None:
        self._start_error = None
        self._start_mj = None
        try:
            self._start_mj = self._read_mj()
        except self._session.nvml.NVMLError as exc:
            self._start_error = f"NVML error at window start: {type(exc).__name__}: {exc}"
        self._legacy.start()
        self._t0 = self._clock()

    def stop(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        t1 = self._clock()
        t0, time_s = self._t0, t1 - self._t0
        self._t0 = None
        legacy_j = self._legacy_j(t0, t1)
        if self._start_error is not None or self._start_mj is None:
            return _invalid(self.method, time_s, self._start_error or "no counter read at window start")
        try:
            end_mj = self._read_mj()
        except self._session.nvml.NVMLError as exc:
            return _invalid(
                self.method, time_s, f"NVML error at window end: {type(exc).__name__}: {exc}", samples=1
            )
        delta_mj = 0
        for start, end in zip(self._start_mj, end_mj):
            delta_mj += end - start if end >= start else end + NVML_COUNTER_MODULUS - start
        if time_s < NVML_UPDATE_PERIOD_S:
            return _invalid(
                self.method,
                time_s,
                f"window of {time_s * 1000:.1f} ms is shorter than the NVML energy counter's update period "
                f"({NVML_UPDATE_PERIOD_S * 1000:.0f} ms); measure a longer window",
                samples=2,
            )
        if delta_mj == 0:
            return _invalid(
                self.method,
                time_s,
                f"NVML energy counter did not move over {time_s:.3f} s; the driver is not updating it",
                samples=2,
            )
        return EnergyReading(
            energy_j=delta_mj / 1000.0,
            time_s=time_s,
            method=self.method,
            valid=True,
            note=f"NVML total-energy counter, {len(end_mj)} GPU(s)",
            samples=2,
            max_gap_s=None,
            legacy_j=legacy_j,
        )

    def close(self) -> None:
        self._legacy.stop()
        self._session.close()

    def describe(self) -> dict[str, object]:
        return self._session.describe()


class NvmlPowerMeter:
    """Samples NVML power (milliwatts) on a background thread and integrates it with the trapezoid rule.

    For GPUs without the energy counter. On many data-centre GPUs the reported power is itself a ~1 s moving
    average, so short windows are smeared; prefer the counter where it exists.
    """

    method = "nvml-power"

    def __init__(
        self,
        session: _NvmlSession,
        sample_hz: float = DEFAULT_SAMPLE_HZ,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._session = session
        self._clock = clock
        self._sampler = PowerSampler(self._read_power_w, sample_hz, clock)
        self._t0: float | None = None

    @property
    def sampler(self) -> PowerSampler:
        """The sampling thread's controller (for overhead measurements such as its CPU time)."""
        return self._sampler

    def _read_power_w(self) -> float:
        nvml = self._session.nvml
        return sum(float(nvml.nvmlDeviceGetPowerUsage(h)) for h in self._session.handles) / 1000.0

    def start(self) -> None:
        # The first sample is taken before the window opens, so the window is bracketed by samples.
        self._sampler.start()
        self._t0 = self._clock()

    def stop(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        t0, t1 = self._t0, self._clock()
        self._t0 = None
        self._sampler.stop()
        if self._sampler.error is None:
            # One sample after the window closes brackets its end.
            self._sampler.sample_once()
        time_s = t1 - t0
        samples = self._sampler.samples()
        error = self._sampler.error
        if error is not None:
            return _invalid(self.method, time_s, f"NVML power sampling failed: {error}", samples=len(samples))
        if len(samples) < 2:
            return _invalid(
                self.method,
                time_s,
                f"only {len(samples)} power sample(s); at least 2 are needed",
                len(samples),
            )
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
            legacy_j=legacy_energy(samples, t0, t1),
        )

    def close(self) -> None:
        self._sampler.stop()
        self._session.close()

    def describe(self) -> dict[str, object]:
        return self._session.describe()


@dataclass(frozen=True)
class RaplDomain:
    """One RAPL energy counter in sysfs."""

    name: str
    """The domain's ``name`` file, e.g. "package-0" or "dram"."""
    energy_path: Path
    """Its ``energy_uj`` file (microjoules)."""
    max_range_uj: int
    """Its ``max_energy_range_uj``: the counter wraps to 0 after this many microjoules."""


def find_rapl_domains(root: str | os.PathLike[str]) -> list[RaplDomain]:
    """Package domains (``intel-rapl:N``) and their ``dram`` subdomains under a powercap root.

    ``psys`` (whole platform, overlapping the packages) and ``core``/``uncore`` (inside the package) are left
    out so that nothing is counted twice. Files are only listed here, not read.
    """
    base = Path(root)
    domains: list[RaplDomain] = []
    if not base.is_dir():
        return domains
    for top in sorted(base.glob("intel-rapl:*")):
        if top.name.count(":") != 1 or not top.is_dir():
            continue  # Subdomains also appear at the root as links on some kernels; take them via their parent.
        name = _read_name(top)
        if name == "psys":
            continue
        domains.append(_domain(top, name))
        for sub in sorted(top.glob("intel-rapl:*:*")):
            if sub.is_dir() and _read_name(sub) == "dram":
                domains.append(_domain(sub, "dram"))
    return domains


def _read_name(path: Path) -> str:
    try:
        return (path / "name").read_text().strip()
    except OSError:
        return path.name


def _domain(path: Path, name: str) -> RaplDomain:
    try:
        max_range = int((path / "max_energy_range_uj").read_text().strip())
    except (OSError, ValueError):
        max_range = 0  # Unknown range: a wrap cannot be undone and is reported instead.
    return RaplDomain(name=name, energy_path=path / "energy_uj", max_range_uj=max_range)


class RaplMeter:
    """Reads Linux powercap RAPL counters (CPU packages and DRAM, microjoules) at window start and stop.

    The counters cover whole sockets, so other processes' work is included; and only one wrap-around per
    window can be undone (a package counter's range is typically ~262 kJ, over 20 min at 200 W).
    """

    method = "rapl"

    def __init__(self, domains: Sequence[RaplDomain], clock: Callable[[], float] = time.perf_counter) -> None:
        self._domains = list(domains)
        self._clock = clock
        self._t0: float | None = None
        self._start_uj: list[int] | None = None
        self._start_error: str | None = None

    def _read_uj(self) -> list[int]:
        return [int(d.energy_path.read_text().strip()) for d in self._domains]

    def start(self) -> None:
        self._start_error = None
        self._start_uj = None
        try:
            self._start_uj = self._read_uj()
        except (OSError, ValueError) as exc:
            self._start_error = f"RAPL read failed at window start: {exc}"
        self._t0 = self._clock()

    def stop(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        time_s = self._clock() - self._t0
        self._t0 = None
        if self._start_error is not None or self._start_uj is None:
            return _invalid(self.method, time_s, self._start_error or "no RAPL read at window start")
        try:
            end_uj = self._read_uj()
        except (OSError, ValueError) as exc:
            return _invalid(self.method, time_s, f"RAPL read failed at window end: {exc}", samples=1)
        delta_uj = 0
        for domain, start, end in zip(self._domains, self._start_uj, end_uj):
            if end >= start:
                delta_uj += end - start
            elif domain.max_range_uj > 0:
                delta_uj += end + domain.max_range_uj - start
            else:
                return _invalid(
                    self.method,
                    time_s,
                    f"RAPL counter {domain.energy_path} wrapped and its max_energy_range_uj is unknown",
                    samples=2,
                )
        if delta_uj == 0:
            return _invalid(self.method, time_s, f"RAPL counters did not move over {time_s:.3f} s", samples=2)
        names = ", ".join(d.name for d in self._domains)
        return EnergyReading(
            energy_j=delta_uj / 1e6,
            time_s=time_s,
            method=self.method,
            valid=True,
            note=f"RAPL counters ({names}); socket-wide, includes other processes",
            samples=2,
            max_gap_s=None,
            legacy_j=None,
        )

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"rapl_domains": [d.name for d in self._domains]}


class EstimateMeter:
    """Process CPU time × :data:`ESTIMATE_W_PER_BUSY_CORE`. An estimate, never a measurement; CPU only."""

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
        self._cpu0 = self._cpu_clock()
        self._t0 = self._clock()

    def stop(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        time_s = self._clock() - self._t0
        cpu_s = self._cpu_clock() - self._cpu0
        self._t0 = None
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
        pass

    def describe(self) -> dict[str, object]:
        return {"estimate_w_per_busy_core": self._w, "cpu_count": os.cpu_count()}


class NullMeter:
    """Measures time only; energy is None with a note saying why."""

    method = "none"

    def __init__(self, note: str = _NO_METER_NOTE, clock: Callable[[], float] = time.perf_counter) -> None:
        self._note = note
        self._clock = clock
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = self._clock()

    def stop(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError("stop() called before start()")
        time_s = self._clock() - self._t0
        self._t0 = None
        return _invalid(self.method, time_s, self._note)

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {}


# --------------------------------------------------------------------------------------------------------------
# Choosing a meter


@dataclass(frozen=True)
class _Request:
    target: _Target
    device: str
    sample_hz: float
    nvml: ModuleType | None
    rapl_root: str
    clock: Callable[[], float]


_Built = tuple[Meter, list[str]]


def _build_nvml(req: _Request) -> _Built:
    session = _open_nvml(req.nvml, req.target, req.device)
    nvml = session.nvml
    try:
        for handle in session.handles:
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except nvml.NVMLError as exc:
        session.close()
        # Pre-Volta GPUs have no counter (NotSupported); any other failure of the probe gets the same fallback,
        # since power sampling may still work.
        meter, warnings = _build_nvml_power(req)
        reason = "not supported" if isinstance(exc, _nvml_error_type(nvml, "NVMLError_NotSupported")) else exc
        return meter, [
            (
                f"NVML energy counter unavailable on {req.device} ({reason}); using NVML power sampling "
                f"at {req.sample_hz:g} Hz instead"
            ),
            *warnings,
        ]
    return NvmlCounterMeter(session, req.clock), []


def _build_nvml_power(req: _Request) -> _Built:
    session = _open_nvml(req.nvml, req.target, req.device)
    nvml = session.nvml
    try:
        for handle in session.handles:
            nvml.nvmlDeviceGetPowerUsage(handle)
    except nvml.NVMLError as exc:
        session.close()
        raise MeterUnavailable(
            f"NVML cannot read power on {req.device}: {exc}. This GPU reports neither energy nor power; "
            "choose 'estimate' or 'none'",
            reason=f"NVML reports neither energy nor power for {req.device}",
        ) from exc
    return NvmlPowerMeter(session, req.sample_hz, req.clock), []


def _build_rapl(req: _Request) -> _Built:
    domains = find_rapl_domains(req.rapl_root)
    if not domains:
        raise MeterUnavailable(
            f"RAPL is not available: no intel-rapl package domains under {req.rapl_root} "
            "(needs Linux on an Intel or recent AMD CPU with the intel_rapl powercap driver; not in most VMs)",
            reason="RAPL not present",
        )
    unreadable: list[str] = []
    for domain in domains:
        try:
            int(domain.energy_path.read_text().strip())
        except PermissionError:
            unreadable.append(str(domain.energy_path))
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(
                f"RAPL counter {domain.energy_path} cannot be read: {exc}", reason=f"RAPL not readable: {exc}"
            ) from exc
    if unreadable:
        raise MeterUnavailable(
            f"RAPL counters are not readable by this user ({', '.join(unreadable)}): {RAPL_PERMISSION_HINT}",
            reason="RAPL not readable",
        )
    warnings = []
    if req.target.kind != "cpu":
        warnings.append(f"the rapl meter measures CPU packages and DRAM only, not {req.device}")
    return RaplMeter(domains, req.clock), warnings


def _build_estimate(req: _Request) -> _Built:
    warnings = []
    if req.target.kind != "cpu":
        warnings.append(
            f"the estimate meter counts CPU time only; energy used by {req.device} is not included"
        )
    return EstimateMeter(clock=req.clock), warnings


def _build_none(req: _Request) -> _Built:
    return NullMeter(clock=req.clock), []


def _build_auto(req: _Request) -> _Built:
    reasons: list[str] = []
    candidates: list[Callable[[_Request], _Built]]
    if req.target.kind == "cuda":
        candidates = [_build_nvml]
    elif req.target.kind == "cpu":
        candidates = [_build_rapl]
    else:
        candidates = []
        reasons.append(f"no meter for device {req.device!r}")
    details: list[str] = []
    for build in candidates:
        try:
            return build(req)
        except MeterUnavailable as exc:
            reasons.append(exc.reason)
            details.append(str(exc))
    note = f"no energy meter available on this machine ({'; '.join(reasons)})"
    # The one warning carries the full explanation, so a user who wants energy numbers learns how to get them.
    return NullMeter(note, req.clock), [" ".join([f"energy is not measured: {note}.", *details])]


#: The meter table: every name in ENERGY_CHOICES and how to build it.
_BUILDERS: Mapping[str, Callable[[_Request], _Built]] = {
    "auto": _build_auto,
    "nvml": _build_nvml,
    "nvml-power": _build_nvml_power,
    "rapl": _build_rapl,
    "estimate": _build_estimate,
    "none": _build_none,
}


def make_meter(
    name: str,
    device: str,
    *,
    sample_hz: float = DEFAULT_SAMPLE_HZ,
    nvml: ModuleType | None = None,
    rapl_root: str = DEFAULT_RAPL_ROOT,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Meter, list[str]]:
    """Build the energy meter ``name`` for ``device`` ("cpu", "cuda" or "cuda:N").

    Returns the meter and warnings to show the user once. ``auto`` picks the NVML counter, then NVML power
    sampling, for CUDA devices and RAPL for the CPU, and otherwise the null meter; it never raises and never
    picks ``estimate``. An explicitly named meter that cannot work here raises :class:`MeterUnavailable`.

    ``nvml`` injects a pynvml-like module (tests pass a fake); by default pynvml is imported on first use.
    ``clock`` is the window clock in seconds (tests inject one to control window lengths).
    """
    build = _BUILDERS.get(name)
    if build is None:
        raise ValueError(f"unknown energy meter {name!r}; choose one of {', '.join(ENERGY_CHOICES)}")
    if not sample_hz > 0 or math.isinf(sample_hz):
        raise ValueError(f"sample_hz must be a positive finite number, got {sample_hz!r}")
    request = _Request(_parse_device(device), device, sample_hz, nvml, rapl_root, clock)
    return build(request)

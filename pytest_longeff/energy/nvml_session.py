"""NVML plumbing shared by the NVML meters: loading pynvml lazily, mapping CUDA devices to NVML handles, one
NVML session per meter, and the checks of sharing and throttling over a window."""

from __future__ import annotations

import importlib
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from pytest_longeff.energy.device import DeviceTarget
from pytest_longeff.energy.nvml_checks import (
    ViolationTimes,
    foreign_pid_namespace,
    inspect_gpus,
    instant_power_field,
    performance_state,
    read_field_mw,
    read_violations,
    violations_between,
)
from pytest_longeff.energy.readings import Inspection, MeterUnavailable
from pytest_longeff.energy.watch import WindowWatch

#: Seconds over which ``nvmlDeviceGetPowerUsage`` averages on Ampere and newer data-centre GPUs (on older GPUs
#: it is closer to instantaneous); the sampled-power bound allows for this smearing when it is the source.
POWER_USAGE_AVERAGE_S = 1.0

#: Seconds between the checks of other processes and clock-event reasons inside a window (two driver calls per GPU
#: on a daemon thread, negligible beside the workload).
NVML_CHECK_PERIOD_S = 1.0


def _load_pynvml() -> ModuleType | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def nvml_error_type(nvml: Any, name: str) -> type[BaseException]:
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


class NvmlSession:
    """One nvmlInit with the handles of the devices a meter measures; shut down once."""

    def __init__(
        self, nvml: Any, indices: Sequence[int], handles: Sequence[object], pid_namespace: str | None = None
    ) -> None:
        self.nvml = nvml
        self.indices = list(indices)
        self.handles = list(handles)
        self.pid_namespace = pid_namespace
        """Why NVML's host PIDs may not be comparable with ours (see :func:`foreign_pid_namespace`); None on the
        host's PID namespace."""
        self._open = True
        self._instant_fields: list[int | None] | None = None

    @property
    def instant_power(self) -> bool:
        """Whether every GPU reports instantaneous power (``NVML_FI_DEV_POWER_INSTANT``); probed once."""
        if self._instant_fields is None:
            self._instant_fields = [instant_power_field(self.nvml, h) for h in self.handles]
        return all(f is not None for f in self._instant_fields)

    @property
    def power_source(self) -> str:
        """Which NVML reading :meth:`read_power_w` uses, in words."""
        if self.instant_power:
            return "instantaneous power (nvmlDeviceGetFieldValues NVML_FI_DEV_POWER_INSTANT)"
        return f"nvmlDeviceGetPowerUsage (a ~{POWER_USAGE_AVERAGE_S:g}-s average on recent GPUs)"

    def read_power_w(self) -> float:
        """Total power of the session's GPUs now, watts (NVML reports milliwatts); instantaneous where offered."""
        if self.instant_power:
            assert self._instant_fields is not None
            total_mw = 0.0
            for handle, field_id in zip(self.handles, self._instant_fields, strict=True):
                assert field_id is not None
                value = read_field_mw(self.nvml, handle, field_id)
                if value is None:
                    raise self.nvml.NVMLError_NotSupported()
                total_mw += value
            return total_mw / 1000.0
        return sum(float(self.nvml.nvmlDeviceGetPowerUsage(h)) for h in self.handles) / 1000.0

    def power_limit_w(self) -> float | None:
        """Sum of the GPUs' power limits, watts; None if any GPU does not say (the uncertainty's ceiling)."""
        total = 0.0
        for handle in self.handles:
            limit_mw = self._ask(self.nvml.nvmlDeviceGetPowerManagementLimit, handle)
            if limit_mw is None:
                return None
            total += float(limit_mw) / 1000.0
        return total

    def inspect(self) -> Inspection:
        """Other compute processes and throttling on the session's GPUs now."""
        return inspect_gpus(self.nvml, self.handles, self.indices, pid_namespace=self.pid_namespace)

    def violations(self) -> ViolationTimes:
        """The GPUs' cumulative violation counters now (thermal and power-cap time below application clocks)."""
        return read_violations(self.nvml, self.handles, self.indices)

    def performance_state(self) -> int | None:
        """The highest performance state over the GPUs (P0 = 0 is the busiest); None where unknown."""
        return performance_state(self.nvml, self.handles)

    def close(self) -> None:
        """Shut NVML down once; later calls do nothing."""
        if self._open:
            self._open = False
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError:
                pass  # Shutting down a broken session must not mask the result it produced.

    def describe(self) -> dict[str, object]:
        """Driver version, the power source, and per GPU name, power limit (W), clocks (MHz) and performance
        state; None where a GPU does not say."""
        nvml = self.nvml
        clock_kinds = {
            "graphics_clock_mhz": getattr(nvml, "NVML_CLOCK_GRAPHICS", 0),
            "sm_clock_mhz": getattr(nvml, "NVML_CLOCK_SM", 1),
            "mem_clock_mhz": getattr(nvml, "NVML_CLOCK_MEM", 2),
        }
        devices: list[dict[str, object]] = []
        for index, handle in zip(self.indices, self.handles, strict=True):
            name = self._ask(nvml.nvmlDeviceGetName, handle)
            limit_mw = self._ask(nvml.nvmlDeviceGetPowerManagementLimit, handle)
            entry: dict[str, object] = {
                "nvml_index": index,
                "name": None if name is None else _text(name),
                "power_limit_w": None if limit_mw is None else float(limit_mw) / 1000.0,
            }
            for key, kind in clock_kinds.items():
                entry[key] = self._ask(nvml.nvmlDeviceGetClockInfo, handle, kind)
            entry["pstate"] = performance_state(nvml, [handle])
            devices.append(entry)
        driver = self._ask(nvml.nvmlSystemGetDriverVersion)
        return {
            "driver_version": None if driver is None else _text(driver),
            "gpus": devices,
            "power_source": self.power_source,
        }

    def _ask(self, fn: Callable[..., Any], *args: object) -> Any:
        # Environment facts are best effort: a GPU that does not report one still gets the others.
        try:
            return fn(*args)
        except self.nvml.NVMLError:
            return None


class _Seen:
    """One window's findings so far, shared with its check thread."""

    def __init__(self, first: Inspection, violations: ViolationTimes) -> None:
        self.violations = violations
        self._lock = threading.Lock()
        self._seen = first

    def add(self, found: Inspection) -> Inspection:
        """Merge ``found`` in and return everything seen so far."""
        with self._lock:
            self._seen = self._seen.merge(found)
            return self._seen


class WindowChecks:
    """Sharing and throttling on a session's GPUs over a whole window, not only at its edges.

    Other compute processes and clock-event reasons are read at each edge and every ``period_s`` seconds in
    between (a daemon thread that ends with the window); the violation counters, read at the edges, cover the
    whole window (see :mod:`~pytest_longeff.energy.nvml_checks`).
    """

    def __init__(self, session: NvmlSession, period_s: float = NVML_CHECK_PERIOD_S) -> None:
        self._session = session
        self._period_s = period_s
        self._seen: _Seen | None = None
        self._watch: WindowWatch | None = None

    def open(self) -> None:
        """Check now and start checking every period (ending any earlier window's thread)."""
        self.close()
        seen = _Seen(self._session.inspect(), self._session.violations())
        self._seen = seen

        def poll() -> None:
            seen.add(self._session.inspect())

        self._watch = WindowWatch(poll, self._period_s, "nvml")
        self._watch.start()

    def seen(self, final: bool) -> Inspection:
        """Everything seen since :meth:`open`, with a check now; ``final`` ends the thread first."""
        seen = self._seen
        if seen is None:
            return Inspection()
        watch = self._watch
        if final:
            self.close()
        failed = watch.error if watch is not None else None
        moved = violations_between(seen.violations, self._session.violations())
        found = seen.add(self._session.inspect()).merge(moved)
        if failed is not None:
            found = found.merge(Inspection(unchecked=(f"checks inside the window (thread failed: {failed})",)))
        return found

    def close(self) -> None:
        """End the check thread, if any. Idempotent."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()


def cuda_uuid(index: int) -> str | None:
    """CUDA device ``index``'s UUID as NVML spells it ("GPU-" and the canonical UUID), from torch; None without
    torch, without CUDA, or when torch does not report one."""
    try:
        torch: Any = importlib.import_module("torch")
        if not torch.cuda.is_available():
            return None
        raw = torch.cuda.get_device_properties(index).uuid
    except (ImportError, AttributeError, AssertionError, RuntimeError):
        return None
    # Recent torch gives a _CUuuid that prints as the bare canonical UUID, older releases a string.
    try:
        return f"GPU-{uuid.UUID(str(raw).removeprefix('GPU-'))}"
    except ValueError:
        return None


def _nvml_indices(target: DeviceTarget, count: int, nvml: Any) -> tuple[list[int], list[object]]:
    """NVML indices and handles for the target; raises LookupError with a readable reason."""
    if target.kind == "cpu":
        # An explicit NVML meter on a CPU cell measures every GPU: whatever they draw is the cell's cost.
        indices = list(range(count))
        return indices, [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
    assert target.index is not None
    identity = cuda_uuid(target.index)
    if identity is not None and getattr(nvml, "nvmlDeviceGetHandleByUUID", None) is not None:
        # The UUID names the same device to CUDA and NVML, whatever CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER say.
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(identity)
        except nvml.NVMLError as exc:
            raise LookupError(
                f"cuda:{target.index} ({identity}) is not a GPU NVML knows ({exc}); MIG instances have no energy "
                "counter"
            ) from exc
        index_of = getattr(nvml, "nvmlDeviceGetIndex", None)
        return [int(index_of(handle)) if index_of else -1], [handle]
    # Without torch's UUID, by number: CUDA numbers the devices CUDA_VISIBLE_DEVICES lets through; NVML numbers
    # every device on the machine. (With CUDA_DEVICE_ORDER other than PCI_BUS_ID, CUDA may also order mixed GPU
    # models differently from NVML; on such machines set CUDA_DEVICE_ORDER=PCI_BUS_ID.)
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


def open_nvml(nvml: ModuleType | None, target: DeviceTarget, device: str) -> NvmlSession:
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
    except nvml_error_type(module, "NVMLError_LibraryNotFound") as exc:
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
    return NvmlSession(module, indices, handles, foreign_pid_namespace())

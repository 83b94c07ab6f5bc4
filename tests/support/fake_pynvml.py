"""A fake of the part of the pynvml API that pytest_longeff.energy uses, driven by a controllable clock.

The fake is a real ``ModuleType`` so it can be passed wherever a pynvml module is expected. Exception classes
mirror pynvml's: ``NVMLError(value)`` carries the NVML error code in ``.value`` and each subclass
(``NVMLError_NotSupported``, ...) is raised without arguments.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

# Error codes and clock kinds as numbered in nvml.h / pynvml.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_TYPE_UNSIGNED_INT = 1

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Base NVML error; ``value`` is the NVML error code, ``str()`` its message, as in pynvml."""

    value: int = NVML_ERROR_UNKNOWN

    def __init__(self, value: int | None = None) -> None:
        if value is not None:
            self.value = value
        super().__init__(self.value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


# Named like pynvml's classes, hence not PEP 8 class names.
class NVMLError_Uninitialized(NVMLError):
    value = NVML_ERROR_UNINITIALIZED


class NVMLError_InvalidArgument(NVMLError):
    value = NVML_ERROR_INVALID_ARGUMENT


class NVMLError_NotSupported(NVMLError):
    value = NVML_ERROR_NOT_SUPPORTED


class NVMLError_NoPermission(NVMLError):
    value = NVML_ERROR_NO_PERMISSION


class NVMLError_DriverNotLoaded(NVMLError):
    value = NVML_ERROR_DRIVER_NOT_LOADED


class NVMLError_LibraryNotFound(NVMLError):
    value = NVML_ERROR_LIBRARY_NOT_FOUND


class NVMLError_NotFound(NVMLError):
    value = NVML_ERROR_NOT_FOUND


class NVMLError_GpuIsLost(NVMLError):
    value = NVML_ERROR_GPU_IS_LOST


class NVMLError_Unknown(NVMLError):
    value = NVML_ERROR_UNKNOWN


class ManualClock:
    """A clock in seconds that moves only when told to."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@dataclass
class FakeGpu:
    """One simulated GPU. ``power_w`` is constant or a function of the fake's clock (seconds).

    The energy counter holds the energy integrated up to its last update: updates come every
    ``counter_update_s`` seconds after the fake's origin plus ``counter_phase_s``. For a varying ``power_w`` give
    ``energy_j``, its antiderivative (joules at a clock time; only differences are used).
    """

    name: str = "NVIDIA Fake H100"
    power_w: float | Callable[[float], float] = 300.0
    energy_supported: bool = True
    power_supported: bool = True
    #: The energy counter advances in steps of this many seconds, like NVML's ~100 ms refresh.
    counter_update_s: float = 0.1
    #: Counter value (millijoules) at the fake's time origin; set near 2**64 to test wrap-around.
    counter_start_mj: int = 0
    power_limit_w: float = 700.0
    clocks_mhz: dict[int, int] = field(
        default_factory=lambda: {NVML_CLOCK_GRAPHICS: 1980, NVML_CLOCK_SM: 1980, NVML_CLOCK_MEM: 2619}
    )
    #: Offset of the counter's update ticks from the fake's origin, seconds.
    counter_phase_s: float = 0.0
    #: Antiderivative of a varying ``power_w``, joules at a clock time.
    energy_j: Callable[[float], float] | None = None
    #: PIDs of compute processes NVML lists on this GPU.
    processes: list[int] = field(default_factory=list)
    #: Clock-event reason bit mask (nvml.h numbering, e.g. 0x4 SW power cap, 0x40 HW thermal slowdown).
    clock_reasons: int = 0
    #: Performance state (0 = P0, busiest).
    pstate: int = 0
    #: Whether the GPU reports NVML_FI_DEV_POWER_INSTANT through nvmlDeviceGetFieldValues.
    instant_power: bool = False
    #: Cumulative violation time by perf policy (nvml.h numbering: 0 power, 1 thermal), nanoseconds.
    violation_ns: dict[int, int] = field(default_factory=dict)
    #: The GPU's UUID as NVML spells it; None gives "GPU-00000000-0000-0000-0000-<index in 12 hex digits>".
    uuid: str | None = None


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeNvml(ModuleType):
    """pynvml stand-in. Set ``fail[function_name] = exception`` to make a call raise from then on."""

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown
    NVML_CLOCK_GRAPHICS = NVML_CLOCK_GRAPHICS
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_FI_DEV_POWER_INSTANT = NVML_FI_DEV_POWER_INSTANT

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        library_present: bool = True,
        driver_version: str = "550.54.15",
        missing: tuple[str, ...] = (),
    ) -> None:
        super().__init__("fake_pynvml")
        self.gpus = [FakeGpu()] if gpus is None else gpus
        self.clock = clock
        self.origin_s = clock()
        self.library_present = library_present
        self.driver_version = driver_version
        self.fail: dict[str, BaseException] = {}
        self.calls: Counter[str] = Counter()
        self.initialised = 0
        for name in missing:  # an older pynvml or driver without these functions
            setattr(self, name, None)

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.fail:
            raise self.fail[name]
        if name != "nvmlInit" and self.initialised <= 0:
            raise NVMLError_Uninitialized()

    def _gpu(self, handle: FakeHandle) -> FakeGpu:
        return self.gpus[handle.index]

    def reset_counter(self, index: int, counter_mj: int = 0) -> None:
        """Simulate a driver reload or GPU reset: GPU ``index``'s energy counter restarts at ``counter_mj`` now.

        Only meaningful with a single GPU (the fake's time origin is shared)."""
        self.gpus[index].counter_start_mj = counter_mj
        self.origin_s = self.clock()

    def power_at(self, gpu: FakeGpu, t_s: float) -> float:
        return gpu.power_w(t_s) if callable(gpu.power_w) else gpu.power_w

    # -- the pynvml API --------------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if not self.library_present:
            raise NVMLError_LibraryNotFound()
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError_InvalidArgument()
        return FakeHandle(index)

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetIndex")
        return handle.index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByUUID")
        for index in range(len(self.gpus)):
            if self.uuid_of(index) == uuid:
                return FakeHandle(index)
        raise NVMLError_NotFound()

    def uuid_of(self, index: int) -> str:
        """GPU ``index``'s UUID as NVML reports it."""
        return self.gpus[index].uuid or f"GPU-00000000-0000-0000-0000-{index:012x}"

    def nvmlDeviceGetViolationStatus(self, handle: FakeHandle, policy: int) -> FakeViolationTime:
        """Nanoseconds spent below application clocks under ``policy`` since the fake's origin."""
        self._enter("nvmlDeviceGetViolationStatus")
        return FakeViolationTime(round(self.clock() * 1e6), self._gpu(handle).violation_ns.get(policy, 0))

    def last_update_s(self, gpu: FakeGpu, t_s: float) -> float:
        """Clock time of the counter's last update at or before ``t_s`` (the origin if none yet)."""
        first = self.origin_s + gpu.counter_phase_s
        if t_s < first:
            return self.origin_s
        # A tiny epsilon keeps float error from dropping a tick exactly on an update boundary.
        ticks = math.floor((t_s - first) / gpu.counter_update_s + 1e-9)
        return first + ticks * gpu.counter_update_s

    def true_energy_j(self, gpu: FakeGpu, t0: float, t1: float) -> float:
        """The energy the GPU really used between two clock times, joules."""
        if gpu.energy_j is not None:
            return gpu.energy_j(t1) - gpu.energy_j(t0)
        if callable(gpu.power_w):
            raise TypeError("give FakeGpu.energy_j for a varying power")
        return gpu.power_w * (t1 - t0)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        """Millijoules integrated from the fake's origin up to the counter's last update (truncated to mJ)."""
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        gpu = self._gpu(handle)
        if not gpu.energy_supported:
            raise NVMLError_NotSupported()
        energy_j = self.true_energy_j(gpu, self.origin_s, self.last_update_s(gpu, self.clock()))
        return (gpu.counter_start_mj + math.floor(energy_j * 1000.0 + 1e-6)) % 2**64

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        """Milliwatts at the current time of the fake's clock."""
        self._enter("nvmlDeviceGetPowerUsage")
        gpu = self._gpu(handle)
        if not gpu.power_supported:
            raise NVMLError_NotSupported()
        return round(self.power_at(gpu, self.clock()) * 1000.0)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        self._enter("nvmlDeviceGetName")
        return self._gpu(handle).name

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlDeviceGetPowerManagementLimit(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetPowerManagementLimit")
        return round(self._gpu(handle).power_limit_w * 1000.0)

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, kind: int) -> int:
        self._enter("nvmlDeviceGetClockInfo")
        clocks = self._gpu(handle).clocks_mhz
        if kind not in clocks:
            raise NVMLError_NotSupported()
        return clocks[kind]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[FakeProcess]:
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        return [FakeProcess(pid) for pid in self._gpu(handle).processes]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetCurrentClocksEventReasons")
        return self._gpu(handle).clock_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetCurrentClocksThrottleReasons")
        return self._gpu(handle).clock_reasons

    def nvmlDeviceGetPerformanceState(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetPerformanceState")
        return self._gpu(handle).pstate

    def nvmlDeviceGetFieldValues(self, handle: FakeHandle, field_ids: list[int]) -> list[FakeFieldValue]:
        """Instantaneous power in mW for NVML_FI_DEV_POWER_INSTANT where the GPU has it; other fields unsupported."""
        self._enter("nvmlDeviceGetFieldValues")
        gpu = self._gpu(handle)
        values = []
        for field_id in field_ids:
            if field_id == NVML_FI_DEV_POWER_INSTANT and gpu.instant_power:
                mw = round(self.power_at(gpu, self.clock()) * 1000.0)
                values.append(FakeFieldValue(field_id, NVML_VALUE_TYPE_UNSIGNED_INT, NVML_SUCCESS, FakeValue(mw)))
            else:
                values.append(
                    FakeFieldValue(field_id, NVML_VALUE_TYPE_UNSIGNED_INT, NVML_ERROR_NOT_SUPPORTED, FakeValue(0))
                )
        return values


@dataclass(frozen=True)
class FakeViolationTime:
    """c_nvmlViolationTime_t: a CPU timestamp (us) and the cumulative violation time (ns)."""

    referenceTime: int  # pynvml's spelling
    violationTime: int


@dataclass(frozen=True)
class FakeProcess:
    """What nvmlDeviceGetComputeRunningProcesses lists (pid only)."""

    pid: int
    usedGpuMemory: int | None = None  # pynvml's spelling


@dataclass(frozen=True)
class FakeValue:
    """The union c_nvmlValue_t, unsigned-int member only."""

    uiVal: int  # pynvml's spelling


@dataclass(frozen=True)
class FakeFieldValue:
    """c_nvmlFieldValue_t with the members the energy code reads."""

    fieldId: int  # pynvml's spelling
    valueType: int
    nvmlReturn: int
    value: FakeValue

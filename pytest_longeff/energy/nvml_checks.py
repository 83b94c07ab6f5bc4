"""What NVML says about a window besides energy: other processes on the GPU, clock throttling, performance state.

Each check asks NVML through whichever function this pynvml and driver have; a function that is missing (old
pynvml, or ``NVMLError_FunctionNotFound`` / ``NotSupported`` from an old driver) leaves that check undone, said
in :attr:`Inspection.unchecked`, never a crash.

**Throttling.** The clock-event reasons (``nvmlDeviceGetCurrentClocksEventReasons``, formerly
``...ThrottleReasons``) are recorded by name. Those that mean the GPU was slowed against the workload's will --
hardware slowdown, software or hardware thermal slowdown, power brake -- make the reading invalid
(:data:`INVALIDATING_REASONS`). The others are recorded only: ``gpu_idle`` (no work, expected at idle and
between kernels), ``applications_clocks`` and ``display_clocks`` (configured clocks, a property of the setup),
``sync_boost``, and ``sw_power_cap``: a data-centre GPU under full load routinely runs at its power limit, so
treating that as throttling would invalidate every heavy window; it is recorded so a reader can see the result
was power-limited. ``board_limit`` and ``reliability`` (throttle API only) are recorded too.

**Other processes.** PIDs from ``nvmlDeviceGetComputeRunningProcesses`` other than :func:`os.getpid` make the
reading invalid. In a container without the host's PID namespace NVML reports host PIDs, so the process itself
can appear as "other": run GPU benchmarks with ``--pid=host`` or read the note.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from pytest_longeff.energy.readings import Inspection

#: Clock-event reason bits as numbered in nvml.h (stable across drivers), with the names recorded.
REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clocks",
    0x200: "board_limit",
    0x400: "reliability",
}

#: Reasons that make a reading invalid: the GPU was slowed down by heat or by the board's protection.
INVALIDATING_REASONS = frozenset(
    {"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)

_REASON_FUNCTIONS = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")


def decode_reasons(mask: int) -> list[str]:
    """The names of the bits set in a clock-event reason mask; unknown bits as "bit_0x..."."""
    names = [name for bit, name in REASON_BITS.items() if mask & bit]
    unknown = mask & ~sum(REASON_BITS)
    return names + ([f"bits_{unknown:#x}"] if unknown else [])


def _call(nvml: Any, names: Sequence[str], *args: object) -> tuple[Any, str | None]:
    """Result of the first of ``names`` this pynvml has, or None with why not."""
    for name in names:
        fn: Callable[..., Any] | None = getattr(nvml, name, None)
        if fn is None:
            continue
        try:
            return fn(*args), None
        except nvml.NVMLError as exc:
            return None, f"{name} failed ({exc})"
    return None, f"{' / '.join(names)} missing from pynvml"


def inspect_gpus(
    nvml: Any, handles: Sequence[object], indices: Sequence[int], own_pid: int | None = None
) -> Inspection:
    """Other compute processes and clock-event reasons on the GPUs now."""
    pid = os.getpid() if own_pid is None else own_pid
    others: list[int] = []
    reasons: list[str] = []
    problems: list[str] = []
    unchecked: list[str] = []
    for index, handle in zip(indices, handles, strict=True):
        procs, why = _call(nvml, ["nvmlDeviceGetComputeRunningProcesses"], handle)
        if why is not None:
            unchecked.append(f"other processes ({why})")
        else:
            theirs = sorted({int(p.pid) for p in procs} - {pid})
            if theirs:
                others.extend(theirs)
                problems.append(f"other compute processes on GPU {index}: {', '.join(map(str, theirs))}")
        mask, why = _call(nvml, _REASON_FUNCTIONS, handle)
        if why is not None:
            unchecked.append(f"throttling ({why})")
            continue
        names = decode_reasons(int(mask))
        reasons.extend(names)
        bad = [n for n in names if n in INVALIDATING_REASONS]
        if bad:
            problems.append(f"GPU {index} throttled ({', '.join(bad)})")
    return Inspection(
        tuple(dict.fromkeys(others)), tuple(dict.fromkeys(reasons)), tuple(problems), tuple(dict.fromkeys(unchecked))
    )


def performance_state(nvml: Any, handles: Sequence[object]) -> int | None:
    """The highest (least busy) performance state over the GPUs, 0-15; None where unknown."""
    states = []
    for handle in handles:
        state, why = _call(nvml, ["nvmlDeviceGetPerformanceState"], handle)
        if why is None and state is not None:
            states.append(int(state))
    return max(states) if states else None


def instant_power_field(nvml: Any, handle: object) -> int | None:
    """The field id of instantaneous power if this GPU reports it through ``nvmlDeviceGetFieldValues``."""
    field_id = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
    if field_id is None or getattr(nvml, "nvmlDeviceGetFieldValues", None) is None:
        return None
    try:
        return field_id if read_field_mw(nvml, handle, int(field_id)) is not None else None
    except nvml.NVMLError:
        return None


def read_field_mw(nvml: Any, handle: object, field_id: int) -> float | None:
    """One power field's value in milliwatts, or None when the GPU does not report it (its nvmlReturn != 0)."""
    value = nvml.nvmlDeviceGetFieldValues(handle, [field_id])[0]
    if int(value.nvmlReturn) != 0:
        return None
    return float(_field_number(value))


def _field_number(value: Any) -> float:
    # c_nvmlFieldValue_t.value is a union read by valueType (nvml.h: 0 double, 1 uint, 2 ulong, 3 ulonglong,
    # 4 slonglong, 5 sint, 6 ushort).
    member = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    return float(getattr(value.value, member.get(int(value.valueType), "uiVal")))

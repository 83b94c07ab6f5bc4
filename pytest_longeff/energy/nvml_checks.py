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
was power-limited. ``board_limit`` and ``reliability`` (throttle API only) are recorded too. The reasons are a
state at one moment, read at the edges and now and then in between; over the whole window NVML's cumulative
violation counters (``nvmlDeviceGetViolationStatus``, nanoseconds below application clocks per policy) are
compared at the edges (:data:`VIOLATION_POLICIES`): power-cap time that grew is recorded as ``sw_power_cap``;
thermal violation time that grew is recorded as ``thermal_slowdown`` and makes the reading invalid once it reaches
:data:`THERMAL_SLOWDOWN_SHARE` of the window (and at least :data:`THERMAL_SLOWDOWN_FLOOR_S`); less is noted with
its seconds ("GPU 0 thermal slowdown 0.020 s of 3600 s (under 1 %): valid"). The window's length is the span
between the two reads' ``referenceTime`` (NVML's own timestamp of each counter value), or, where that does not
advance, between the reads on this host's clock.

**Other processes.** PIDs from ``nvmlDeviceGetComputeRunningProcesses`` other than :func:`os.getpid` make the
reading invalid. NVML reports PIDs in the host's PID namespace: in a container without it (no ``--pid=host`` /
``hostPID: true``) our own process is listed under a PID we cannot know (:func:`foreign_pid_namespace`). There a
list without our PID cannot say who is who, but it can say how many: one listed PID is noted as "cannot attribute
other processes" (it may be us); with two or more listed, at least all but one are other processes, whichever of
them we are, and the reading is invalid (no PIDs recorded in ``other_processes``: we cannot tell which are not ours).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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

#: Reasons that make a reading invalid: the GPU was slowed down by heat or by the board's protection
#: (``thermal_slowdown`` is the thermal violation counter's, see :data:`VIOLATION_POLICIES`; it invalidates only
#: from :data:`THERMAL_SLOWDOWN_SHARE` of the window on).
INVALIDATING_REASONS = frozenset(
    {"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "thermal_slowdown"}
)

#: Performance policies whose violation counters are compared over a window, numbered as ``nvmlPerfPolicyType_t``
#: in nvml.h, with the reason recorded when one grew. POWER is the limiter behind the ``sw_power_cap`` clock-event
#: reason (recorded only); THERMAL counts software and hardware thermal slowdown (invalidating).
VIOLATION_POLICIES: dict[int, str] = {0: "sw_power_cap", 1: "thermal_slowdown"}

#: Thermal violation time, as a share of the window, from which the reading is invalid; below it the reading stays
#: valid and the seconds are noted. The violation counter is cumulative over the whole window, so any growth at all
#: would let one brief thermal event (a few milliseconds, e.g. a fan ramping up) invalidate an hours-long training
#: window, and an invalid current reading against a valid baseline fails the regression gate. A slowdown lowers the
#: clocks for its own duration only, so it can move the window's energy by about that share of the window: 1 % is
#: well inside the tolerances the gate is used with (several %) and the run-to-run spread of GPU energy.
THERMAL_SLOWDOWN_SHARE = 0.01

#: Thermal violation time, seconds, below which the reading stays valid whatever the window's length: on short
#: windows 1 % is a few milliseconds, i.e. a single brief event the driver's accounting barely resolves.
THERMAL_SLOWDOWN_FLOOR_S = 0.1

#: Where this process's PID namespace is read from (tests point it at a fake tree).
PROC_ROOT = Path("/proc")

#: ``/proc/self/ns/pid`` of a process in the host's (initial) PID namespace: its inode is fixed in the kernel
#: (``PROC_PID_INIT_INO``), the same on every Linux machine.
HOST_PID_NAMESPACE = "pid:[4026531836]"

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


def foreign_pid_namespace(proc: Path | None = None) -> str | None:
    """Why the PIDs NVML lists (host PIDs) may not be comparable with :func:`os.getpid`, or None in the host's PID
    namespace or when that cannot be read. ``proc`` defaults to :data:`PROC_ROOT`."""
    root = PROC_ROOT if proc is None else proc
    try:
        status = (root / "self" / "status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("NSpid:") and len(line.split()) > 2:
            return f"nested PID namespace (NSpid {' '.join(line.split()[1:])})"
    try:
        namespace = os.readlink(root / "self" / "ns" / "pid")
    except OSError:
        return None
    return None if namespace == HOST_PID_NAMESPACE else f"PID namespace {namespace} is not the host's"


def inspect_gpus(
    nvml: Any,
    handles: Sequence[object],
    indices: Sequence[int],
    own_pid: int | None = None,
    pid_namespace: str | None = None,
) -> Inspection:
    """Other compute processes and clock-event reasons on the GPUs now. ``pid_namespace`` says why NVML's PIDs may
    not be ours to compare (:func:`foreign_pid_namespace`): then a list without our PID is noted, not shared."""
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
            listed = {int(p.pid) for p in procs}
            theirs = sorted(listed - {pid})
            if theirs and pid_namespace is not None and pid not in listed:
                # Our PID is not comparable with NVML's, so any one listed PID may be ours; but whichever it is,
                # all the others are not (and if we hold no context here, there are even more of them).
                host_pids = ", ".join(map(str, theirs))
                if len(listed) == 1:
                    unchecked.append(
                        f"cannot attribute other processes (no host PID namespace: {pid_namespace}); NVML lists host "
                        f"PID {host_pids} on GPU {index}, which may be this process"
                    )
                else:
                    problems.append(
                        f"at least {len(listed) - 1} other compute process(es) on GPU {index}: NVML lists host PIDs "
                        f"{host_pids}, at most one of them this process (no host PID namespace: {pid_namespace})"
                    )
            elif theirs:
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


@dataclass(frozen=True)
class ViolationTimes:
    """The GPUs' violation counters at one moment (see :data:`VIOLATION_POLICIES`)."""

    nanoseconds: Mapping[tuple[int, str], int]
    """Cumulative time below application clocks, ns, by (NVML index, reason); only those that could be read."""
    unchecked: tuple[str, ...] = ()
    """Those that could not be read, and why."""
    reference_us: Mapping[tuple[int, str], int] = field(default_factory=dict)
    """NVML's timestamp of each counter value (``referenceTime``, microseconds), by (NVML index, reason)."""
    read_at_s: float | None = None
    """When the counters were read, seconds on this host's monotonic clock (the window's length where NVML's
    timestamps do not advance)."""


def read_violations(
    nvml: Any, handles: Sequence[object], indices: Sequence[int], clock: Callable[[], float] = time.perf_counter
) -> ViolationTimes:
    """Each GPU's violation counters now; one NVML call per GPU and policy."""
    times: dict[tuple[int, str], int] = {}
    stamps: dict[tuple[int, str], int] = {}
    unchecked: list[str] = []
    for index, handle in zip(indices, handles, strict=True):
        for policy, reason in VIOLATION_POLICIES.items():
            status, why = _call(nvml, ["nvmlDeviceGetViolationStatus"], handle, policy)
            if why is not None:
                unchecked.append(f"{reason} during the window ({why})")
            else:
                times[(index, reason)] = int(status.violationTime)
                stamps[(index, reason)] = int(getattr(status, "referenceTime", 0) or 0)
    return ViolationTimes(times, tuple(dict.fromkeys(unchecked)), stamps, clock())


def _span_s(before: ViolationTimes, after: ViolationTimes, key: tuple[int, str]) -> float | None:
    """Seconds between two reads of one counter: NVML's timestamps where they advanced, else this host's clock."""
    start_us, end_us = before.reference_us.get(key, 0), after.reference_us.get(key, 0)
    if start_us > 0 and end_us > start_us:
        return (end_us - start_us) / 1e6
    if before.read_at_s is not None and after.read_at_s is not None and after.read_at_s > before.read_at_s:
        return after.read_at_s - before.read_at_s
    return None


def _thermal_finding(index: int, slowed_s: float, window_s: float | None) -> tuple[str | None, str | None]:
    """A problem (the reading is invalid) or a remark (it stays valid) for ``slowed_s`` seconds of thermal
    violation time over a window of ``window_s`` seconds (None: unknown, when only the floor applies)."""
    of = "" if window_s is None else f" of {_seconds(window_s)} s"
    if window_s is not None and slowed_s < THERMAL_SLOWDOWN_SHARE * window_s:
        limit = f"{THERMAL_SLOWDOWN_SHARE * 100:g} %"
        return None, f"GPU {index} thermal slowdown {slowed_s:.3f} s{of} (under {limit}): valid"
    if slowed_s < THERMAL_SLOWDOWN_FLOOR_S:
        return None, f"GPU {index} thermal slowdown {slowed_s:.3f} s{of} (under {THERMAL_SLOWDOWN_FLOOR_S:g} s): valid"
    share = "" if window_s is None else f", {slowed_s / window_s * 100:.1f} %"
    return f"GPU {index} throttled during the window (thermal_slowdown for {slowed_s:.3f} s{of}{share})", None


def _seconds(value: float) -> str:
    # Three significant digits for short windows, whole seconds for long ones ("0.0403", "10", "3600").
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def violations_between(before: ViolationTimes, after: ViolationTimes) -> Inspection:
    """The reasons whose violation time grew between two reads; thermal time from :data:`THERMAL_SLOWDOWN_SHARE`
    of the window (and :data:`THERMAL_SLOWDOWN_FLOOR_S`) on as a problem, less as a remark."""
    reasons: list[str] = []
    problems: list[str] = []
    remarks: list[str] = []
    for key, end_ns in after.nanoseconds.items():
        index, reason = key
        start_ns = before.nanoseconds.get(key)
        if start_ns is None or end_ns <= start_ns:
            continue
        reasons.append(reason)
        if reason in INVALIDATING_REASONS:
            problem, remark = _thermal_finding(index, (end_ns - start_ns) / 1e9, _span_s(before, after, key))
            problems.extend([problem] if problem else [])
            remarks.extend([remark] if remark else [])
    # Inspection has no field for remarks on a valid reading; its ``unchecked`` items are the only ones that reach
    # the note (after "not checked: "), so the tolerated seconds travel there.
    unchecked = tuple(dict.fromkeys((*before.unchecked, *after.unchecked, *remarks)))
    return Inspection((), tuple(dict.fromkeys(reasons)), tuple(problems), unchecked)


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

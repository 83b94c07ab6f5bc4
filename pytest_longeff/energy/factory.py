"""Choosing a meter: the table of meter builders, the public way to add one, and :func:`make_meter`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from pytest_longeff.energy.base import Meter
from pytest_longeff.energy.device import DeviceTarget, parse_device
from pytest_longeff.energy.estimate import EstimateMeter
from pytest_longeff.energy.legacy import LegacyFigure
from pytest_longeff.energy.null import NullMeter
from pytest_longeff.energy.nvml import NvmlCounterMeter, NvmlPowerMeter
from pytest_longeff.energy.nvml_session import nvml_error_type, open_nvml
from pytest_longeff.energy.rapl import DEFAULT_RAPL_ROOT, RAPL_PERMISSION_HINT, RaplMeter, find_rapl_domains
from pytest_longeff.energy.readings import MeterUnavailable
from pytest_longeff.energy.sampler import DEFAULT_SAMPLE_HZ

#: The built-in meter names, in the order the command line lists them.


@dataclass(frozen=True)
class MeterRequest:
    """What :func:`make_meter` asks a meter builder for."""

    device: str
    """The cell's device string as given, e.g. "cuda:1" (for messages)."""
    target: DeviceTarget
    """The device string parsed."""
    sample_hz: float
    """Rate for meters that sample power, Hz."""
    nvml: ModuleType | None
    """A pynvml-like module to use instead of importing pynvml (tests pass a fake)."""
    rapl_root: str
    """The powercap sysfs root to look for RAPL counters under."""
    clock: Callable[[], float]
    """The window clock, seconds."""
    legacy: bool
    """Whether to compute the seed study's legacy figure where the meter has a power source."""
    sleep: Callable[[float], None] = time.sleep
    """How counter meters wait while measuring their update period or aligning to a tick (tests pass a fake
    clock's ``advance``)."""
    align: bool = False
    """Whether counter meters align window edges to counter ticks (costs up to one update period at each edge,
    outside the window; tightens the uncertainty to the actual power instead of the power limit)."""


MeterBuilder = Callable[[MeterRequest], tuple[Meter, list[str]]]
"""Builds a meter for a request: returns it with warnings to show once, or raises :class:`MeterUnavailable`."""


def _build_nvml(req: MeterRequest) -> tuple[Meter, list[str]]:
    session = open_nvml(req.nvml, req.target, req.device)
    nvml = session.nvml
    try:
        for handle in session.handles:
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except nvml.NVMLError as exc:
        session.close()
        # Pre-Volta GPUs have no counter (NotSupported); any other failure of the probe gets the same fallback,
        # since power sampling may still work.
        meter, warnings = _build_nvml_power(req)
        reason = "not supported" if isinstance(exc, nvml_error_type(nvml, "NVMLError_NotSupported")) else exc
        return meter, [
            (
                f"NVML energy counter unavailable on {req.device} ({reason}); using NVML power sampling "
                f"at {req.sample_hz:g} Hz instead"
            ),
            *warnings,
        ]
    counter = NvmlCounterMeter(session, req.clock, req.sleep, req.align)
    counter.update_period  # noqa: B018 - measured now, once, rather than at the first window's start
    if req.legacy:
        return LegacyFigure(counter, counter.read_power_w, req.clock), []
    return counter, []


def _build_nvml_power(req: MeterRequest) -> tuple[Meter, list[str]]:
    session = open_nvml(req.nvml, req.target, req.device)
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
    return NvmlPowerMeter(session, req.sample_hz, req.clock, legacy=req.legacy), []


def _build_rapl(req: MeterRequest) -> tuple[Meter, list[str]]:
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
    meter = RaplMeter(domains, req.clock, req.sleep, req.align)
    meter.update_period  # noqa: B018 - measured now, once, rather than at the first window's start
    return meter, warnings


def _build_estimate(req: MeterRequest) -> tuple[Meter, list[str]]:
    warnings = []
    if req.target.kind != "cpu":
        warnings.append(f"the estimate meter counts CPU time only; energy used by {req.device} is not included")
    return EstimateMeter(clock=req.clock), warnings


def _build_none(req: MeterRequest) -> tuple[Meter, list[str]]:
    return NullMeter(clock=req.clock), []


def _build_auto(req: MeterRequest) -> tuple[Meter, list[str]]:
    reasons: list[str] = []
    candidates: list[MeterBuilder]
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


_BUILTIN_BUILDERS: dict[str, MeterBuilder] = {
    "auto": _build_auto,
    "nvml": _build_nvml,
    "nvml-power": _build_nvml_power,
    "rapl": _build_rapl,
    "estimate": _build_estimate,
    "none": _build_none,
}
_BUILDERS: dict[str, MeterBuilder] = dict(_BUILTIN_BUILDERS)


def register_meter(name: str, builder: MeterBuilder, *, replace: bool = False) -> None:
    """Make ``make_meter(name, ...)`` build a meter with ``builder`` (e.g. one a plugin hook returned).

    Built-in names cannot be taken. A name registered before raises ValueError unless ``replace`` is True.
    """
    if not name or name != name.strip():
        raise ValueError(f"a meter name must be non-empty without surrounding blanks, got {name!r}")
    if name in _BUILTIN_BUILDERS:
        raise ValueError(f"{name!r} is a built-in energy meter and cannot be replaced")
    if name in _BUILDERS and not replace:
        raise ValueError(f"an energy meter named {name!r} is already registered; pass replace=True")
    _BUILDERS[name] = builder


def unregister_meter(name: str) -> None:
    """Forget a meter added with :func:`register_meter`; unknown names are ignored, built-ins are kept."""
    if name not in _BUILTIN_BUILDERS:
        _BUILDERS.pop(name, None)


def meter_names() -> tuple[str, ...]:
    """Every name :func:`make_meter` accepts now: :data:`ENERGY_CHOICES`, then registered meters in order."""
    return tuple(_BUILDERS)


def make_meter(
    name: str,
    device: str,
    *,
    sample_hz: float = DEFAULT_SAMPLE_HZ,
    nvml: ModuleType | None = None,
    rapl_root: str = DEFAULT_RAPL_ROOT,
    clock: Callable[[], float] = time.perf_counter,
    legacy: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    align: bool = False,
) -> tuple[Meter, list[str]]:
    """Build the energy meter ``name`` for ``device`` ("cpu", "cuda" or "cuda:N").

    Returns the meter and warnings to show the user once. ``auto`` picks the NVML counter, then NVML power
    sampling, for CUDA devices and RAPL for the CPU, and otherwise the null meter; it never raises and never
    picks ``estimate``. An explicitly named meter that cannot work here raises :class:`MeterUnavailable`.

    ``nvml`` injects a pynvml-like module (tests pass a fake); by default pynvml is imported on first use.
    ``clock`` is the window clock in seconds (tests inject one to control window lengths). ``legacy`` adds the
    seed study's figure where there is a power source: the NVML counter meter is then wrapped in
    :class:`LegacyFigure` (a 2-s poll thread per window) and the NVML power meter derives it from its trace;
    other meters have no power source and leave it None. ``sleep`` is how counter meters wait while measuring
    their update period when made (NVML: about 0.6 s, at most 2 s) and while aligning; ``align`` makes counter
    meters align window edges to counter ticks (see :class:`~pytest_longeff.energy.base.CounterMeter`).
    """
    build = _BUILDERS.get(name)
    if build is None:
        raise ValueError(f"unknown energy meter {name!r}; choose one of {', '.join(meter_names())}")
    if not sample_hz > 0 or math.isinf(sample_hz):
        raise ValueError(f"sample_hz must be a positive finite number, got {sample_hz!r}")
    request = MeterRequest(device, parse_device(device), sample_hz, nvml, rapl_root, clock, legacy, sleep, align)
    return build(request)

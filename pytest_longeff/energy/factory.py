"""Choosing a meter: the built-in meter builders, the check that turns what the ``pytest_longeff_meters`` hooks
returned into a session's table (:func:`meter_table`), and :func:`make_meter`, which builds a meter from such a table.

Nothing here is mutable module state: a session's table lives in the session's registry
(:class:`pytest_longeff.config.registry.Extensions`) and is passed to :func:`make_meter` explicitly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Protocol

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


class MeterBuilder(Protocol):
    """Builds a meter for a request (a value of a meter table; a plain function or lambda is one)."""

    def __call__(self, request: MeterRequest, /) -> tuple[Meter, list[str]]:
        """Return the meter with warnings to show once, or raise :class:`MeterUnavailable` saying how to fix it."""
        ...


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


BUILTIN_METERS: Mapping[str, MeterBuilder] = MappingProxyType({
    "auto": _build_auto,
    "nvml": _build_nvml,
    "nvml-power": _build_nvml_power,
    "rapl": _build_rapl,
    "estimate": _build_estimate,
    "none": _build_none,
})
"""The built-in meters by name, in the order of :data:`~pytest_longeff.choices.ENERGY_CHOICES` (read-only); what
:func:`make_meter` uses when given no table. A session reaches them through the plugin's own
``pytest_longeff_meters``, by name (:class:`pytest_longeff.config.registry.BuiltinMeter`), so that starting a session
imports no meter code."""


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
    meters: Mapping[str, MeterBuilder] = BUILTIN_METERS,
) -> tuple[Meter, list[str]]:
    """Build the energy meter ``name`` of the table ``meters`` for ``device`` ("cpu", "cuda" or "cuda:N").

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

    ``meters`` is the table to choose from: a session passes its own (what the ``pytest_longeff_meters`` hooks
    returned, built-ins included: :func:`pytest_longeff.config.registry.meter_table`); by default, the built-ins
    alone. An unknown
    ``name`` raises ValueError listing the table's names.
    """
    build = meters.get(name)
    if build is None:
        raise ValueError(f"unknown energy meter {name!r}; choose one of {', '.join(meters)}")
    if not sample_hz > 0 or math.isinf(sample_hz):
        raise ValueError(f"sample_hz must be a positive finite number, got {sample_hz!r}")
    request = MeterRequest(device, parse_device(device), sample_hz, nvml, rapl_root, clock, legacy, sleep, align)
    return build(request)

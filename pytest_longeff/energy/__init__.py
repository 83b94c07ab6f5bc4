"""Energy meters: measurement windows over NVML, RAPL, a CPU-time estimate, or nothing.

A meter measures one window: the caller synchronises the device, calls ``start()``, runs the work,
synchronises again and calls ``stop()``, which returns an :class:`EnergyReading`; ``read()`` gives the energy
so far without closing the window. Meters are strategies behind the :class:`Meter` protocol, one class each,
chosen by :func:`make_meter` from a table of builders: :data:`BUILTIN_METERS`, or a session's own table (built by
:func:`meter_table` from what the ``pytest_longeff_meters`` hooks returned, and kept in the session's registry).

Missing hardware is not an error: under ``auto`` the result is the null meter plus one warning. Only a meter the
user asked for by name that cannot work here raises :class:`MeterUnavailable`, with a message that says how to
fix it.

Nothing heavy is imported at package load: ``pynvml`` is imported the first time an NVML meter is made.

Layout: ``readings`` (value objects), ``ticks`` (update periods and the counters' error bound), ``base`` (the
protocol and the counter-meter base class), ``arithmetic`` (pure functions), ``sampler`` (the power-sampling
thread), ``watch`` (the thread that reads RAPL counters and checks NVML GPUs inside a window), ``nvml_session``,
``nvml_checks`` (sharing, throttling, pstate) and ``nvml``, ``rapl``, ``estimate``, ``null`` (the meters),
``legacy`` (the seed study's figure as a wrapper), ``factory`` (the built-in table and :func:`make_meter`).
"""

from __future__ import annotations

from pytest_longeff.choices import ENERGY_CHOICES
from pytest_longeff.energy.arithmetic import (
    LEGACY_BUCKET_S,
    LEGACY_HISTORY_ROWS,
    LEGACY_POLL_PERIOD_S,
    integrate_power,
    legacy_as_extracted,
    legacy_bucket_means,
    legacy_energy,
    max_sample_gap,
    measure_idle,
    net_energy_j,
    power_uncertainty_j,
)
from pytest_longeff.energy.base import CounterMeter, CounterReadError, Meter
from pytest_longeff.energy.device import DeviceTarget, parse_device
from pytest_longeff.energy.estimate import ESTIMATE_W_PER_BUSY_CORE, EstimateMeter
from pytest_longeff.energy.factory import BUILTIN_METERS, MeterBuilder, MeterRequest, make_meter
from pytest_longeff.energy.legacy import LegacyFigure
from pytest_longeff.energy.null import NullMeter
from pytest_longeff.energy.nvml import GAP_WARN_PERIODS, NVML_UPDATE_PERIOD_S, NvmlCounterMeter, NvmlPowerMeter
from pytest_longeff.energy.nvml_checks import INVALIDATING_REASONS, decode_reasons
from pytest_longeff.energy.rapl import (
    DEFAULT_RAPL_ROOT,
    RAPL_MAX_PLAUSIBLE_W,
    RAPL_PERMISSION_HINT,
    RaplDomain,
    RaplMeter,
    find_rapl_domains,
)
from pytest_longeff.energy.readings import EnergyReading, IdleBaseline, Inspection, MeterUnavailable
from pytest_longeff.energy.sampler import DEFAULT_SAMPLE_HZ, PowerSampler
from pytest_longeff.energy.ticks import COARSE_PERIODS, UpdatePeriod, measure_update_period

__all__ = [
    "BUILTIN_METERS",
    "COARSE_PERIODS",
    "DEFAULT_RAPL_ROOT",
    "DEFAULT_SAMPLE_HZ",
    "ENERGY_CHOICES",
    "ESTIMATE_W_PER_BUSY_CORE",
    "GAP_WARN_PERIODS",
    "INVALIDATING_REASONS",
    "LEGACY_BUCKET_S",
    "LEGACY_HISTORY_ROWS",
    "LEGACY_POLL_PERIOD_S",
    "NVML_UPDATE_PERIOD_S",
    "RAPL_MAX_PLAUSIBLE_W",
    "RAPL_PERMISSION_HINT",
    "CounterMeter",
    "CounterReadError",
    "DeviceTarget",
    "EnergyReading",
    "EstimateMeter",
    "IdleBaseline",
    "Inspection",
    "LegacyFigure",
    "Meter",
    "MeterBuilder",
    "MeterRequest",
    "MeterUnavailable",
    "NullMeter",
    "NvmlCounterMeter",
    "NvmlPowerMeter",
    "PowerSampler",
    "RaplDomain",
    "RaplMeter",
    "UpdatePeriod",
    "decode_reasons",
    "find_rapl_domains",
    "integrate_power",
    "legacy_as_extracted",
    "legacy_bucket_means",
    "legacy_energy",
    "make_meter",
    "max_sample_gap",
    "measure_idle",
    "measure_update_period",
    "net_energy_j",
    "parse_device",
    "power_uncertainty_j",
]

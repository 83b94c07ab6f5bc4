"""The session's registries: what the ``pytest_longeff_*`` hooks return, gathered once in ``pytest_configure``.

Each of the four hooks (families, tasks, energy meters, task metrics) is called once per session; the plugin
implements them too, for the built-ins, so a session's registry holds the built-ins and every addition alike. The
results are merged by name in the order the implementations were registered (a conftest after the installed
plugins, an inner conftest after an outer one): a later entry replaces an earlier one of the same name, except that
a built-in meter or metric cannot be replaced (a usage error). The registry lives in the session's config stash and
is passed to its users explicitly; nothing is written to module-level tables, so nothing is left to undo at
``pytest_unconfigure``, and an in-process pytester run has registries of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_longeff.choices import ENERGY_CHOICES

if TYPE_CHECKING:
    from pytest_longeff.energy import Meter
    from pytest_longeff.energy.factory import MeterBuilder, MeterRequest
    from pytest_longeff.models.families import Family
    from pytest_longeff.tasks.metrics import Metric
    from pytest_longeff.tasks.specs import TaskSpec


@dataclass(frozen=True)
class Extensions:
    """The registries of one session, by name: built-ins and hook additions alike."""

    families: dict[str, Family]
    """Model families, for ``--longeff-families``."""
    tasks: dict[str, TaskSpec]
    """Tasks, for ``--longeff-tasks``."""
    meters: Mapping[str, MeterBuilder]
    """Energy meter builders (read-only), for ``--longeff-energy`` and ``make_meter(..., meters=)``."""
    metrics: Mapping[str, Metric]
    """Task metrics (read-only), for a task's ``metric`` and ``score_predictions(..., metrics)``."""


@dataclass(frozen=True)
class BuiltinMeter:
    """A built-in energy meter by name, as the plugin's own ``pytest_longeff_meters`` returns it: the meter's code
    (``pytest_longeff.energy``) is imported when a meter is made, not when a session starts, so a pytest run that
    measures nothing never loads it."""

    name: str

    def __call__(self, request: MeterRequest) -> tuple[Meter, list[str]]:
        """Build the built-in meter ``name`` for ``request``."""
        from pytest_longeff.energy.factory import BUILTIN_METERS

        return BUILTIN_METERS[self.name](request)


def builtin_meters() -> dict[str, MeterBuilder]:
    """The built-in meters, by name, for the plugin's ``pytest_longeff_meters``."""
    return {name: BuiltinMeter(name) for name in ENERGY_CHOICES}


def meter_table(meters: Mapping[str, MeterBuilder]) -> Mapping[str, MeterBuilder]:
    """A session's meter table from the name -> builder entries the ``pytest_longeff_meters`` hooks returned, merged.

    Returns a read-only copy with the built-in names first (in :data:`~pytest_longeff.choices.ENERGY_CHOICES`'
    order), then the others in their order. Raises ValueError for a name that is empty or has surrounding blanks, a
    builder that is not callable, or a built-in name bound to anything but its built-in (which cannot be replaced).
    """
    for name, builder in meters.items():
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"a meter name must be non-empty without surrounding blanks, got {name!r}")
        if name in ENERGY_CHOICES and builder != BuiltinMeter(name):
            raise ValueError(f"{name!r} is a built-in energy meter and cannot be replaced")
        if not callable(builder):
            raise ValueError(f"meter {name!r}: expected a builder taking a MeterRequest, got {builder!r}")
    builtins = {name: meters[name] for name in ENERGY_CHOICES if name in meters}
    return MappingProxyType({**builtins, **{name: b for name, b in meters.items() if name not in ENERGY_CHOICES}})


def _in_registration_order(results: list[Any]) -> list[Any]:
    # pluggy calls the implementation registered last first; merging in registration order lets it win.
    return list(reversed(results))


def _by_name(groups: Iterable[Iterable[Any] | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group in groups:
        for thing in group or ():
            out[thing.name] = thing
    return out


def _merged(groups: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group in groups:
        out.update(group or {})
    return out


def gather(config: pytest.Config) -> Extensions:
    """Call the four registration hooks once and build this session's registries from what they return.

    Raises ``pytest.UsageError`` when a meter or metric returned by a hook is malformed or would replace a built-in.
    """
    from pytest_longeff.tasks.metrics import metric_table

    hook = config.hook
    families = _by_name(_in_registration_order(hook.pytest_longeff_families()))
    tasks = _by_name(_in_registration_order(hook.pytest_longeff_tasks()))
    try:
        meters = meter_table(_merged(_in_registration_order(hook.pytest_longeff_meters())))
    except ValueError as exc:
        raise pytest.UsageError(f"pytest_longeff_meters: {exc}") from None
    try:
        metrics = metric_table(_merged(_in_registration_order(hook.pytest_longeff_metrics())))
    except ValueError as exc:
        raise pytest.UsageError(f"pytest_longeff_metrics: {exc}") from None
    return Extensions(families, tasks, meters, metrics)

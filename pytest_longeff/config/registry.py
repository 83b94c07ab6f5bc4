"""What the ``pytest_longeff_*`` hooks return, gathered once in ``pytest_configure``.

Families and tasks become the session's registries (by name; a later registration replaces an earlier one).
Meters go into :func:`pytest_longeff.energy.register_meter`'s table for the session and leave it at
``pytest_unconfigure``. Metrics go into :func:`pytest_longeff.tasks.metrics.register_metric`'s table the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_longeff.models.families import Family
    from pytest_longeff.tasks.specs import TaskSpec


@dataclass(frozen=True)
class Extensions:
    """The registries of one session."""

    families: dict[str, Family]
    tasks: dict[str, TaskSpec]
    meters: tuple[str, ...] = ()
    """Names this session added to the energy meter table (removed again at unconfigure)."""
    metrics: tuple[str, ...] = ()
    """Names registered through ``metrics.register_metric``."""


def _by_name(groups: Iterable[Iterable[Any]]) -> dict[str, Any]:
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
    """Call every registration hook and register meters and metrics."""
    hook = config.hook
    meters = _merged(hook.pytest_longeff_meters())
    if meters:
        from pytest_longeff.energy import register_meter

        for name, builder in meters.items():
            # replace=True: in-process pytester runs configure again in the same interpreter.
            register_meter(name, builder, replace=True)
    return Extensions(_by_name(hook.pytest_longeff_families()), _by_name(hook.pytest_longeff_tasks()),
                      tuple(meters), _register_metrics(config, _merged(hook.pytest_longeff_metrics())))


def _register_metrics(config: pytest.Config, metrics: Mapping[str, Any]) -> tuple[str, ...]:
    if not metrics:
        return ()
    from pytest_longeff.tasks import metrics as metrics_mod

    for name, fn in metrics.items():
        try:
            metrics_mod.register_metric(name, fn)
        except ValueError as exc:
            raise pytest.UsageError(f"pytest_longeff_metrics: {exc}") from None
    return tuple(metrics)


def release(extensions: Extensions) -> None:
    """Remove what :func:`gather` registered in module-level tables."""
    if extensions.meters:
        from pytest_longeff.energy import unregister_meter

        for name in extensions.meters:
            unregister_meter(name)
    if extensions.metrics:
        from pytest_longeff.tasks.metrics import unregister_metric

        for name in extensions.metrics:
            unregister_metric(name)

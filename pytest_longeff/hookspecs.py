"""Hooks through which families, tasks, energy meters and task metrics are registered; the built-in families and
tasks use them too.

Implement them in a ``conftest.py`` or a plugin to widen the matrix, e.g. a LongT5 family::

    def pytest_longeff_families():
        return [LongT5Family()]   # an object satisfying pytest_longeff.models.families.Family

Every implementation is called (none is ``firstresult``); a later registration of a name replaces an earlier one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_longeff.energy import MeterBuilder
    from pytest_longeff.models.families import Family
    from pytest_longeff.tasks.specs import TaskSpec

hookspec = pytest.hookspec


@hookspec
def pytest_longeff_families() -> list[Family]:  # type: ignore[empty-body]
    """Return model families to make available (selected with ``--longeff-families``)."""


@hookspec
def pytest_longeff_tasks() -> list[TaskSpec]:  # type: ignore[empty-body]
    """Return SCROLLS-format tasks to make available (selected with ``--longeff-tasks``)."""


@hookspec
def pytest_longeff_meters() -> Mapping[str, MeterBuilder]:  # type: ignore[empty-body]
    """Return energy meters to make available, by name: ``{"my-meter": builder}``, where ``builder`` takes a
    :class:`pytest_longeff.energy.MeterRequest` and returns ``(meter, warnings)`` or raises
    :class:`pytest_longeff.energy.MeterUnavailable` (see :func:`pytest_longeff.energy.register_meter`). Registered
    in ``pytest_configure`` before the settings are resolved; select one with ``--longeff-energy my-meter``."""


@hookspec
def pytest_longeff_metrics() -> Mapping[str, Callable[..., Any]]:  # type: ignore[empty-body]
    """Return task metrics by name, for a :class:`pytest_longeff.tasks.specs.TaskSpec`'s ``metric`` to refer to.

    Registered through ``pytest_longeff.tasks.metrics.register_metric`` when that exists; in this version the metric
    table is fixed, and a returned metric is reported as a :class:`pytest_longeff.errors.LongeffWarning`."""

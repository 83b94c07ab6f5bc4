"""Hooks through which families and tasks are registered; the built-ins use them too.

Implement them in a ``conftest.py`` or a plugin to widen the matrix, e.g. a LongT5 family::

    def pytest_longeff_families():
        return [LongT5Family()]   # an object satisfying pytest_longeff.models.Family
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_longeff.models import Family
    from pytest_longeff.tasks import TaskSpec

hookspec = pytest.hookspec


@hookspec
def pytest_longeff_families() -> list[Family]:  # type: ignore[empty-body]
    """Return model families to make available (selected with ``--longeff-families``). Every implementation is
    called; a later registration of a name replaces an earlier one."""


@hookspec
def pytest_longeff_tasks() -> list[TaskSpec]:  # type: ignore[empty-body]
    """Return SCROLLS-format tasks to make available (selected with ``--longeff-tasks``)."""

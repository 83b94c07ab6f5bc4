"""JUnit XML properties of a record, fit for CI parsers.

Properties come from the table of reported figures (:data:`pytest_longeff.record.figures.FIGURES`, plus the
figures of measured windows): one ``longeff_<figure name>`` property per *measured* figure, with a number as its
value (the same number the CSV, the terminal and the gate show under that name), and each window's energy method as
a string. An unmeasured figure is left out, never written as ``None``.

Where they go depends on pytest's ``junit_family`` (default ``xunit2``):

* ``xunit1`` / ``legacy``: as ``<properties>`` of each ``<testcase>`` (the schema allows it there);
* ``xunit2``: the xunit2 schema has no ``<properties>`` inside ``<testcase>`` (pytest warns about
  ``record_property`` for that reason), so the figures go to the suite's ``<properties>`` instead, named
  ``longeff_<figure>[<record id>]``, as ``record_testsuite_property`` would write them. The controller adds them as
  records arrive, so they are there under xdist too (where ``record_testsuite_property`` does not work).

The JSON report always holds every figure, measured or not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_longeff.record.figures import FIGURES, window_figures

PER_TESTCASE_FAMILIES = ("xunit1", "legacy")
ENERGY_SECTIONS = ("train", "inference")


def properties(record: Mapping[str, Any]) -> list[tuple[str, float | int | str]]:
    """``(longeff_<figure>, value)`` for every measured figure of ``record`` and each window's energy method."""
    out: list[tuple[str, float | int | str]] = []
    for fig in (*FIGURES, *window_figures(record)):
        value = fig.value(record)
        if value is not None:
            out.append((f"longeff_{fig.name}", int(value) if value.is_integer() and fig.unit in ("B", "samples",
                                                                                                  "FLOP") else value))
    for part in ENERGY_SECTIONS:
        method = (record.get(part) or {}).get("energy_method")
        if isinstance(method, str):
            out.append((f"longeff_{part}_energy_method", method))
    for name, section in (record.get("windows") or {}).items():
        if isinstance(section, Mapping) and isinstance(section.get("energy_method"), str):
            out.append((f"longeff_window_{name}_energy_method", section["energy_method"]))
    return out


def junit_family(config: pytest.Config) -> str | None:
    """Pytest's ``junit_family`` ini value, or None when the junitxml plugin is not loaded."""
    try:
        family = config.getini("junit_family")
    except ValueError:
        return None
    return str(family) if family else "xunit2"


def per_testcase(config: pytest.Config) -> bool:
    """Whether properties go inside each ``<testcase>`` (xunit1/legacy only)."""
    return junit_family(config) in PER_TESTCASE_FAMILIES


def suite_property_sink(config: pytest.Config) -> Callable[[str, object], None] | None:
    """The JUnit writer's ``add_global_property`` (what ``record_testsuite_property`` calls), when ``--junitxml``
    is on; found among the registered plugins by that public method, so no private pytest type is imported."""
    for plugin in config.pluginmanager.get_plugins():
        add = getattr(plugin, "add_global_property", None)
        if callable(add) and hasattr(plugin, "logfile"):
            return add  # type: ignore[no-any-return]
    return None


def add_suite_properties(config: pytest.Config, record: Mapping[str, Any]) -> None:
    """Under xunit2, the record's properties as suite-level properties ``longeff_<figure>[<id>]``."""
    if per_testcase(config):
        return
    sink = suite_property_sink(config)
    if sink is None:
        return
    for name, value in properties(record):
        sink(f"{name}[{record.get('id')}]", value)

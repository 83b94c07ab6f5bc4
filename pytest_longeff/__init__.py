"""pytest-longeff: accuracy vs. efficiency of long-context NLP models, as a pytest plugin.

The public API is what a user writes or types: what a benchmark body calls, what a hook implementation returns, what
a reader of reports uses, the errors, and the version. Names are loaded on first use, so ``import pytest_longeff``
(which pytest does in every run of the environment) imports neither torch nor the gate. Everything else stays
importable from its module, without a promise.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_longeff._version import __version__

if TYPE_CHECKING:
    from pytest_longeff.config.settings import Settings
    from pytest_longeff.energy import EnergyReading, Meter, MeterRequest, MeterUnavailable
    from pytest_longeff.errors import CellSkip, LongeffError, LongeffWarning
    from pytest_longeff.matrix import Cell
    from pytest_longeff.measure.recorder import WindowRecorder, WindowSummary
    from pytest_longeff.models.families import Family
    from pytest_longeff.record.checks import check_record
    from pytest_longeff.record.figures import FIGURES, Figure
    from pytest_longeff.record.io import load_report
    from pytest_longeff.tasks.specs import TaskSpec

#: public name -> the module defining it
_EXPORTS: dict[str, str] = {
    # a benchmark body
    "check_record": "record.checks",
    "Cell": "matrix",
    "Settings": "config.settings",
    "WindowRecorder": "measure.recorder",
    "WindowSummary": "measure.recorder",
    # a hook implementation
    "Family": "models.families",
    "TaskSpec": "tasks.specs",
    "Meter": "energy",
    "MeterRequest": "energy",
    "MeterUnavailable": "energy",
    "EnergyReading": "energy",
    # a reader of reports
    "load_report": "record.io",
    "FIGURES": "record.figures",
    "Figure": "record.figures",
    # errors
    "LongeffError": "errors",
    "LongeffWarning": "errors",
    "CellSkip": "errors",
}

__all__ = [
    "FIGURES",
    "Cell",
    "CellSkip",
    "EnergyReading",
    "Family",
    "Figure",
    "LongeffError",
    "LongeffWarning",
    "Meter",
    "MeterRequest",
    "MeterUnavailable",
    "Settings",
    "TaskSpec",
    "WindowRecorder",
    "WindowSummary",
    "__version__",
    "check_record",
    "load_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_longeff' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_longeff.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

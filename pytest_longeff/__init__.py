"""pytest-longeff: accuracy vs. efficiency of long-context NLP models, as a pytest plugin.

The public API is importable from here; names are loaded on first use, so ``import pytest_longeff`` (which pytest
does in every run of the environment) imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pytest_longeff.energy import EnergyReading, IdleBaseline, Meter, MeterRequest, register_meter
    from pytest_longeff.errors import (
        CellSkip,
        CellUnavailable,
        DataError,
        LongeffError,
        LongeffWarning,
        NoCheckpoint,
    )
    from pytest_longeff.gate import Check, Gate, Rule, check, parse_fail_on
    from pytest_longeff.matrix import Cell, build_matrix
    from pytest_longeff.measure import WindowResult, window
    from pytest_longeff.models import Family
    from pytest_longeff.record import FIGURES, CellRecord, Figure
    from pytest_longeff.report import load_report
    from pytest_longeff.session import LongeffSession
    from pytest_longeff.settings import Settings
    from pytest_longeff.tasks import TaskSpec
    from pytest_longeff.windows import WindowRecorder, WindowSummary

#: public name -> the module defining it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("EnergyReading", "IdleBaseline", "Meter", "MeterRequest", "register_meter"), "energy"),
    **dict.fromkeys(("CellSkip", "CellUnavailable", "DataError", "LongeffError", "LongeffWarning", "NoCheckpoint"),
                    "errors"),
    **dict.fromkeys(("Check", "Gate", "Rule", "check", "parse_fail_on"), "gate"),
    **dict.fromkeys(("Cell", "build_matrix"), "matrix"),
    **dict.fromkeys(("WindowResult", "window"), "measure"),
    "Family": "models",
    **dict.fromkeys(("FIGURES", "CellRecord", "Figure"), "record"),
    "load_report": "report",
    "LongeffSession": "session",
    "Settings": "settings",
    "TaskSpec": "tasks",
    **dict.fromkeys(("WindowRecorder", "WindowSummary"), "windows"),
}

__all__ = [
    "FIGURES",
    "Cell",
    "CellRecord",
    "CellSkip",
    "CellUnavailable",
    "Check",
    "DataError",
    "EnergyReading",
    "Family",
    "Figure",
    "Gate",
    "IdleBaseline",
    "LongeffError",
    "LongeffSession",
    "LongeffWarning",
    "Meter",
    "MeterRequest",
    "NoCheckpoint",
    "Rule",
    "Settings",
    "TaskSpec",
    "WindowRecorder",
    "WindowResult",
    "WindowSummary",
    "__version__",
    "build_matrix",
    "check",
    "load_report",
    "parse_fail_on",
    "register_meter",
    "window",
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

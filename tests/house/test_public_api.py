"""The public API: what a user writes or types, pinned so that widening it is a visible decision; every exported
name resolves; importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest_longeff

#: What a benchmark body, a hook implementation and a reader of reports need, the errors, and the version.
PINNED = ["FIGURES", "Cell", "CellSkip", "EnergyReading", "Family", "Figure", "LongeffError", "LongeffWarning",
          "Meter", "MeterRequest", "MeterUnavailable", "Settings", "TaskSpec", "WindowRecorder", "WindowSummary",
          "__version__", "check_record", "load_report"]


def test_the_public_api_is_the_pinned_list() -> None:
    assert sorted(pytest_longeff.__all__) == sorted(PINNED)


def test_every_exported_name_resolves() -> None:
    assert [name for name in pytest_longeff.__all__ if getattr(pytest_longeff, name, None) is None] == []


def test_the_benchmark_file_imports_from_the_top_level() -> None:
    from pytest_longeff import check_record
    from pytest_longeff.record.checks import check_record as defined

    assert check_record is defined


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, pytest_longeff; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

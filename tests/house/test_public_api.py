"""The public API: what a user writes or types, pinned so that widening it is a visible decision; every exported
name resolves; importing the package stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

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

    # by name, not identity: an in-process pytester run may have imported the defining module afresh
    assert (check_record.__module__, check_record.__qualname__) == ("pytest_longeff.record.checks", "check_record")


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, pytest_longeff; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


FACADES = sorted(p.parent.name for p in Path(pytest_longeff.__file__).parent.glob("*/__init__.py"))


@pytest.mark.parametrize("package", FACADES)
def test_every_package_has_a_facade_whose_names_resolve(package: str) -> None:
    """A concern's ``__init__`` names its interface (``__all__``); each name is defined in the package and never
    shadows one of its modules."""
    module = importlib.import_module(f"pytest_longeff.{package}")
    assert module.__doc__ and module.__all__
    folder = Path(module.__file__).parent
    for name in module.__all__:
        value = getattr(module, name)
        assert getattr(value, "__module__", f"pytest_longeff.{package}").startswith(f"pytest_longeff.{package}") \
            or not callable(value), name
        assert not (folder / f"{name}.py").exists() and not (folder / name).is_dir(), name

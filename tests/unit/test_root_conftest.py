"""The project's root conftest under a pytest from another environment: one line saying which interpreter ran and
what to run instead, not an import error from the benchmark file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _root_conftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("longeff_root_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Options:
    """Only what the hook reads of a pytest config."""

    def __init__(self, help_asked: bool) -> None:
        self.help_asked = help_asked
        self.warnings: list[Warning] = []

    def getoption(self, name: str, default: object = None) -> object:
        return self.help_asked if name == "help" else default

    def issue_config_time_warning(self, warning: Warning, stacklevel: int) -> None:
        self.warnings.append(warning)


def _without_the_plugin(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytest_longeff" else real(name, *a))


def test_installed_it_says_nothing() -> None:
    _root_conftest().pytest_configure(_Options(help_asked=False))


def test_not_installed_is_a_usage_error_naming_the_interpreter_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _root_conftest()
    _without_the_plugin(monkeypatch, module)
    with pytest.raises(pytest.UsageError) as info:
        module.pytest_configure(_Options(help_asked=False))
    assert sys.executable in str(info.value)
    assert "./scripts/setup.sh" in str(info.value) and ".venv/bin/pytest" in str(info.value)


def test_not_installed_still_shows_help_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """--help still works, and says why its --longeff-* options are missing in a config-time warning, which pytest
    prints on stdout at the end of the help (a note on stderr was lost to a pipe)."""
    module = _root_conftest()
    _without_the_plugin(monkeypatch, module)
    options = _Options(help_asked=True)
    module.pytest_configure(options)
    [warning] = options.warnings
    assert isinstance(warning, pytest.PytestConfigWarning)
    assert "--longeff-* options are not listed" in str(warning) and ".venv/bin/pytest" in str(warning)

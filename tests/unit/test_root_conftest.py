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

    def getoption(self, name: str, default: object = None) -> object:
        return self.help_asked if name == "help" else default


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


def test_not_installed_help_says_why_on_its_first_line() -> None:
    """A real pytest whose Python lacks the plugin (its module blocked, entry points not loaded) still prints its
    help, and the first line of it, on stdout before pytest's usage, says why the --longeff-* options are missing
    and what to run instead."""
    import os
    import subprocess

    code = "import sys; sys.modules['pytest_longeff'] = None; import pytest; raise SystemExit(pytest.main(['--help']))"
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    first, _, rest = out.stdout.partition("\n")
    assert first.startswith("pytest-longeff is not installed in the Python running this pytest")
    assert "--longeff-* options are not listed below" in first and ".venv/bin/pytest" in first
    assert rest.lstrip().startswith("usage: ")
    assert "--longeff-profile" not in out.stdout

"""The public API: every exported name resolves, and importing the package or the plugin stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest_longeff


def test_every_exported_name_resolves() -> None:
    assert [name for name in pytest_longeff.__all__ if getattr(pytest_longeff, name, None) is None] == []


def test_importing_the_package_and_plugin_does_not_import_torch() -> None:
    """Guards against slowing every pytest run of the environment: the plugin loads in unrelated suites too."""
    code = ("import sys, pytest_longeff, pytest_longeff.plugin; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

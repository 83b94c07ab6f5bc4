"""Root conftest: marks the project root for pytest, and lifts the test suite's per-test timeout from benchmark cells.

The pytest-longeff plugin itself is loaded through its ``pytest11`` entry point (``pip install -e .``), so every
test suite of the environment gets it without listing it here (listing it too would register it twice).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

NOT_INSTALLED = ("pytest-longeff is not installed in the Python running this pytest ({python}): run "
                 "./scripts/setup.sh once, then .venv/bin/pytest (or activate .venv first)")


def _missing_plugin() -> str | None:
    """What to say when the Python running this pytest lacks the plugin; None when it has it."""
    if importlib.util.find_spec("pytest_longeff") is not None:
        return None
    return NOT_INSTALLED.format(python=sys.executable)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``--help`` still works without the plugin, and its first line (on stdout, before pytest's ``usage:``, where
    ``| head`` and a pipe find it) says why the --longeff-* options are missing."""
    message = _missing_plugin() if config.option.help else None
    if message is not None:
        sys.stdout.write(f"{message}; its --longeff-* options are not listed below\n\n")
        sys.stdout.flush()


def pytest_configure(config: pytest.Config) -> None:
    """A pytest from another environment (a system pytest, say) finds neither the plugin nor its options: say
    which interpreter ran and what to run instead, rather than failing to import the benchmark file."""
    message = _missing_plugin()
    if message is not None and not config.getoption("help", False):
        raise pytest.UsageError(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The test suite's per-test timeout (pytest-timeout, ``timeout`` in pyproject.toml) fails a hung test; a
    benchmark cell may rightly run for hours (the paper profile on a GPU, 32k-token cells on a CPU), so the cells
    under ``benchmarks/`` run without it."""
    if not config.pluginmanager.hasplugin("timeout"):
        return
    benchmarks = Path(config.rootpath) / "benchmarks"
    for item in items:
        if Path(item.path).is_relative_to(benchmarks):
            item.add_marker(pytest.mark.timeout(0))

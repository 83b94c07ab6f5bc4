"""Progress lines: throttled, rewritten in place on a TTY, plain lines elsewhere, silent under -q."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_longeff.cell.progress import Progress


def _config(pytester: pytest.Pytester, *args: str, isatty: bool) -> Any:
    config = pytester.parseconfigure(*args)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    assert reporter is not None
    reporter.isatty = isatty
    return config


@pytest.mark.parametrize(("args", "isatty", "wanted"), [
    ((), True, "tty"), (("-q",), True, None), ((), False, None), (("-v",), False, "lines"), (("-qq",), False, None),
])
def test_progress_follows_verbosity_and_tty(pytester: pytest.Pytester, args: tuple[str, ...], isatty: bool,
                                            wanted: str | None) -> None:
    progress = Progress.for_config(_config(pytester, *args, isatty=isatty))
    assert (None if progress is None else "tty" if progress.tty else "lines") == wanted

"""A test's record from what its fixtures measured and how it ended: per-item state under ``item.stash``."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_longeff.measure.recorder import WindowRecorder, window_record
from pytest_longeff.record.sections import CellRecord

CELL_RECORD_KEY = pytest.StashKey[CellRecord]()
WINDOWS_KEY = pytest.StashKey[WindowRecorder]()
GATE_SECTION_KEY = pytest.StashKey[dict[str, Any]]()


def current_record(item: pytest.Item) -> dict[str, Any] | None:
    """The item's record in dict form: its cell's (with its windows, if it measured any), a window record, or
    None for a test that measured nothing."""
    cell = item.stash.get(CELL_RECORD_KEY, None)
    windows = item.stash.get(WINDOWS_KEY, None)
    measured = windows.to_dict() if windows is not None and windows.names else None
    if cell is not None:
        return {**cell.to_dict(), **({"windows": measured} if measured else {})}
    if windows is None or measured is None:
        return None
    return window_record(item.nodeid, windows.device, measured)


def is_final(report: pytest.TestReport) -> bool:
    """Whether this phase's report decides the test's outcome (the call, or a setup that did not pass)."""
    return report.when == "call" or (report.when == "setup" and not report.passed)


def final_record(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> dict[str, Any] | None:
    """The record with the test's status and reason, and its gate section if the gate judged it."""
    record = current_record(item)
    if record is None:
        return None
    if report.passed:
        record["status"], record["reason"] = "passed", None
    elif report.skipped:
        longrepr = report.longrepr
        record["status"], record["reason"] = "skipped", longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    else:
        record["status"] = "error" if report.when == "setup" else "failed"
        record["reason"] = call.excinfo.exconly() if call.excinfo is not None else str(report.longrepr)
    if GATE_SECTION_KEY in item.stash:
        record["gate"] = item.stash[GATE_SECTION_KEY]
    return record

"""A test's record from what its fixtures measured and how it ended: per-item state under ``item.stash``.

The cell's record stays typed (:class:`pytest_longeff.record.sections.CellRecord`) from the fixture until the test's
final report: :func:`final_record` sets its outcome and gate section and serialises it, once.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_longeff.measure.recorder import WindowRecorder, window_record
from pytest_longeff.record.sections import CellRecord

CELL_RECORD_KEY = pytest.StashKey[CellRecord]()
WINDOWS_KEY = pytest.StashKey[WindowRecorder]()
#: The gate section of the item's one judgement (the cell's in its fixture, a window record's after the body).
GATE_SECTION_KEY = pytest.StashKey[dict[str, Any]]()


def measured_windows(item: pytest.Item) -> dict[str, Any] | None:
    """The windows the test measured with ``longeff_window`` in dict form, or None when it measured none."""
    windows = item.stash.get(WINDOWS_KEY, None)
    return windows.to_dict() if windows is not None and windows.names else None


def current_record(item: pytest.Item) -> dict[str, Any] | None:
    """The item's record in dict form as it stands now: its cell's (with its windows, if it measured any), a
    window record, or None for a test that measured nothing."""
    cell = item.stash.get(CELL_RECORD_KEY, None)
    measured = measured_windows(item)
    if cell is not None:
        return {**cell.to_dict(), **({"windows": measured} if measured else {})}
    windows = item.stash.get(WINDOWS_KEY, None)
    if windows is None or measured is None:
        return None
    return window_record(item.nodeid, windows.device, measured)


def is_final(report: pytest.TestReport) -> bool:
    """Whether this phase's report decides the test's outcome (the call, or a setup that did not pass)."""
    return report.when == "call" or (report.when == "setup" and not report.passed)


def outcome(report: pytest.TestReport, call: pytest.CallInfo[None]) -> tuple[str, str | None]:
    """The test's status (``passed``, ``skipped``, ``failed`` or, for a setup, ``error``) and why."""
    if report.passed:
        return "passed", None
    if report.skipped:
        longrepr = report.longrepr
        return "skipped", longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    status = "error" if report.when == "setup" else "failed"
    return status, call.excinfo.exconly() if call.excinfo is not None else str(report.longrepr)


def final_record(item: pytest.Item, report: pytest.TestReport,
                 call: pytest.CallInfo[None]) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """The finished record and, beside it, the cell's predictions (None for a window record or a cell that made
    none). A cell's typed record gets its status, reason and gate section (:meth:`CellRecord.finish`) and is
    serialised here, once; None for a test that measured nothing."""
    status, reason = outcome(report, call)
    gate = item.stash.get(GATE_SECTION_KEY, None)
    cell = item.stash.get(CELL_RECORD_KEY, None)
    if cell is not None:
        cell.finish(status, reason, gate)
        record = cell.to_dict()
        if (measured := measured_windows(item)) is not None:
            record["windows"] = measured
        return record, cell.predictions
    windows = current_record(item)
    if windows is None:
        return None, None
    windows["status"], windows["reason"] = status, reason
    if gate is not None:
        windows["gate"] = gate
    return windows, None

"""The run-level gate inside pytest: a plugin object the controller registers when a baseline is given.

It collects the records the controller sees (also from xdist workers), judges them once the test loop ended
(:meth:`pytest_longeff.gate.check.Gate.judge_run`: FDR over all (cell, metric) pairs, the suite rule per metric), keeps the
verdict under :data:`RUN_VERDICT_KEY` for the report's ``session.gate``, says it in the terminal summary and fails the
session through ``session.testsfailed`` from a ``pytest_runtestloop`` wrapper, as pytest-cov does.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import pytest

from pytest_longeff.gate.check import Gate
from pytest_longeff.gate.suite import RunVerdict, terminal_lines

#: The run-level verdict, for the controller's report (``session.gate``) and CI outputs.
RUN_VERDICT_KEY = pytest.StashKey[RunVerdict]()


class GateRun:
    """The run-level gate as a plugin object: collects the records the controller sees, judges them once the test
    loop ended (also under xdist) and fails the session through ``session.testsfailed`` (as pytest-cov does)."""

    NAME = "longeff-gate-run"

    def __init__(self, gate: Gate, config: pytest.Config) -> None:
        self.gate = gate
        self.config = config
        self.records: dict[str, Mapping[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the record each test report carries, keyed by cell id."""
        record = getattr(report, "longeff_record", None)  # reporting.RECORD_ATTR, without importing the roles
        if isinstance(record, Mapping):
            self.records[str(record.get("id"))] = record

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """Judge the collected records after the loop (not on xdist workers); a failing verdict fails the session."""
        result = yield
        if self.records and not hasattr(self.config, "workerinput"):
            verdict = self.config.stash[RUN_VERDICT_KEY] = self.gate.judge_run(list(self.records.values()))
            if verdict.fails():
                session.testsfailed += 1
        return result

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Write the run-level gate verdict to the terminal summary, its first line red when it fails."""
        verdict = self.config.stash.get(RUN_VERDICT_KEY, None)
        if verdict is None:
            return
        for n, line in enumerate(terminal_lines(verdict)):
            terminalreporter.write_line(line, red=n == 0 and verdict.fails())

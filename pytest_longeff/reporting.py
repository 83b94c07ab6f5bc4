"""Reporting roles, chosen once per process in ``pytest_configure`` (as pytest-cov chooses its engine).

* :class:`Controller` (a serial run, or the xdist controller): owns every file. It writes the JSON report after each
  record, CSV and Markdown at the end, adds JUnit suite properties, aggregates the session counters of every
  worker, and prints the accuracy-efficiency matrix.
* :class:`Worker` (an xdist worker): writes nothing; ships its session facts and counters to the controller
  through ``config.workeroutput``, the only channel xdist offers. Records travel on the test reports.

This module is the one place that knows about pytest-xdist: the roles, ``workerinput`` / ``workeroutput``,
``pytest_testnodedown`` and the ``xdist_group`` markers that keep a model's cells on one worker. Both roles are
silent in a suite without benchmark records: no "longeff:" lines, no report files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_longeff.matrix import Cell

if TYPE_CHECKING:
    from pytest_longeff.report import JsonReport
    from pytest_longeff.settings import Settings

WORKEROUTPUT_KEY = "longeff_session"
RECORD_ATTR = "longeff_record"  # the attribute a test report carries its record on (also across xdist)


class SessionLike(Protocol):
    """What the roles read from a :class:`pytest_longeff.session.LongeffSession`."""

    warnings: list[str]

    def facts(self) -> dict[str, Any]: ...

    def describe(self) -> list[str]: ...

    def stats_dict(self) -> dict[str, float]: ...


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker."""
    return hasattr(config, "workerinput")


def parallel(config: pytest.Config) -> bool:
    """Whether this process is an xdist controller with workers."""
    return bool(config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None))


def cell_of(item: pytest.Item) -> Cell | None:
    """The matrix cell an item runs, if any."""
    callspec = getattr(item, "callspec", None)
    cell = callspec.params.get("longeff_cell") if callspec is not None else None
    return cell if isinstance(cell, Cell) else None


def record_of(report: pytest.TestReport) -> dict[str, Any] | None:
    """The record a test report carries, if any."""
    record = getattr(report, RECORD_ATTR, None)
    return record if isinstance(record, dict) else None


class Role:
    """What both roles do: mark cells for ``--dist loadgroup``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings

    @pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the markers into node ids
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not config.pluginmanager.hasplugin("xdist"):
            return
        for item in items:
            cell = cell_of(item)
            if cell is not None:
                # With `-n N --dist loadgroup`, xdist keeps the cells of one model on one worker (one build each).
                item.add_marker(pytest.mark.xdist_group(f"{cell.family}_{cell.size}"))

    def session_started(self, session: SessionLike) -> None:
        """A :class:`LongeffSession` opened in this process."""

    def session_finished(self, session: SessionLike) -> None:
        """This process's session is closing: its counters are final."""


class Worker(Role):
    """An xdist worker: ships its session's facts and counters to the controller."""

    def session_finished(self, session: SessionLike) -> None:
        workeroutput: dict[str, Any] = getattr(self.config, "workeroutput")  # noqa: B009 (xdist's public channel)
        workeroutput[WORKEROUTPUT_KEY] = json.dumps({"stats": session.stats_dict(), "facts": session.facts(),
                                                     "lines": session.describe(), "warnings": session.warnings})


class Controller(Role):
    """The process that owns the reports (serial run or xdist controller)."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        super().__init__(config, settings)
        from pytest_longeff.machine import light_facts

        self.started = time.perf_counter()
        self.report: JsonReport | None = None
        self.facts: dict[str, Any] = light_facts(settings.device)
        self.have_facts = False
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self.totals: dict[str, float] = {}
        self.sessions = 0

    # -- session facts and counters (own session, or a worker's) ----------------------------------------------------
    def session_started(self, session: SessionLike) -> None:
        self._facts(session.facts(), session.describe(), session.warnings)

    def session_finished(self, session: SessionLike) -> None:
        self._stats(session.stats_dict())

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        raw = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if raw:
            info = json.loads(raw)
            self._facts(info["facts"], info["lines"], info["warnings"])
            self._stats(info["stats"])

    def _facts(self, facts: dict[str, Any], lines: list[str], warnings: list[str]) -> None:
        if self.have_facts:
            return  # the first worker's facts stand for all (workers share the machine)
        self.have_facts = True
        self.facts, self.lines, self.warnings = facts, list(lines), list(warnings)
        report = self._json()
        report.header["machine"] = facts
        report.header["software"].update({k: facts.get(k) for k in ("torch", "transformers", "python")})

    def _stats(self, stats: Mapping[str, float]) -> None:
        for key, value in stats.items():
            self.totals[key] = self.totals.get(key, 0) + value
        self.sessions += 1
        report = self._json()
        report.session.update(self.totals)
        report.session["wall_s"] = time.perf_counter() - self.started
        report.session["workers"] = self.sessions
        if "measured_s" in self.totals and "session_wall_s" in self.totals:
            # Summed over workers (one in a serial run): session time minus time inside measured windows.
            report.session["outside_windows_s"] = self.totals["session_wall_s"] - self.totals["measured_s"]
        if report.records:
            report.write()

    def _json(self) -> JsonReport:
        if self.report is None:
            from pytest_longeff import __version__
            from pytest_longeff.report import JsonReport

            path = Path(self.settings.json_path)
            if not path.is_absolute():
                path = self.config.invocation_params.dir / path
            header = {"machine": self.facts, "software": {"pytest_longeff": __version__, "pytest": pytest.__version__},
                      "settings": self.settings.to_dict()}
            self.report = JsonReport(path, header)
        return self.report

    # -- records ----------------------------------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = record_of(report)
        if record is None:
            return
        from pytest_longeff.junit import add_suite_properties

        written = self._json().add(record)
        add_suite_properties(self.config, written)

    def pytest_sessionfinish(self) -> None:
        if self.report is None or not self.report.records:
            return
        from pytest_longeff.findings import findings
        from pytest_longeff.report import atomic_write_text, is_cell, render_csv, render_markdown

        cells = [r for r in self.report.records if is_cell(r)]
        self.report.session["findings"] = [f.to_dict() for f in findings(cells)]
        self.report.write()
        if cells:
            atomic_write_text(self.report.path.with_suffix(".csv"), render_csv(cells))
            atomic_write_text(self.report.path.with_suffix(".md"),
                              render_markdown(cells, self.report.header["settings"]))

    # -- terminal ---------------------------------------------------------------------------------------------------
    def pytest_report_collectionfinish(self, config: pytest.Config, items: list[pytest.Item]) -> list[str]:
        # Said only when benchmark cells were collected: unrelated suites in the same environment stay quiet.
        cells = sum(cell_of(i) is not None for i in items)
        return settings_lines(self.settings, f"{cells} cell{'s' if cells != 1 else ''} collected") if cells else []

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.report is None or not self.report.records:
            return
        from pytest_longeff.report import is_cell

        tr = terminalreporter
        records = self.report.records
        cells, windows = [r for r in records if is_cell(r)], [r for r in records if not is_cell(r)]
        if parallel(self.config):
            # The xdist controller collects nothing itself, so the settings are said here.
            for line in settings_lines(self.settings, "cells run by the workers"):
                tr.write_line(line)
        if cells:
            tr.section("longeff: accuracy-efficiency matrix")
            for line in matrix_lines(cells, self.report.header["settings"]):
                tr.write_line(line)
        if windows:
            from pytest_longeff.report import render_windows

            tr.section("longeff: measured windows")
            tr.write_line(render_windows(windows))
        for line in self.lines:
            tr.write_line(f"  {line}")
        for warning in self.warnings:
            tr.write_line(f"  warning: {warning}", yellow=True)
        for line in gate_lines(records, self.settings):
            tr.write_line(line)
        tr.write_line(f"  reports: {self.report.path}" + (" (also .csv and .md beside it)" if cells else ""))


def settings_lines(s: Settings, what: str) -> list[str]:
    """The run's matrix and budgets, for the terminal."""
    return [
        (f"longeff: profile {s.profile}, {what} from {'/'.join(s.families)} x "
         f"{'/'.join(s.sizes)} x {'/'.join(map(str, s.lengths))} x {'/'.join(s.tasks)}"),
        (f"longeff: training budget {s.train_budget.spec}, memory budget {s.memory_budget_bytes / 2**30:.2f} GiB "
         f"({s.memory_budget_source}), energy {s.energy}, report {s.json_path}"),
    ]


def matrix_lines(cells: list[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """The matrix, how each figure was obtained, and what the cells say about the seed study's findings."""
    from pytest_longeff.findings import findings
    from pytest_longeff.report import method_notes, render_matrix

    lines = [render_matrix(cells), *(f"  {note}" for note in method_notes(cells, settings))]
    decided = [f for f in findings(cells) if f.verdict != "cannot tell"]
    if not decided:
        return [*lines, "  the seed study's findings: these cells cannot tell (details in the JSON's session)"]
    return [*lines, "  the seed study's findings on this matrix:",
            *(f"    {f.verdict}: {f.claim} ({f.evidence})" for f in decided)]


def gate_lines(records: list[dict[str, Any]], s: Settings) -> list[str]:
    """One line counting the gate's verdicts, when a baseline was given."""
    counts: dict[str, int] = {}
    for gate in (r["gate"] for r in records if r.get("gate")):
        if gate.get("refused"):
            counts["refused"] = counts.get("refused", 0) + 1
        for c in gate.get("checks", []):
            counts[c["status"]] = counts.get(c["status"], 0) + 1
    if not counts:
        return []
    return [f"  gate against {s.baseline} ({s.fail_on}): " +
            ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]


def make_role(config: pytest.Config, settings: Settings) -> Role:
    """The role of this process: a worker under xdist, the controller otherwise."""
    return Worker(config, settings) if is_worker(config) else Controller(config, settings)

"""Reporting roles, chosen once per process in ``pytest_configure`` (as pytest-cov chooses its engine).

* :class:`Controller` (a serial run, or the xdist controller): owns the run and every file. It is the one collector
  of finished records: it writes the JSON report after each record (and the cell's predictions beside it), CSV and
  Markdown at the end, adds JUnit suite properties, aggregates the session counters of every worker, computes the
  seed study's findings once, prints the accuracy-efficiency matrix, and hands every record (carried-over ones
  included) to the run-level gate it owns when a baseline is given (:class:`pytest_longeff.gate.plugin.GateRun`).
* :class:`Worker` (an xdist worker): writes nothing; ships its session facts and counters to the controller
  through ``config.workeroutput``, the only channel xdist offers. Records, and the predictions beside them, travel
  on the test reports.

This module is the one place that knows about pytest-xdist: the roles, ``workerinput`` / ``workeroutput``,
``pytest_testnodedown`` and the ``xdist_group`` markers that keep a model's cells on one worker. Both roles are
silent in a suite without benchmark records: no "longeff:" lines, no report files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_longeff.matrix import Cell
from pytest_longeff.text import for_terminal

if TYPE_CHECKING:
    from pytest_longeff.ci.resume import ResumePlan
    from pytest_longeff.ci.shard import Selection
    from pytest_longeff.config.settings import Settings
    from pytest_longeff.gate.plugin import GateRun
    from pytest_longeff.record.io import JsonReport
    from pytest_longeff.record.lock import ReportLock
    from pytest_longeff.report.findings import Finding

WORKEROUTPUT_KEY = "longeff_session"
CARRIED_INPUT = "longeff_carried"  # workerinput key: [ids carried over by --longeff-resume, skip reason]
RECORD_ATTR = "longeff_record"  # the attribute a test report carries its record on (also across xdist)
PREDICTIONS_ATTR = "longeff_predictions"  # and the cell's predictions, beside the record


class SessionLike(Protocol):
    """What the roles read from a :class:`pytest_longeff.cell.resources.LongeffSession`."""

    warnings: list[str]

    def facts(self) -> dict[str, Any]:
        """Machine and software facts for the report."""

    def describe(self) -> list[str]:
        """Machine facts as lines for the terminal."""

    def stats_dict(self) -> dict[str, float]:
        """The session's counters."""


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


def makes_records(item: pytest.Item) -> bool:
    """Whether a test writes a record: it runs a matrix cell or measures windows of its own."""
    return bool({"longeff_record", "longeff_window"} & set(getattr(item, "fixturenames", ())))


def record_of(report: pytest.TestReport) -> dict[str, Any] | None:
    """The record a test report carries, if any."""
    record = getattr(report, RECORD_ATTR, None)
    return record if isinstance(record, dict) else None


def predictions_of(report: pytest.TestReport) -> dict[str, str] | None:
    """The predictions a test report carries beside its record, if any."""
    predictions = getattr(report, PREDICTIONS_ATTR, None)
    return predictions if isinstance(predictions, dict) else None


def carried_input(config: pytest.Config) -> tuple[frozenset[str], str] | None:
    """On an xdist worker, the ids of the cells ``--longeff-resume`` carries over and their skip reason, as the
    controller sent them (the worker must not read the file the controller rewrites); else None."""
    raw = getattr(config, "workerinput", {}).get(CARRIED_INPUT)
    if not raw:
        return None
    ids, reason = json.loads(raw)
    return frozenset(ids), reason


class Role:
    """What both roles do: mark cells for ``--dist loadgroup``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings

    @pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the markers into node ids
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Group each cell's tests by model for xdist's ``--dist loadgroup`` (only with xdist installed)."""
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

    def close(self) -> None:
        """The run is over (``pytest_unconfigure``): let go of what the role holds."""


class Worker(Role):
    """An xdist worker: ships its session's facts and counters to the controller."""

    def session_finished(self, session: SessionLike) -> None:
        """Hand the session's counters, facts and warnings to the controller through ``workeroutput``."""
        workeroutput: dict[str, Any] = getattr(self.config, "workeroutput")  # noqa: B009 (xdist's public channel)
        workeroutput[WORKEROUTPUT_KEY] = json.dumps({"stats": session.stats_dict(), "facts": session.facts(),
                                                     "lines": session.describe(), "warnings": session.warnings})


class Controller(Role):
    """The process that owns the reports (serial run or xdist controller)."""

    def __init__(self, config: pytest.Config, settings: Settings, selection: Selection | None = None,
                 plan: ResumePlan | None = None, run_gate: GateRun | None = None) -> None:
        super().__init__(config, settings)
        from pytest_longeff.measure.machine import light_facts

        self.started = time.perf_counter()
        self.report: JsonReport | None = None
        self.facts: dict[str, Any] = light_facts(settings.device)
        self.have_facts = False
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self.totals: dict[str, float] = {}
        self.sessions = 0
        self.selection, self.plan = selection, plan
        self.written: list[str] = []  # files besides the JSON, CSV and Markdown (plots, HTML, CI outputs)
        self.run_gate = run_gate
        self.findings: list[Finding] | None = None
        self.lock: ReportLock | None = None
        self.claimed = self.refused = False  # refused: another run holds the report; this one writes nothing
        self.unwritten: list[str] = []  # one line for each output the end of the run could not write
        self.tables_written = True
        if plan is not None and plan.records:
            report = self._json()  # read before this run's first write, which may replace the resumed file
            report.carry([dict(r) for r in plan.records])
            report.session["resumed_from"] = plan.summary()
            for record in plan.records:  # never run, but the run-level gate judges the whole matrix
                self._judge_later(record)

    # -- claiming the report: its folders writable, the report locked, before any cell runs ------------------------
    @pytest.hookimpl(tryfirst=True)  # before xdist starts its workers
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Claim the report when the xdist controller will run tests on workers. It collects nothing itself, so it
        cannot tell whether the run makes records, and claims for every run with workers (a known cost: two
        concurrent ``-n`` runs in one folder are kept apart even without benchmarks)."""
        if parallel(self.config) and not self.config.option.collectonly:
            self._claim()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Claim the report when a collected test makes records (a suite without benchmarks is left alone: no
        lock, no check, so unrelated suites in the same folder never wait for each other)."""
        if not self.config.option.collectonly and any(makes_records(i) for i in session.items):
            self._claim()

    def _claim(self) -> None:
        """Check every output folder writable and take the report's lock; a usage error if either fails."""
        if self.claimed:
            return
        self.claimed = True
        from pytest_longeff.errors import LongeffWarning
        from pytest_longeff.record.lock import LockUnavailable, ReportBusy, ReportLock
        from pytest_longeff.report.outputs import unwritable_outputs

        s = self.settings
        problems = unwritable_outputs(s, self.config.invocation_params.dir)
        try:
            if not problems:
                self.lock = ReportLock.acquire(self._json().path)
        except ReportBusy as busy:
            holder = f"pid {busy.pid or 'unknown'}, started at {busy.started or 'an unknown time'}"
            busy_line = (f"another pytest-longeff run ({holder}) is writing {s.json_path}; wait for it to finish or "
                         "pass another --longeff-json")
            problems = [busy_line]
        except LockUnavailable as exc:
            self.config.issue_config_time_warning(LongeffWarning(
                f"pytest-longeff: {exc}; two runs writing {s.json_path} at once are not kept apart"), stacklevel=2)
        except OSError as exc:
            problems = [(f"--longeff-json {s.json_path}: cannot make its lock file {exc.filename} ({exc.strerror}); "
                         "choose a writable folder with --longeff-json PATH")]
        if problems:
            self.refused = True
            raise pytest.UsageError(*problems)

    def close(self) -> None:
        """Release the report's lock."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _judge_later(self, record: Mapping[str, Any]) -> None:
        if self.run_gate is not None:
            self.run_gate.add(record)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Tell each xdist worker which cells are carried over (it must not read the file this process rewrites)."""
        if self.plan is not None:
            node.workerinput[CARRIED_INPUT] = json.dumps([sorted(self.plan.ids), self.plan.reason])

    # -- session facts and counters (own session, or a worker's) ----------------------------------------------------
    def session_started(self, session: SessionLike) -> None:
        """Take in the controller's own session facts, lines and warnings."""
        self._facts(session.facts(), session.describe(), session.warnings)

    def session_finished(self, session: SessionLike) -> None:
        """Add the controller's own session counters."""
        self._stats(session.stats_dict())

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Take in the facts and counters a finished xdist worker shipped."""
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
            from pytest_longeff.record.io import JsonReport

            path = Path(self.settings.json_path)
            if not path.is_absolute():
                path = self.config.invocation_params.dir / path
            header = {"machine": self.facts, "software": header_software(self.facts),
                      "settings": header_settings(self.settings, self.selection),
                      "shard": self.selection.header() if self.selection is not None else None}
            self.report = JsonReport(path, header)
        return self.report

    # -- records ----------------------------------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Take in the record a test report carries: into the JSON report (its predictions into their own file),
        the JUnit suite properties and the run-level gate."""
        record = record_of(report)
        if record is None:
            return
        from pytest_longeff.report.junit import add_suite_properties

        written = self._json().add(record, predictions_of(report))
        add_suite_properties(self.config, written)
        self._judge_later(record)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """Once the test loop ended, the run-level gate judges every record; a failing verdict fails the session."""
        result = yield
        if self.run_gate is not None:
            self.run_gate.finish(session)
        return result

    def run_findings(self) -> list[Finding]:
        """The seed study's findings on this run's cells, computed once all records are in, for the JSON report
        and the terminal."""
        if self.findings is None:
            from pytest_longeff.record.sections import is_cell
            from pytest_longeff.report.findings import findings

            records = self.report.records if self.report is not None else []
            self.findings = findings([r for r in records if is_cell(r)])
        return self.findings

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the JSON report (with findings, gate verdict, Pareto front), then CSV, Markdown, plots and HTML. An
        output that cannot be written (a full disk, a read-only folder) is one line in the terminal summary and
        fails the run (exit status 1), so CI does not pass without its report."""
        if self.refused or self.report is None or not self.report.records:
            return
        from pytest_longeff.record.sections import is_cell

        cells = [r for r in self.report.records if is_cell(r)]
        self.report.session["findings"] = [f.to_dict() for f in self.run_findings()]
        from pytest_longeff.report.pareto import front

        if self.run_gate is not None and self.run_gate.verdict is not None:
            self.report.session["gate"] = self.run_gate.verdict.to_dict()
        if cells:
            self.report.session["pareto"] = front(self.report.document())
        self.report.session.setdefault("wall_s", time.perf_counter() - self.started)
        self.report.write()  # first: whatever the renderers below do, the JSON is safe
        self._tables(cells)
        from pytest_longeff.report.outputs import render_extras

        cwd, s = self.config.invocation_params.dir, self.settings
        draw = s.plots != "none"
        self.written = render_extras(self.report.document(), self.report.path,
                                     plots_dir=cwd / s.plots if s.plots and draw else None,
                                     html_path=cwd / s.html if s.html else None, settings=s, root=cwd,
                                     draw_plots=draw, failed=self.unwritten)
        if self.write_failures() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _tables(self, cells: list[dict[str, Any]]) -> None:
        """CSV and Markdown beside the JSON report; a file that cannot be written is a line in :attr:`unwritten`."""
        if not cells or self.report is None:
            return
        from pytest_longeff.record.io import atomic_write_text
        from pytest_longeff.report.outputs import not_written
        from pytest_longeff.report.tables import render_csv, render_markdown

        texts = {".csv": render_csv(cells), ".md": render_markdown(cells, self.report.header["settings"])}
        for suffix, text in texts.items():
            path = self.report.path.with_suffix(suffix)
            try:
                atomic_write_text(path, text)
            except OSError as exc:
                self.unwritten.append(not_written(f"{suffix[1:].upper()} report", exc, path))
                self.tables_written = False

    def write_failures(self) -> list[str]:
        """One line for each output of this run that could not be written, the JSON report's first (saying how many
        records the file holds as last written, since its writes are atomic)."""
        report = self.report
        if report is None:
            return []
        lines = []
        if report.write_error is not None:
            n = len(report.records)
            held = (f"the file as last written holds {report.on_disk} of the {n} records" if report.on_disk else
                    f"none of the {n} records reached the file")
            lines.append(f"JSON report not written: {report.path} ({report.write_error.strerror or report.write_error})"
                         f"; {held}; all {n} are shown above")
        if report.predictions_errors:
            first = next(iter(report.predictions_errors.values()))
            lines.append(f"predictions of {len(report.predictions_errors)} cell(s) not written to "
                         f"{report.predictions_dir} ({first.strerror or first}); their records say "
                         "predictions_path: null")
        return lines + self.unwritten

    # -- terminal ---------------------------------------------------------------------------------------------------
    def pytest_report_collectionfinish(self, config: pytest.Config, items: list[pytest.Item]) -> list[str]:
        """Describe the settings (and shard, resume) in the header when benchmark cells were collected."""
        # Said only when benchmark cells were collected: unrelated suites in the same environment stay quiet.
        cells = sum(cell_of(i) is not None for i in items)
        if not cells:
            return []
        lines = settings_lines(self.settings, f"{cells} cell{'s' if cells != 1 else ''} collected")
        if self.selection is not None:
            lines.append(self.selection.line(cells))
        if self.plan is not None:
            lines.append(f"longeff: resume from {self.plan.path}: {self.plan.note}")
        return lines

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Print the cell matrix, windows, session facts, warnings, gate lines and report paths (or what could not be
        written, one line each)."""
        if self.refused or self.report is None or not self.report.records:
            return
        from pytest_longeff.record.sections import is_cell

        tr = terminalreporter
        records = self.report.records
        cells, windows = [r for r in records if is_cell(r)], [r for r in records if not is_cell(r)]
        if parallel(self.config):
            # The xdist controller collects nothing itself, so the settings are said here.
            for line in settings_lines(self.settings, "cells run by the workers"):
                tr.write_line(line)
        if cells:
            tr.section("longeff: accuracy-efficiency matrix")
            for line in matrix_lines(cells, self.report.header["settings"], tr.config.get_terminal_writer().fullwidth,
                                     tr.config.get_verbosity() > 0, found=self.run_findings()):
                tr.write_line(line)
        if windows:
            from pytest_longeff.report.tables import render_windows

            tr.section("longeff: measured windows")
            tr.write_line(render_windows(windows))
        for line in self.lines:
            tr.write_line(f"  {line}")
        for warning in self.warnings:
            tr.write_line(f"  warning: {warning}", yellow=True)
        for line in gate_lines(records, self.settings):
            tr.write_line(line)
        if os.environ.get("GITHUB_ACTIONS") == "true":
            from pytest_longeff.report.github import error_annotations

            for line in error_annotations(self.report.document()):
                tr.write_line(line)
        for line in self.write_failures():
            tr.write_line(f"  longeff: {line}", red=True)
        also = [".csv and .md beside it"] if cells and self.tables_written else []
        from pytest_longeff.report.outputs import compact_paths

        also += compact_paths(self.written)
        if self.report.write_error is None:
            tr.write_line(f"  reports: {self.report.path}" + (f" (also {', '.join(also)})" if also else ""))
        if self.run_gate is not None:
            self.run_gate.summary(tr)


def settings_lines(s: Settings, what: str) -> list[str]:
    """The run's matrix and budgets, for the terminal."""
    return [
        (f"longeff: profile {s.profile}, {what} from {'/'.join(s.families)} x "
         f"{'/'.join(s.sizes)} x {'/'.join(map(str, s.lengths))} x {'/'.join(s.tasks)}"),
        (f"longeff: training budget {s.train_budget.spec}, memory budget {s.memory_budget_bytes / 2**30:.2f} GiB "
         f"({s.memory_budget_source}), energy {s.energy}, report {s.json_path}"),
    ]


def matrix_lines(cells: list[dict[str, Any]], settings: dict[str, Any], width: int | None = None,
                 verbose: bool = False, *, found: Sequence[Finding]) -> list[str]:
    """The matrix (the most important columns on a narrow terminal, all with ``-v``), how each figure was obtained,
    and what the cells say about the seed study's findings (``found``: computed once, by the controller)."""
    from pytest_longeff.report.tables import method_notes, render_matrix

    lines = [render_matrix(cells, width, verbose), *(f"  {note}" for note in method_notes(cells, settings))]
    from pytest_longeff.report.findings import terminal_lines

    return [*lines, *terminal_lines(found)]


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
    return [f"  gate against {for_terminal(s.baseline)} ({for_terminal(s.fail_on)}): " +
            ", ".join(f"{n} {for_terminal(status)}" for status, n in sorted(counts.items()))]


def header_software(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The report header's ``software``: versions and the package's code digest (what resume and merge compare)."""
    from pytest_longeff._version import __version__
    from pytest_longeff.record.io import code_digest

    return {"pytest_longeff": __version__, "code_digest": code_digest(), "pytest": pytest.__version__,
            "torch": facts.get("torch"), "transformers": facts.get("transformers"), "python": facts.get("python")}


def header_settings(settings: Settings, selection: Selection | None) -> dict[str, Any]:
    """The report header's ``settings``, with the shard resolved to ``K/N`` (``auto`` says nothing afterwards)."""
    return {**settings.to_dict(), "shard": selection.shard.spec if selection is not None else settings.shard}


def make_role(config: pytest.Config, settings: Settings, selection: Selection | None = None,
              plan: ResumePlan | None = None, run_gate: GateRun | None = None) -> Role:
    """The role of this process: a worker under xdist, the controller otherwise (owning the run-level gate)."""
    if is_worker(config):
        return Worker(config, settings)
    return Controller(config, settings, selection, plan, run_gate)

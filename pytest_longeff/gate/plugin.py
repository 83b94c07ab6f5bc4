"""The gate inside pytest, imported only in a run with a baseline (``--longeff-baseline``).

* :func:`load_gate` reads the baseline, the rules and the acknowledged changes once per session.
* :func:`settled` judges each measurement of a cell once, in its fixture: the measurement that stands (measured
  again while suspect, :mod:`pytest_longeff.gate.remeasure`) comes back with the gate section of its judgement, which
  the plugin stashes and enforces after the test body, without judging again. :func:`judge_windows` judges what a
  test body measured with ``longeff_window``.
* :class:`GateRun`, the run-level gate, is owned by the reporting controller (:mod:`pytest_longeff.report.roles`),
  which hands it every finished record (carried-over ones included). Once the test loop ended it judges them
  (:meth:`pytest_longeff.gate.check.Gate.judge_run`: FDR over all (cell, metric) pairs, the suite rule per metric,
  from the checks already in the records' gate sections), fails the session through ``session.testsfailed`` (as
  pytest-cov does) and says its verdict in the terminal summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_longeff.gate.check import Gate, acknowledge, baseline_record, check
from pytest_longeff.gate.remeasure import settle_judged
from pytest_longeff.gate.suite import RunVerdict, terminal_lines
from pytest_longeff.text import for_terminal

if TYPE_CHECKING:
    from pytest_longeff.cell.progress import Progress
    from pytest_longeff.cell.resources import LongeffSession
    from pytest_longeff.config.settings import Settings
    from pytest_longeff.matrix import Cell
    from pytest_longeff.record.sections import CellRecord


def load_gate(settings: Settings, cwd: Path) -> Gate:
    """The baseline, the rules and the acknowledged changes of ``settings`` (paths relative to ``cwd``); a usage
    error (pytest's exit 4, never an INTERNALERROR) names the option and the file that is unusable and why
    (:meth:`Gate.load`)."""
    try:
        return Gate.load(settings.baseline or "", settings.fail_on or "", settings.to_dict(), cwd)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def settled(gate: Gate, session: LongeffSession, cell: Cell, first: CellRecord, limit: int,
            progress: Callable[[str], Progress | None]) -> tuple[CellRecord, dict[str, Any] | None]:
    """The measurement of the cell that stands (``first``) and the gate section that counts: its own judgement, or,
    while the gate finds the latest measurement suspect and up to ``limit`` new ones, the judgement of the figures
    pooled over every measurement, with the later ones in its ``remeasured`` section. ``progress`` starts the progress line of a new measurement."""
    from pytest_longeff.cell.run import run_cell
    from pytest_longeff.record.sections import CellRecord

    facts = session.facts()

    def judge(record: CellRecord) -> tuple[dict[str, Any], dict[str, Any]]:
        as_dict = record.to_dict()
        return as_dict, gate.judge(as_dict, facts)[0]

    def again() -> CellRecord:  # the fixture's progress line is the same object: it finishes it
        record, t0 = CellRecord(first.identity), time.perf_counter()
        run_cell(session, cell, record, None, None, progress(f"{first.id} (measured again)"),
                 first.batch)  # the first measurement's batch: no second search
        record.cell_wall_s = time.perf_counter() - t0
        return record

    result = settle_judged(first, judge, again, limit, lambda pooled: gate.judge(pooled, facts)[0])
    result.record.remeasured = result.remeasured
    return result.record, None if result.gate is None else dict(result.gate)


def judge_windows(gate: Gate, record: Mapping[str, Any], machine: Mapping[str, Any],
                  section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The gate section once the test body measured windows (``record``: the item's record with them): a window
    record's judgement, or the cell's ``section`` (judged in its fixture, before the body ran) with the checks of
    the window rules added; the cell's own figures are not judged again."""
    if section is None:
        return gate.judge(record, machine)[0]
    out = dict(section)
    base = baseline_record(gate.baseline, str(record.get("id")))
    if out.get("refused") or base is None or base.get("status") != "passed":
        return out
    rules = [r for r in gate.rules if r.metric.path[0] == "windows" and r.applies(record)]
    checks = acknowledge([check(rule, base, record) for rule in rules], str(record.get("id")), gate.acks)
    out["checks"] = [*out.get("checks", []), *(c.to_dict() for c in checks)]
    return out


class GateRun:
    """The run-level gate, owned by the reporting controller: it takes in every finished record, judges them once
    the test loop ended (not on xdist workers, which own no controller) and fails the session through
    ``session.testsfailed`` (as pytest-cov does)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.records: dict[str, Mapping[str, Any]] = {}
        self.verdict: RunVerdict | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        """Take in a finished (or carried-over) record; a later record of the same cell replaces the earlier."""
        self.records[str(record.get("id"))] = record

    def finish(self, session: pytest.Session) -> RunVerdict | None:
        """Judge the records taken in (None when there are none); a failing verdict fails the session."""
        if self.records:
            self.verdict = self.gate.judge_run(list(self.records.values()))
            if self.verdict.fails():
                session.testsfailed += 1
        return self.verdict

    def summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Write the run-level verdict to the terminal summary, its first line red when it fails; each line through
        :func:`text.for_terminal` (cell ids and reasons come from the baseline report too)."""
        if self.verdict is None:
            return
        for n, line in enumerate(terminal_lines(self.verdict)):
            terminalreporter.write_line(for_terminal(line), red=n == 0 and self.verdict.fails())

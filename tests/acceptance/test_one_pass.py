"""One pass of a cell's record: typed until its final report, serialised there once, each measurement judged by the
gate once, one collector (the controller, which owns the run-level gate), and nothing of the gate, the energy meters
or torch loaded in a run that does not ask for them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import pytest_longeff.gate.check as check_module
import pytest_longeff.report.findings as findings_module
from pytest_longeff.gate.check import Gate
from pytest_longeff.record.sections import CellRecord

ONE_CELL = [
    "--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
    "--longeff-eval-samples=2", "--longeff-idle-s=0", "--longeff-batch-size=2", "--longeff-train-budget=steps=4",
    "--longeff-device=cpu", "--longeff-energy=none", "-p", "no:randomly",
]


def _records(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["records"])


def _faster(doc: dict[str, Any], factor: float = 100.0) -> dict[str, Any]:
    """``doc`` with every record's training throughput ``factor`` times what was measured."""
    for record in doc["records"]:
        stats = record["train"]["samples_per_s_stats"]
        stats["median"] *= factor
        stats["ci95"] = [v * factor for v in stats["ci95"]]
    return doc


class Spy:
    """Counts serialisations of typed cell records, gate judgements, per-figure checks and computations of the
    findings in in-process runs, and keeps the typed records the plugin finished."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.serialised: Counter[str] = Counter()
        self.judged: list[dict[str, Any]] = []
        self.checks = self.findings = 0
        self.finished: list[CellRecord] = []
        to_dict, judge, finish, check = CellRecord.to_dict, Gate.judge, CellRecord.finish, check_module.check
        findings = findings_module.findings

        def counted_to_dict(record: CellRecord) -> dict[str, Any]:
            self.serialised[record.id] += 1
            return to_dict(record)

        def counted_judge(gate: Gate, record: Any, machine: Any) -> tuple[dict[str, Any], list[str]]:
            self.judged.append(dict(record))
            return judge(gate, record, machine)

        def kept_finish(record: CellRecord, *args: Any) -> None:
            self.finished.append(record)
            finish(record, *args)

        def counted_check(*args: Any) -> Any:
            self.checks += 1
            return check(*args)

        def counted_findings(*args: Any) -> Any:
            self.findings += 1
            return findings(*args)

        monkeypatch.setattr(CellRecord, "to_dict", counted_to_dict)
        monkeypatch.setattr(Gate, "judge", counted_judge)
        monkeypatch.setattr(CellRecord, "finish", kept_finish)
        monkeypatch.setattr(check_module, "check", counted_check)
        monkeypatch.setattr(findings_module, "findings", counted_findings)

    def reset(self) -> None:
        self.serialised.clear()
        self.judged.clear()
        self.finished.clear()
        self.checks = self.findings = 0


def test_a_cell_is_serialised_once_for_its_report_and_judged_once_per_measurement(
        bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    bench.runpytest(*ONE_CELL, "--longeff-json=base.json").assert_outcomes(passed=1)
    # No baseline: one dict for the test body, one for the report; no judgement. The findings are computed once,
    # for the JSON report and the terminal's matrix alike.
    assert spy.serialised == {"led-base-256-qasper": 2} and spy.judged == [] and spy.checks == 0
    assert spy.findings == 1
    (typed,) = spy.finished
    assert (typed.status, typed.reason, typed.gate) == ("passed", None, None) and typed.predictions
    (record,) = _records(bench.path / "base.json")
    assert "_predictions" not in record and record["status"] == "passed"
    predictions = json.loads((bench.path / record["predictions_path"]).read_text())
    assert predictions == typed.predictions  # written beside the report, from the report's own attribute

    spy.reset()
    result = bench.runpytest(*ONE_CELL, "--longeff-baseline=base.json",
                             "--longeff-fail-on=train_samples_per_s:90%,score:90%", "--longeff-remeasure=3")
    result.assert_outcomes(passed=1)
    # One measurement, one judgement (two checks, one per rule), none again after the body or at run level.
    assert len(spy.judged) == 1 and spy.checks == 2
    assert spy.serialised == {"led-base-256-qasper": 3}  # the judgement's, the body's, the report's
    (typed,) = spy.finished
    (record,) = _records(bench.path / "reports" / "longeff.json")
    assert typed.status == record["status"] == "passed" and typed.reason is None
    assert typed.gate is not None and typed.gate == record["gate"]
    assert [c["metric"] for c in typed.gate["checks"]] == ["train_samples_per_s", "score"]
    assert json.loads((bench.path / "reports" / "longeff.json").read_text())["session"]["gate"]["failed"] is False

    spy.reset()
    (bench.path / "fast.json").write_text(json.dumps(_faster(json.loads((bench.path / "base.json").read_text()))))
    result = bench.runpytest(*ONE_CELL, "--longeff-baseline=fast.json", "--longeff-fail-on=train_samples_per_s:10%",
                             "--longeff-remeasure=2")
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    (record,) = _records(bench.path / "reports" / "longeff.json")
    # Three measurements (each suspect), three judgements of three distinct measurements and one of the figures
    # pooled over them (the verdict that stands), and no more.
    assert record["remeasured"]["measurements"] == 3
    assert len(spy.judged) == 4 and spy.checks == 4
    assert len({r["cell_wall_s"] for r in spy.judged[:3]}) == 3
    assert spy.judged[3]["cell_wall_s"] == spy.judged[0]["cell_wall_s"]  # the pooled record is the first's
    (typed,) = spy.finished
    assert typed.status == "failed" and "regression against the baseline" in (typed.reason or "")
    assert typed.gate == record["gate"] and record["gate"]["checks"][0]["status"] == "failed"
    result.stdout.fnmatch_lines(["*longeff gate over the run: FAILED*",
                                 "*regression led-base-256-qasper train_samples_per_s*"])


def test_cells_carried_over_by_resume_reach_the_run_level_gate(bench: pytest.Pytester) -> None:
    """The carried cell never runs; the controller hands its record to the run-level gate, which judges it (not by
    the stale gate section it brought from its own run) and fails the session for it."""
    two = [a if not a.startswith("--longeff-tasks") else "--longeff-tasks=qasper,gov_report" for a in ONE_CELL]
    bench.runpytest(*two, "-k", "qasper", "--longeff-json=first.json").assert_outcomes(passed=1, deselected=1)
    first = json.loads((bench.path / "first.json").read_text())
    (bench.path / "base.json").write_text(json.dumps(first))
    gated = [*two, "--longeff-baseline=base.json", "--longeff-fail-on=train_samples_per_s:10%", "--longeff-remeasure=0",
             "--longeff-resume=resume.json", "--longeff-json=reports/run.json"]
    config = bench.parseconfigure(*gated)  # this run's settings, which the resumed report must have been made under
    from pytest_longeff.plugin import SELECTION_KEY, SETTINGS_KEY
    from pytest_longeff.record.io import jsonable
    from pytest_longeff.report.roles import header_settings

    settings = jsonable(header_settings(config.stash[SETTINGS_KEY], config.stash.get(SELECTION_KEY, None)))
    stale = {"baseline": "old.json", "refused": None, "note": "from an earlier run",
             "checks": [{"metric": "train_samples_per_s", "status": "passed", "baseline": 1.0, "current": 1.0,
                         "change": 0.0, "tolerance": 0.1, "note": "within tolerance"}]}
    resumed = _faster({**first, "settings": settings}, 1 / 100)  # the carried cell: 100x slower than the baseline
    resumed["records"][0]["gate"] = stale
    (bench.path / "resume.json").write_text(json.dumps(resumed))

    result = bench.runpytest(*gated, "-rs")
    result.assert_outcomes(passed=1, skipped=1)  # gov_report runs (not in the baseline), qasper is carried over
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # by the run-level gate alone
    result.stdout.fnmatch_lines(["*resume from resume.json: 1 passed cell(s) carried over*",
                                 "*longeff gate over the run: FAILED*",
                                 "*regression led-base-256-qasper train_samples_per_s*",
                                 "*carried over from resume.json"])
    doc = json.loads((bench.path / "reports" / "run.json").read_text())
    assert {r["id"]: bool(r.get("carried_over")) for r in doc["records"]} == \
        {"led-base-256-qasper": True, "led-base-256-gov_report": False}
    assert [(p["cell"], p["verdict"]) for p in doc["session"]["gate"]["fdr"]] == \
        [("led-base-256-qasper", "regression")]


def test_a_suite_without_a_baseline_loads_neither_the_gate_nor_energy_nor_torch(pytester: pytest.Pytester) -> None:
    """An unrelated suite in an environment where pytest-longeff is installed (loaded by its entry point) imports no
    gate, no energy meter and no torch: checked in a fresh process once every plugin's unconfigure ran."""
    pytester.makepyfile(test_plain="def test_x():\n    pass\n")
    pytester.makeconftest('''
import json
import sys

import pytest


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch"
                    or m.startswith(("pytest_longeff.gate", "pytest_longeff.energy")))
    with open("loaded.json", "w") as fh:
        json.dump({"plugin": "pytest_longeff.plugin" in sys.modules, "loaded": loaded}, fh)
''')
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    seen = json.loads((pytester.path / "loaded.json").read_text())
    assert seen == {"plugin": True, "loaded": []}

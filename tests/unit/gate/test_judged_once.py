"""One judgement per measurement: the run-level gate reuses the per-cell checks, ``settle_judged`` judges each
measurement once, and the run gate the controller owns takes records in and fails the session."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import pytest_longeff.gate.check as check_module
from pytest_longeff.gate.acknowledge import Ack
from pytest_longeff.gate.check import Check, Gate, judge_run, judged_checks, parse_fail_on, rule_checks
from pytest_longeff.gate.plugin import GateRun, judge_windows
from pytest_longeff.gate.remeasure import Settled, settle, settle_judged

RULES = parse_fail_on("train_samples_per_s:10%,score:5%,window_decode_time_s:10%")
MACHINE = {"cpu": "x"}


def rec(cell: str, tput: float, ci: list[float] | None | str = "tight", score: float = 50.0, status: str = "passed",
        **extra: Any) -> dict[str, Any]:
    """A record; the throughput's 95 % CI is +-1 % unless given."""
    if ci == "tight":
        ci = [tput * 0.99, tput * 1.01]
    return {"id": cell, "status": status, "batch_size": 2, "accuracy": {"score": score},
            "train": {"samples_per_s_stats": {"median": tput, "ci95": ci, "n": 5}}, **extra}


def window(cell: str, time_s: float, ci: list[float] | None = None, status: str = "passed") -> dict[str, Any]:
    stats = {"median": time_s, "ci95": ci, "n": 5}
    return {"id": cell, "kind": "window", "status": status,
            "windows": {"decode": {"time_s": time_s, "stats": stats, "time_s_stats": stats}}}


BASELINE: dict[str, Any] = {"machine": MACHINE, "settings": {}, "records": [
    rec("a", 10.0, [9.5, 10.5]), rec("b", 10.0, [9.5, 10.5]), rec("c", 10.0), rec("d", 10.0, [9.0, 11.0]),
    rec("e", 10.0, score=60.0), rec("f", 10.0), window("w", 1.0, [0.9, 1.1])]}
CURRENT = [rec("a", 9.8, [9.3, 10.3]), rec("b", 7.0, [6.8, 7.2]), rec("c", 5.0), rec("d", 8.5, [7.0, 10.0]),
           rec("e", 10.0, score=50.0), rec("f", 5.0, status="skipped"), rec("g", 3.0), window("w", 1.3, [1.25, 1.35])]


def _gated(gate: Gate, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` as the plugin leaves them: each with the gate section of its one judgement."""
    return [{**r, "gate": gate.judge(r, MACHINE)[0]} for r in records]


@pytest.mark.parametrize("acks", [(), (Ack("b", "train_samples_per_s", "known"), Ack("suite", "score", "new"))])
def test_the_run_level_verdict_from_the_per_cell_checks_is_the_verdict_of_checking_again(
        monkeypatch: pytest.MonkeyPatch, acks: tuple[Ack, ...]) -> None:
    gate = Gate(RULES, BASELINE, "b.json", {}, acks)
    gated = _gated(gate, CURRENT)
    assert any(c["status"] == "acknowledged" for r in gated for c in r["gate"]["checks"]) == bool(acks)
    fresh = judge_run(RULES, BASELINE, gated, acks)  # every record checked again, as for a report read from a file

    def no_check(*args: Any) -> Check:
        raise AssertionError("a record judged in this run was checked again")

    monkeypatch.setattr(check_module, "check", no_check)
    reused = gate.judge_run(gated)
    assert reused == fresh and reused.fdr and reused.suite
    assert [(v.pair.cell, v.pair.metric, v.verdict) for v in reused.fdr if v.verdict != "ok"] == \
        [("b", "train_samples_per_s", "acknowledged" if acks else "regression"),
         ("c", "train_samples_per_s", "regression"), ("e", "score", "regression"),
         ("w", "window_decode_time_s", "regression")]


def test_records_without_this_runs_judgement_are_checked_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """No gate section (a body that failed before the gate was consulted), a section without checks, and a record
    carried over from an earlier run (judged there, perhaps against another baseline) are checked at run level."""
    gate = Gate(RULES, BASELINE, "b.json", {})
    stale = {"baseline": "old.json", "refused": None,
             "checks": [Check("train_samples_per_s", "passed", 10.0, 10.0, 0.0, 0.5, "old").to_dict()]}
    records = [rec("a", 5.0), rec("b", 5.0, gate={"refused": None}), rec("c", 5.0, gate=stale, carried_over=True)]
    assert [judged_checks(r) for r in records] == [None, None, None]
    calls: list[str] = []
    real = check_module.check

    def counted(rule: Any, base: Any, current: Any) -> Check:
        calls.append(str(current["id"]))
        return real(rule, base, current)

    monkeypatch.setattr(check_module, "check", counted)
    verdict = gate.judge_run(records)
    assert sorted(calls) == ["a", "a", "b", "b", "c", "c"]  # two cell rules apply to each
    assert [(v.pair.cell, v.verdict) for v in verdict.fdr if v.pair.metric == "train_samples_per_s"] == \
        [("a", "regression"), ("b", "regression"), ("c", "regression")]


def test_rule_checks_take_each_rules_check_from_the_section_in_order() -> None:
    rules = parse_fail_on("score:5%,score:50%,train_samples_per_s:10%")
    section = {"refused": None, "checks": [
        Check("batch_size", "failed", 4, 2, -0.5, 0.0, "memory").to_dict(),
        Check("score", "acknowledged", 60.0, 50.0, -1 / 6, 0.05, "x; acknowledged: known").to_dict(),
        Check("score", "passed", 60.0, 50.0, -1 / 6, 0.5, "within tolerance").to_dict(),
        Check("train_samples_per_s", "passed", 10.0, 10.0, 0.0, 0.1, "within tolerance").to_dict()]}
    current = rec("e", 10.0, score=50.0, gate=section)
    got = rule_checks(rules, BASELINE["records"][4], current, reuse=True)
    assert [(r.tolerance, c.metric, c.status) for r, c in got] == [
        (0.05, "score", "failed"), (0.5, "score", "passed"), (0.1, "train_samples_per_s", "passed")]
    assert [c.status for _, c in rule_checks(rules, BASELINE["records"][4], current)] == \
        ["failed", "passed", "passed"]  # made afresh without reuse: the same checks


def test_settle_judged_judges_each_measurement_once_and_the_first_stands() -> None:
    made: list[dict[str, Any]] = [{"n": 0}]
    changes = [-0.4, -0.2, -0.3, -0.3]
    judged: list[int] = []

    def judge(m: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        judged.append(m["n"])
        check = {"metric": "train_samples_per_s", "status": "failed", "change": changes[m["n"]], "tolerance": 0.1}
        return {**m, "train": m["n"]}, {"refused": None, "checks": [check], "n": m["n"]}

    def again() -> dict[str, Any]:
        made.append({"n": len(made)})
        return made[-1]

    settled = settle_judged(made[0], judge, again, 2)
    assert judged == [0, 1, 2]  # three measurements, three judgements
    assert isinstance(settled, Settled) and settled.record is made[0] and settled.gate is not None
    assert settled.gate["n"] == 0  # no judge of the pooled figures given: the first measurement's section
    assert settled.remeasured is not None and [o["train"] for o in settled.remeasured["others"]] == [1, 2]
    judged.clear()
    pooled = settle_judged(made[0], judge, again, 1, lambda d: {"pooled_from": d["n"], "checks": []})
    assert judged == [0, 3] and pooled.gate == {"pooled_from": 0, "checks": []}  # one more judgement: the pool
    judged.clear()
    once = settle_judged({"n": 1}, judge, again, 0)
    assert judged == [1] and once.remeasured is None and once.gate is not None and once.gate["n"] == 1
    # settle, for callers that judge sections alone, settles the same way
    assert settle(made[0], lambda m: judge(m)[1], again, 0, dict) == (made[0], None)


def test_judge_windows_adds_the_window_checks_to_the_cells_section() -> None:
    gate = Gate(RULES, {**BASELINE, "records": [{**rec("a", 10.0), **window("a", 1.0, [0.99, 1.01]), "kind": "cell"}]},
                "b.json", {})
    cell = rec("a", 10.0)
    section = gate.judge(cell, MACHINE)[0]
    assert [c["metric"] for c in section["checks"]] == ["train_samples_per_s", "score"]
    both = {**cell, "windows": window("a", 2.0, [1.98, 2.02])["windows"]}
    extended = judge_windows(gate, both, MACHINE, section)
    assert [(c["metric"], c["status"]) for c in extended["checks"]] == [
        ("train_samples_per_s", "passed"), ("score", "passed"), ("window_decode_time_s", "failed")]
    assert section["checks"] != extended["checks"]  # the fixture's section is not edited in place
    refused = {**section, "refused": "another machine"}
    assert judge_windows(gate, both, MACHINE, refused) == refused
    alone = window("w", 1.3)
    assert judge_windows(gate, alone, MACHINE, None) == gate.judge(alone, MACHINE)[0]


def test_the_run_gate_takes_records_in_and_fails_the_session() -> None:
    gate = Gate(RULES, BASELINE, "b.json", {})
    run = GateRun(gate)
    session = SimpleNamespace(testsfailed=0)
    assert run.finish(session) is None and session.testsfailed == 0  # type: ignore[arg-type]
    for r in _gated(gate, [rec("a", 4.0), rec("a", 10.0)]):  # a later record of a cell replaces the earlier
        run.add(r)
    assert list(run.records) == ["a"]
    verdict = run.finish(session)  # type: ignore[arg-type]
    assert verdict is run.verdict and verdict is not None and verdict.fdr[0].verdict == "ok"
    run.add(_gated(gate, [rec("b", 4.0)])[0])
    assert run.finish(session) is not None and run.verdict is not None and run.verdict.fails()  # type: ignore[arg-type]
    assert session.testsfailed == 1
    lines: list[tuple[str, bool]] = []
    run.summary(SimpleNamespace(write_line=lambda line, red=False: lines.append((line, red))))  # type: ignore[arg-type]
    assert lines[0][0].startswith("longeff gate over the run: FAILED") and lines[0][1]
    assert not any(red for _, red in lines[1:])

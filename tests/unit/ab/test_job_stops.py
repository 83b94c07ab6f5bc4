"""When an A/B job stops: the job's own loop and judgement, with its process pairs replaced by rounds of a known
ratio head/base (the sides' processes are the one part not run here; ``tests/acceptance/test_ab.py`` runs them).

A decided regression ends the job at the fewest pairs (its verdict cannot change), not at the budget a figure near
the tolerance would otherwise hold it to; ``--keep-going`` measures on; a job with no regression stops only when
every figure is decided."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from pytest_longeff.ab import run as run_mod
from pytest_longeff.ab.judge import judge_cells, parse_rules
from pytest_longeff.ab.render import render
from pytest_longeff.ab.report import check_ab, rejudge
from pytest_longeff.ab.sides import Env
from pytest_longeff.record.io import ReportError

RULES = parse_rules("train_samples_per_s:10%,inference_tokens_per_s:10%")
AT_TOLERANCE = 1 / 0.9  # a rate 10 % lower: the interval straddles the tolerance however many pairs


class ScriptedJob(run_mod.AbJob):
    """An :class:`~pytest_longeff.ab.run.AbJob` whose pairs measure rounds in which the head takes ``ratios[cell]``
    times the base's time per unit, with a log-normal noise of sd ``noise`` per round (seeded)."""

    def __init__(self, ratios: Mapping[str, float], plan: run_mod.Plan, noise: float = 0.02) -> None:
        self.said: list[str] = []
        env = Env("base", sys.executable, ".")
        super().__init__(env, Env("head", sys.executable, "."), [], plan, RULES, self.said.append)
        self.ratios, self.noise, self.gen = ratios, noise, random.Random(7)

    def _collect(self, sides: Any, pair: int) -> None:
        if not self.cells:
            self.cells = {c: {"rounds": []} for c in self.ratios}

    def _cell(self, sides: Any, cell: str, pair: int) -> None:
        for r in range(self.plan.rounds):
            for window, units in (("train", 8), ("inference", 40)):
                head = 0.25 * self.ratios[cell] * math.exp(self.gen.gauss(0, self.noise))
                self.cells[cell]["rounds"].append({"pair": pair, "round": r, "window": window, "order": "AB",
                                                   "base": {"units": units, "time_s": 0.25},
                                                   "head": {"units": units, "time_s": head}})


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_mod, "_start", lambda base, head, swap: (None, None))
    monkeypatch.setattr(run_mod, "close_both", lambda sides: None)


def _plan(**kw: Any) -> run_mod.Plan:
    return run_mod.Plan(**{"pairs": 8, "min_pairs": 4, "rounds": 2, **kw})


def test_a_decided_regression_stops_the_job_at_the_fewest_pairs() -> None:
    job = ScriptedJob({"slow": 1.3, "near": AT_TOLERANCE}, _plan())
    report = job.run()
    assert any("pair 2/8" in line and "so far: regression" in line for line in job.said)  # decided at pair 2 ...
    assert report["verdict"] == "regression" and report["pairs_done"] == 4  # ... and stopped at --min-pairs
    assert report["stopped"] == "a regression decided before the budget's end (--keep-going was not given)"
    assert any("--keep-going" in line for line in job.said)
    slow = {v["figure"]: v for v in report["cells"]["slow"]["verdicts"]}
    assert slow["train_samples_per_s"]["verdict"] == "regression" and "note" not in slow["train_samples_per_s"]
    # Stopped short of the budget: the figures near the tolerance, undecided at the stop, are judged once as at the
    # budget's end (a regression: significant and at least half the tolerance), said in their note; the report
    # holds exactly that judgement of its rounds.
    near = report["cells"]["near"]["verdicts"]
    assert [v["verdict"] for v in near] == ["regression", "regression"]
    assert all("judged at the job's stop, as at the budget's end" in v["note"] for v in near)
    again = {k: {"rounds": c["rounds"]} for k, c in report["cells"].items()}
    judge_cells(RULES, again, final=False)
    assert [v["verdict"] for v in again["near"]["verdicts"]] == ["inconclusive", "inconclusive"]
    judge_cells(RULES, again, final=True)
    assert [v["verdict"] for v in again["near"]["verdicts"]] == [v["verdict"] for v in near]
    check_ab(report, "report")
    assert "; stopped: a regression decided before the budget's end" in render(report)
    # Judged again at other tolerances, the report says the stop was the job's, under its own rules.
    assert rejudge(report, parse_rules("train_samples_per_s:50%"))["stopped"].startswith(
        "the job (under its own --fail-on): a regression decided")
    with pytest.raises(ReportError, match="stopped: expected a string"):
        check_ab({**report, "stopped": 3}, "report")


def test_a_regression_in_the_last_pair_says_the_budget_was_spent() -> None:
    report = ScriptedJob({"slow": 1.3, "near": AT_TOLERANCE}, _plan(pairs=4)).run()
    assert report["pairs_done"] == 4 and report["verdict"] == "regression"
    assert report["stopped"] == "the budget of --pairs 4 process pairs spent"
    assert not any("judged at the job's stop" in (v.get("note") or "") for c in report["cells"].values()
                   for v in c["verdicts"])


def test_keep_going_measures_on_while_a_figure_is_undecided() -> None:
    report = ScriptedJob({"slow": 1.3, "near": AT_TOLERANCE}, _plan(keep_going=True)).run()
    assert report["pairs_done"] == 8 and report["stopped"] == "the budget of --pairs 8 process pairs spent"
    assert report["verdict"] == "regression" and report["plan"]["keep_going"] is True


def test_without_a_regression_the_job_stops_only_when_every_figure_is_decided() -> None:
    report = ScriptedJob({"same": 1.0, "faster": 0.8}, _plan()).run()
    assert report["verdict"] == "no regression" and report["pairs_done"] == 4
    assert report["stopped"] == "nothing left to decide"
    report = ScriptedJob({"same": 1.0, "near": AT_TOLERANCE}, _plan()).run()
    assert report["pairs_done"] == 8 and report["verdict"] != "no regression"
    assert report["stopped"] == "the budget of --pairs 8 process pairs spent"


def test_keep_going_is_an_option_of_ab() -> None:
    args, _ = run_mod.parser().parse_known_args(["--base", "b", "--head", "h", "--keep-going"])
    assert args.keep_going is True
    assert run_mod.parser().parse_known_args(["--base", "b", "--head", "h"])[0].keep_going is False

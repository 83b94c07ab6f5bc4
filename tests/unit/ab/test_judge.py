"""From rounds to verdicts, on rounds whose ratios are known: a cell slower by a known factor in every round, the
same code, too few pairs, a change of work, a head that breaks a cell; and a saved report read back."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.ab.judge import FIGURES, judge_cells, pair_values, parse_rules
from pytest_longeff.ab.report import KIND, SCHEMA_VERSION, check_ab, compare, rejudge, show
from pytest_longeff.record.io import ReportError

RULES = parse_rules("train_samples_per_s:10%,inference_tokens_per_s:10%,work:0%")


def _rounds(ratio: float, pairs: int, noise: float = 0.02, seed: int = 0) -> list[dict[str, Any]]:
    """Rounds of both windows in which the head takes ``ratio`` times the base's time per unit, times a log-normal
    noise of sd ``noise`` per round."""
    rng = random.Random(seed)
    out = []
    for pair in range(pairs):
        for r in range(2):
            for window, units in (("train", 8), ("inference", 40)):
                base = {"units": units, "time_s": 0.25}
                head = {"units": units, "time_s": 0.25 * ratio * math.exp(rng.gauss(0, noise))}
                out.append({"pair": pair, "round": r, "window": window, "order": "AB", "base": base, "head": head})
    return out


def _work(calls: int) -> dict[str, Any]:
    section = {"unit": "step", "units": 1, "ops": {"aten.mm": [1, 100, 40], "aten.clone": [calls, 0, 40 * calls]}}
    return {"train": section, "inference": {**section, "unit": "token"}}


def _cell(ratio: float, pairs: int = 5, noise: float = 0.02, calls: int = 0, **extra: Any) -> dict[str, Any]:
    return {"rounds": _rounds(ratio, pairs, noise), "work": {"base": _work(0), "head": _work(calls)}, **extra}


def _verdict(cell: dict[str, Any], figure: str) -> dict[str, Any]:
    return next(v for v in cell["verdicts"] if v["figure"] == figure)


def test_pair_values_are_log_cost_ratios_by_pair() -> None:
    values = pair_values(FIGURES["train_samples_per_s"], _rounds(1.25, 2, noise=0.0))
    assert values == {0: [pytest.approx(math.log(1.25))] * 2, 1: [pytest.approx(math.log(1.25))] * 2}


def test_a_slower_head_is_a_regression_the_same_code_is_not() -> None:
    cells = {"slow": _cell(1.3), "same": _cell(1.0)}
    judged = judge_cells(RULES, cells, final=False)
    slow = _verdict(cells["slow"], "train_samples_per_s")
    assert slow["verdict"] == "regression" and slow["change"] == pytest.approx(1 / 1.3 - 1, abs=0.02)
    assert slow["high"] < -0.1  # the whole interval is a drop beyond the tolerance
    same = _verdict(cells["same"], "inference_tokens_per_s")
    assert same["verdict"] == "no regression" and same["low"] > -0.1
    assert judged["verdict"] == "regression"
    # The suite over both cells: about +14 % a cost (1.3 and 1.0), never "no regression" at 10 %.
    assert [s["figure"] for s in judged["suite"]] == ["train_samples_per_s", "inference_tokens_per_s"]
    assert all(s["verdict"] != "no regression" and s["change"] == pytest.approx(1 / 1.3**0.5 - 1, abs=0.02)
               for s in judged["suite"])


def test_two_noisy_pairs_are_inconclusive_with_what_they_could_resolve() -> None:
    cells = {"c": _cell(1.0, pairs=2, noise=0.2)}
    judged = judge_cells(RULES, cells, final=False)
    v = _verdict(cells["c"], "train_samples_per_s")
    assert v["verdict"] == "inconclusive" and v["resolvable"] > 0.1 and v["pairs"] == 2
    assert judged["verdict"] == "inconclusive" and judged["undecided"] >= 1


def test_more_work_is_a_regression_however_the_clock_reads() -> None:
    cells = {"c": _cell(1.0, calls=1)}
    judged = judge_cells(RULES, cells, final=False)
    work = _verdict(cells["c"], "work")
    assert work["verdict"] == "regression" and judged["exact_regression"]
    assert "train: aten.clone: calls 0 -> 1, output_bytes 0 -> 40" in work["diff"]
    assert judge_cells(parse_rules("train_samples_per_s:10%"), {"c": _cell(1.0, calls=1)}, False)["verdict"] == \
        "no regression"  # without the work rule the counters are not gated


def test_a_cell_the_head_breaks_is_a_regression_one_the_base_breaks_is_inconclusive() -> None:
    head = judge_cells(RULES, {"c": _cell(1.0), "d": {"rounds": [], "error": "head: boom", "head_error": "boom"}},
                       final=True)
    assert head["verdict"] == "regression" and head["exact_regression"]
    base = judge_cells(RULES, {"c": _cell(1.0), "d": {"rounds": [], "error": "base: boom"}}, final=True)
    assert base["verdict"] == "inconclusive" and base["errors"] == ["d"]


def _report(cells: dict[str, Any]) -> dict[str, Any]:
    doc = {"kind": KIND, "schema_version": SCHEMA_VERSION, "sides": {"base": {}, "head": {}}, "pairs_done": 5,
           "wall_s": 1.0, "cells": cells}
    return {**doc, **judge_cells(RULES, doc["cells"], final=True)}


def test_a_saved_report_is_judged_again_under_other_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _report({"c": _cell(1.08, pairs=6)})
    assert rejudge(report, parse_rules("train_samples_per_s:50%"))["verdict"] == "no regression"
    assert rejudge(report, parse_rules("train_samples_per_s:1%"))["verdict"] == "regression"
    path = tmp_path / "ab.json"
    path.write_text(json.dumps(report))
    assert show(path) == 0 and "longeff A/B gate" in capsys.readouterr().out
    assert compare([str(path), "--fail-on", "train_samples_per_s:1%"]) == 1
    assert compare([str(path), "--fail-on", "train_samples_per_s:50%"]) == 0
    assert compare([str(path), "--fail-on", "speed:1%"]) == 2
    assert compare([str(path), "--acknowledged", "x"]) == 2  # an option this command does not take


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(kind="other"), "not a pytest-longeff A/B report"),
    (lambda d: d.update(schema_version=9), "schema_version 9"),
    (lambda d: d.update(cells=[]), "cells: expected an object"),
    (lambda d: d.update(wall_s="x"), "wall_s: expected a finite number"),
    (lambda d: d.update(sides=[1]), "sides: expected an object"),
    (lambda d: d["cells"]["c"]["rounds"][0].update(pair="1"), "rounds[0]: expected pair"),
    (lambda d: d["cells"]["c"]["rounds"][0]["base"].update(units=-1), "rounds[0].base.units: expected a finite"),
    (lambda d: d["cells"]["c"].update(verdicts={"a": 1}), "verdicts: expected a list"),
    (lambda d: d["cells"]["c"]["verdicts"][0].update(resolvable="a"), "resolvable: expected a finite number"),
    (lambda d: d["cells"]["c"]["work"].update(base=[1]), "work.base: expected an object"),
    (lambda d: d["suite"][0].pop("figure"), "suite[0]: expected an object with figure and verdict"),
])
def test_a_malformed_report_names_the_field(edit: Any, message: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    doc = _report({"c": _cell(1.0)})
    edit(doc)
    with pytest.raises(ReportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_ab(doc, "ab.json")
    path = tmp_path / "ab.json"
    path.write_text(json.dumps(doc))
    assert show(path) == 2 and compare([str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 2  # one line from each command

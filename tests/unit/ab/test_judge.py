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


# Energy readings a side's meter called invalid under clock throttling (which a power regression causes): such
# rounds give no ratio, and must not let a head pass as "unmeasured".
ENERGY_RULES = parse_rules("train_samples_per_s:10%,train_j_per_sample:10%")
_VALID = {"energy_j": 2.0, "energy_uncertainty_j": 0.01, "energy_valid": True, "energy_method": "nvml_counter",
          "energy_throttle_reasons": []}
_THROTTLED = {**_VALID, "energy_valid": False, "energy_note": "GPU 0 thermal slowdown 0.2 s of 0.3 s",
              "energy_throttle_reasons": ["thermal_slowdown"]}
_SHORT = {**_VALID, "energy_valid": False, "energy_note": "window shorter than the update period"}
_NO_METER = {"energy_j": None, "energy_valid": False, "energy_method": "none", "energy_note": "no energy meter"}


def _energy_cell(pairs: int, invalid: Any, rounds_per_pair: int = 2, head_energy: float = 2.0,
                 window: str = "train") -> dict[str, Any]:
    """Rounds of equal time on both sides (the head using ``head_energy`` J where the base uses 2 J);
    ``invalid(pair, round)`` says which side's reading throttling made invalid in that round ("head", "base",
    "both" or None)."""
    out = []
    for pair in range(pairs):
        for r in range(rounds_per_pair):
            which = invalid(pair, r)
            base = {"units": 8, "time_s": 0.25, "energy": _THROTTLED if which in ("base", "both") else _VALID}
            head = {"units": 8, "time_s": 0.25,
                    "energy": _THROTTLED if which in ("head", "both") else {**_VALID, "energy_j": head_energy}}
            out.append({"pair": pair, "round": r, "window": window, "order": "AB", "base": base, "head": head})
    return {"rounds": out}


def test_a_head_whose_energy_readings_turn_invalid_under_throttling_is_a_regression_not_unmeasured() -> None:
    cells = {"c": _energy_cell(8, lambda pair, r: "head")}  # no round gives a ratio: every head reading throttled
    judged = judge_cells(ENERGY_RULES, cells, final=True)
    energy = _verdict(cells["c"], "train_j_per_sample")
    assert energy["verdict"] == "regression" and energy["p_worse"] == pytest.approx(1 / 256)
    assert energy["throttled"] == {"head_only": 16, "base_only": 0, "rounds": 16, "pairs_towards_head": 8,
                                   "pairs_leaning": 8, "p": pytest.approx(1 / 256)}
    assert "under throttling (thermal_slowdown) in 16 of 16 rounds" in energy["note"] and energy["change"] is None
    assert _verdict(cells["c"], "train_samples_per_s")["verdict"] == "no regression"  # time is unchanged
    assert judged["verdict"] == "regression"
    # Five pairs of five (p 1/32) are a regression alone, and go through the FDR with the other verdicts: beside the
    # time figure's they are not a discovery (q 1/16), yet still never "no regression".
    five = {"c": _energy_cell(5, lambda pair, r: "head")}
    assert judge_cells(parse_rules("train_j_per_sample:10%"), five, final=True)["verdict"] == "regression"
    judged = judge_cells(ENERGY_RULES, five, final=True)
    energy = _verdict(five["c"], "train_j_per_sample")
    assert energy["verdict"] == "inconclusive" and judged["verdict"] == "inconclusive"
    assert "in 10 of 10 rounds" in energy["note"] and "FDR" in energy["note"]
    inference = {"c": _energy_cell(8, lambda pair, r: "head", window="inference")}
    judge_cells(parse_rules("inference_j_per_token:10%"), inference, final=True)
    assert _verdict(inference["c"], "inference_j_per_token")["verdict"] == "regression"


def test_a_regression_the_ratios_found_keeps_its_evidence_beside_throttled_rounds() -> None:
    # The head draws 50 % more where it is measured, and throttling voids one round in each of 5 pairs: the ratios'
    # p-value (far below the sign test's 1/32) is what the FDR sees, so seven unchanged cells beside it do not
    # turn the regression into "inconclusive".
    cells = {"hot": _energy_cell(5, lambda pair, r: "head" if r == 0 else None, 4, head_energy=3.0)}
    cells.update({f"same{i}": _energy_cell(5, lambda pair, r: None, 4) for i in range(7)})
    judged = judge_cells(ENERGY_RULES, cells, final=True)
    hot = _verdict(cells["hot"], "train_j_per_sample")
    assert hot["verdict"] == "regression" and hot["p_worse"] < 1e-6 and hot["change"] == pytest.approx(0.5)
    assert hot["throttled"]["head_only"] == 5 and "under throttling" in hot["note"]
    assert judged["verdict"] == "regression"


def test_too_few_pairs_of_throttled_head_readings_are_inconclusive_never_no_regression() -> None:
    # One throttled head reading a pair among valid ones (a quarter of the rounds, beyond the 10 % tolerance): the
    # ratios say "no change", yet 4 of 4 pairs leaning towards the head is p 1/16, not enough for a regression and
    # too much for "no regression".
    cells = {"c": _energy_cell(4, lambda pair, r: "head" if r == 0 else None, 4)}
    judged = judge_cells(ENERGY_RULES, cells, final=False)
    energy = _verdict(cells["c"], "train_j_per_sample")
    assert energy["verdict"] == "inconclusive" and energy["pairs"] == 4 and energy["throttled"]["p"] == 1 / 16
    assert judged["verdict"] == "inconclusive" and judged["undecided"] == 1  # so the job measures more pairs


def test_a_few_throttled_rounds_within_the_tolerance_leave_the_verdict_to_the_ratios() -> None:
    # One head-only throttled round of 40 (2.5 %, within the 10 % tolerance): the other rounds measured the figure.
    cells = {"c": _energy_cell(10, lambda pair, r: "head" if (pair, r) == (3, 1) else None, 4)}
    assert judge_cells(ENERGY_RULES, cells, final=True)["verdict"] == "no regression"
    assert "throttled" not in _verdict(cells["c"], "train_j_per_sample")


def test_readings_invalid_alike_for_other_reasons_or_without_a_meter_change_nothing() -> None:
    def alike(pair: int, r: int) -> str | None:
        return (None, "head", "base", "both")[(pair + r) % 4]

    cells = {"c": _energy_cell(8, alike, 4)}
    assert judge_cells(ENERGY_RULES, cells, final=True)["verdict"] == "no regression"
    assert "throttled" not in _verdict(cells["c"], "train_j_per_sample")
    base_worse = {"c": _energy_cell(6, lambda pair, r: "base")}  # the base's throttling is not the head's regression
    judge_cells(ENERGY_RULES, base_worse, final=True)
    assert all("throttled" not in v for v in base_worse["c"]["verdicts"])
    # A much faster head whose windows fall below the meter's update period: invalid, but not throttled.
    short = _energy_cell(6, lambda pair, r: None)
    for r in short["rounds"]:
        r["head"]["energy"] = _SHORT
    judge_cells(ENERGY_RULES, {"c": short}, final=True)
    assert all("throttled" not in v and v["verdict"] == "no regression" for v in short["verdicts"])
    for energy in (_NO_METER, None):
        no_meter = _energy_cell(5, lambda pair, r: None)
        for r in no_meter["rounds"]:
            r["head"]["energy"] = r["base"]["energy"] = energy
        cells = {"c": no_meter}
        judged = judge_cells(ENERGY_RULES, cells, final=True)
        assert [v["figure"] for v in cells["c"]["verdicts"]] == ["train_samples_per_s"]  # energy: not measured
        assert judged["verdict"] == "no regression"


def test_the_sign_test_is_the_binomial_tail_counted_by_enumeration() -> None:
    import itertools

    from pytest_longeff.ab.judge import sign_test

    for n in range(0, 11):
        outcomes = list(itertools.product((0, 1), repeat=n))
        for k in range(0, n + 1):
            assert sign_test(k, n) == pytest.approx(sum(sum(o) >= k for o in outcomes) / len(outcomes))


def test_a_saved_report_shows_and_rejudges_the_throttled_readings(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    report = _report({"c": _energy_cell(8, lambda pair, r: "head")})
    report.update(judge_cells(ENERGY_RULES, report["cells"], final=True))  # as a job gating energy judged it
    path = tmp_path / "ab.json"
    path.write_text(json.dumps(report))
    assert show(path) == 0
    out = capsys.readouterr().out
    assert "train_j_per_sample" in out and "in 16 of 16 rounds" in out
    assert compare([str(path), "--fail-on", "train_j_per_sample:10%"]) == 1  # judged again from the rounds
    # A duet report: both sides ran at once under one device-wide meter, so energy is not judged again either.
    path.write_text(json.dumps({**report, "plan": {"schedule": "duet"}}))
    assert compare([str(path), "--fail-on", "train_j_per_sample:10%,train_samples_per_s:10%"]) == 0

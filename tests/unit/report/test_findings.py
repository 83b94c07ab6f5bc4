from __future__ import annotations

from typing import Any

import pytest

from pytest_longeff.report.findings import (
    MIN_REL_COST,
    MIN_SCORE_POINTS,
    RANDOM_INIT_REASON,
    Finding,
    accuracy_meaningful,
    accuracy_words,
    cell_meaning,
    claim_line,
    cost_sign,
    findings,
    score_sign,
    terminal_lines,
)

LED_CLAIM, ROUTE_CLAIM, SPEED_CLAIM, QA_CLAIM = "LED", "for summarization", "a bigger model", "for QA"


def _cell(family: str, size: str, seq_len: int, task: str, score: float, train: float, infer: float | None = None,
          *, profile: str = "paper", energy: bool = False, batch: int = 1, tput: float = 1.0,
          ci: tuple[float, float] | None = None, **extra: Any) -> dict[str, Any]:
    """A passed cell; ``train``/``infer`` are joules when ``energy`` else seconds (the other figure is 1.0)."""
    infer = train if infer is None else infer

    def window(cost: float) -> dict[str, Any]:
        return {"time_s": 1.0 if energy else cost, "energy_j": cost if energy else None, "energy_valid": energy}

    stats = {"n": 5, "median": tput, "ci95": list(ci)} if ci is not None else None
    return {"family": family, "size": size, "seq_len": seq_len, "task": task, "status": "passed",
            "profile": profile, "batch_size": batch, "accuracy": {"score": score}, "train": window(train),
            "inference": {**window(infer), "samples_per_s": tput, "samples_per_s_stats": stats}, **extra}


def _finding(records: list[dict[str, Any]], prefix: str) -> Finding:
    (found,) = [f for f in findings(records) if f.claim.startswith(prefix)]
    return found


# -- the rules' building blocks -----------------------------------------------------------------------------------
def test_noise_thresholds_make_small_differences_ties() -> None:
    assert (MIN_SCORE_POINTS, MIN_REL_COST) == (1.0, 0.05)
    assert [score_sign(30.0, 29.1), score_sign(30.0, 29.0), score_sign(20.0, 30.0)] == [0, 1, -1]
    # relative to the larger: |1.0 - 1.04| / 1.04 = 3.8 % is a tie, |1.0 - 1.06| / 1.06 = 5.7 % is not
    assert [cost_sign(1.0, 1.04), cost_sign(1.0, 1.06), cost_sign(2.0, 1.0), cost_sign(0.0, 0.0)] == [0, 1, -1, 0]


def test_accuracy_is_meaningful_for_paper_or_by_the_records_own_flag() -> None:
    assert accuracy_meaningful({"profile": "paper"}) and not accuracy_meaningful({"profile": "tiny"})
    assert not accuracy_meaningful({"profile": "dims"}) and not accuracy_meaningful({})
    assert accuracy_meaningful({"profile": "tiny", "accuracy_meaningful": True})
    assert not accuracy_meaningful({"profile": "paper", "accuracy_meaningful": False})


# -- LED vs Big Bird: each verdict path -----------------------------------------------------------------------------
def test_led_beats_bigbird_holds_when_it_scores_higher_for_less() -> None:
    f = _finding([_cell("led", "base", 1024, "qasper", 30, 1.0), _cell("bigbird", "base", 1024, "qasper", 20, 2.0)],
                 LED_CLAIM)
    assert (f.verdict, f.pairs, f.support, f.against, f.ties) == ("holds", 1, 1, 0, 0)
    assert f.cost == ("training: wall time (s; energy not valid in every compared cell); "
                      "inference: wall time (s; energy not valid in every compared cell)")
    assert "1 compared: 1 for, 0 against" in f.evidence and "within 1 point" in f.evidence and "5%" in f.evidence


def test_led_beats_bigbird_does_not_hold_when_it_scores_lower_for_more() -> None:
    f = _finding([_cell("led", "base", 1024, "qasper", 20, 2.0), _cell("bigbird", "base", 1024, "qasper", 30, 1.0)],
                 LED_CLAIM)
    assert (f.verdict, f.support, f.against) == ("does not hold", 0, 1)


def test_one_pair_for_and_one_against_is_mixed() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0), _cell("bigbird", "base", 1024, "qasper", 20, 2.0),
               _cell("led", "base", 2048, "qasper", 20, 2.0), _cell("bigbird", "base", 2048, "qasper", 30, 1.0)]
    f = _finding(records, LED_CLAIM)
    assert (f.verdict, f.pairs, f.support, f.against) == ("mixed", 2, 1, 1)


def test_differences_within_noise_are_ties_and_only_ties_cannot_tell() -> None:
    # 0.5 point < 1 point; 1.04 s vs 1.0 s is 3.8 % < 5 %: every figure tied
    f = _finding([_cell("led", "base", 1024, "qasper", 30.5, 1.04),
                  _cell("bigbird", "base", 1024, "qasper", 30.0, 1.0)], LED_CLAIM)
    assert (f.verdict, f.pairs, f.ties) == ("cannot tell", 1, 1)
    assert "within noise in 1" in f.evidence


def test_random_init_weights_are_not_judged_on_accuracy() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0, profile="tiny"),
               _cell("bigbird", "base", 1024, "qasper", 20, 2.0, profile="tiny")]
    f = _finding(records, LED_CLAIM)
    assert (f.verdict, f.pairs, f.support) == ("not judged", 1, 0) and not f.decided
    assert f.evidence.startswith(RANDOM_INIT_REASON) and "2 of 2 compared cells, profile tiny" in f.evidence
    # a tiny profile with pretrained checkpoints opts in through its records
    opted = [{**r, "accuracy_meaningful": True} for r in records]
    assert _finding(opted, LED_CLAIM).verdict == "holds"


def test_training_and_inference_energy_are_compared_separately_never_summed() -> None:
    # LED: 35 points, 100 J training, 60 J inference; Big Bird: 30 points, 200 J, 50 J.
    # Summed, LED costs 160 J < 250 J and the claim would "hold"; separately LED is cheaper to train (100 < 200)
    # but dearer to run (60 vs 50 J: 16.7 % > 5 %), so the pair's figures disagree: mixed.
    f = _finding([_cell("led", "base", 1024, "gov_report", 35, 100.0, 60.0, energy=True),
                  _cell("bigbird", "base", 1024, "gov_report", 30, 200.0, 50.0, energy=True)], LED_CLAIM)
    assert (f.verdict, f.support, f.against, f.ties) == ("mixed", 0, 0, 0)
    assert f.cost == "training: energy (J); inference: energy (J)"
    assert "train cost LED lower in 1, higher in 0" in f.evidence
    assert "inference cost LED lower in 0, higher in 1" in f.evidence


def test_each_window_uses_energy_only_where_every_compared_cell_measured_it() -> None:
    led = _cell("led", "base", 1024, "qasper", 30, 100.0, energy=True)
    bigbird = _cell("bigbird", "base", 1024, "qasper", 20, 200.0, energy=True)
    bigbird["inference"] = {**bigbird["inference"], "energy_j": None, "energy_valid": False}
    f = _finding([led, bigbird], LED_CLAIM)
    # inference falls back to wall time, 1.0 s in both cells: a tie there, LED better on score and training energy
    assert f.cost == "training: energy (J); inference: wall time (s; energy not valid in every compared cell)"
    assert (f.verdict, f.support) == ("holds", 1)


# -- bigger model vs longer input -----------------------------------------------------------------------------------
def _route(start: float, longer: float, bigger: float, costs: tuple[float, float, float] = (1.0, 3.0, 2.0),
           infer: tuple[float, float, float] | None = None, profile: str = "paper") -> Finding:
    infer = infer or costs
    return _finding([_cell("led", "base", 1024, "gov_report", start, costs[0], infer[0], profile=profile),
                     _cell("led", "base", 2048, "gov_report", longer, costs[1], infer[1], profile=profile),
                     _cell("led", "large", 1024, "gov_report", bigger, costs[2], infer[2], profile=profile)],
                    ROUTE_CLAIM)


def test_bigger_model_is_the_cheaper_route_when_it_buys_more_per_extra_cost() -> None:
    # bigger: +4 points for +1 s = 4 points/s; longer: +2 points for +2 s = 1 point/s (training and inference)
    f = _route(10, 12, 14)
    assert (f.verdict, f.pairs, f.support) == ("holds", 1, 1)


def test_longer_input_only_gaining_accuracy_goes_against_the_claim() -> None:
    f = _route(10, 15, 10.5)  # bigger +0.5 (noise), longer +5
    assert (f.verdict, f.against) == ("does not hold", 1)


def test_neither_route_gaining_accuracy_cannot_tell() -> None:
    f = _route(10, 10.5, 10.9)  # +0.5 and +0.9: both under 1 point, nothing to rank
    assert (f.verdict, f.pairs, f.ties) == ("cannot tell", 1, 1)
    assert "neither route gained 1 point or more in 1" in f.evidence


def test_route_ranked_differently_by_training_and_inference_cost_is_mixed() -> None:
    # gains: bigger +4, longer +2. Training extra: bigger 1 s, longer 2 s -> 4 vs 1 point/s (bigger wins).
    # Inference extra: bigger 4 s, longer 1 s -> 1 vs 2 points/s (longer wins).
    f = _route(10, 12, 14, costs=(1.0, 3.0, 2.0), infer=(1.0, 2.0, 5.0))
    assert (f.verdict, f.support, f.against) == ("mixed", 0, 0)


def test_route_claim_is_not_judged_on_random_weights() -> None:
    assert _route(10, 12, 14, profile="dims").verdict == "not judged"


# -- inference speed: scope and intervals ---------------------------------------------------------------------------
def _speed(task: str, base: float, large: float, base_ci: tuple[float, float] | None = None,
           large_ci: tuple[float, float] | None = None) -> Finding:
    return _finding([_cell("led", "base", 1024, task, 0, 1.0, profile="tiny", tput=base, ci=base_ci),
                     _cell("led", "large", 1024, task, 0, 1.0, profile="tiny", tput=large, ci=large_ci)],
                    SPEED_CLAIM)


def test_speed_claim_holds_without_intervals_beyond_the_minimum_effect() -> None:
    f = _speed("gov_report", 4.0, 1.0)  # not accuracy-based: judged even on random weights
    assert (f.verdict, f.pairs, f.support) == ("holds", 1, 1) and "ratio median 4.00" in f.evidence
    assert _speed("gov_report", 4.0, 3.9).verdict == "cannot tell"  # 2.5 % < 5 %


def test_speed_claim_uses_the_intervals_where_both_cells_have_them() -> None:
    overlapping = _speed("gov_report", 4.0, 3.0, (3.0, 5.0), (2.5, 3.5))  # 25 % apart, but 3.0..3.5 overlaps
    assert (overlapping.verdict, overlapping.ties) == ("cannot tell", 1)
    assert "1 of 1 pairs by 95% intervals" in overlapping.evidence
    apart = _speed("gov_report", 4.0, 3.0, (3.8, 4.2), (2.8, 3.2))
    assert apart.verdict == "holds"
    faster = _speed("gov_report", 3.0, 4.0, (2.8, 3.2), (3.8, 4.2))
    assert faster.verdict == "does not hold"


def test_speed_claim_is_about_summarization_only() -> None:
    f = _speed("qasper", 4.0, 1.0)
    assert (f.verdict, f.pairs) == ("cannot tell", 0) and f.scope.startswith("summarization")


# -- QA: smaller model ------------------------------------------------------------------------------------------------
def test_qa_smaller_model_wins_with_bigger_batches() -> None:
    f = _finding([_cell("led", "base", 1024, "qasper", 20, 1.0, batch=8),
                  _cell("led", "large", 1024, "qasper", 15, 3.0, batch=2)], QA_CLAIM)
    assert (f.verdict, f.pairs) == ("holds", 1) and "base's batch larger in 1 of 1" in f.evidence
    assert f.scope.startswith("QA tasks")


def test_qa_claim_ignores_summarization_pairs() -> None:
    f = _finding([_cell("led", "base", 1024, "gov_report", 20, 1.0), _cell("led", "large", 1024, "gov_report", 15,
                                                                            3.0)], QA_CLAIM)
    assert (f.verdict, f.pairs) == ("cannot tell", 0)


# -- records and the report ----------------------------------------------------------------------------------------
def test_skipped_cells_are_not_evidence() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0),
               {**_cell("bigbird", "base", 1024, "qasper", 0, 9.0), "status": "skipped"}]
    assert [f.verdict for f in findings(records)] == ["cannot tell"] * 4


@pytest.mark.parametrize("prefix", [LED_CLAIM, ROUTE_CLAIM, SPEED_CLAIM, QA_CLAIM])
def test_to_dict_keeps_the_printed_fields_and_adds_the_evidence_fields(prefix: str) -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0), _cell("bigbird", "base", 1024, "qasper", 20, 2.0)]
    d = _finding(records, prefix).to_dict()
    assert list(d) == ["claim", "verdict", "evidence", "cost", "pairs", "ties", "support", "against", "scope",
                       "thresholds"]
    assert d["thresholds"] == {"score_points": 1.0, "relative_cost": 0.05}
    assert d["claim"].startswith(prefix) and isinstance(d["pairs"], int)


# -- the terminal: one line per claim ---------------------------------------------------------------------------------
def _decided_matrix() -> list[dict[str, Any]]:
    return [_cell("led", "base", 1024, "qasper", 30, 1.0, batch=8), _cell("bigbird", "base", 1024, "qasper", 20, 2.0),
            _cell("led", "large", 1024, "qasper", 20, 2.0, batch=2)]


@pytest.mark.parametrize("form", ["objects", "dicts"])
def test_terminal_lines_are_one_line_per_claim_with_verdict_and_counts(form: str) -> None:
    found = findings(_decided_matrix())
    lines = terminal_lines(found if form == "objects" else [f.to_dict() for f in found])
    assert len(lines) == 1 + len(found) and "session.findings" in lines[0] and "HTML page" in lines[0]
    for f, line in zip(found, lines[1:], strict=True):
        assert line.strip().startswith(f"{f.verdict}: ") and len(line) <= 120, line
        assert f.evidence not in line and f.scope not in line  # the detail stays in the JSON and on the page
    led = next(line for line in lines if "LED beats Big Bird" in line)
    assert led.strip() == ("holds: LED beats Big Bird on accuracy at lower energy (1 compared: 1 for, 0 against, "
                           "0 within noise)")
    assert "cannot tell: a bigger model makes inference much slower (no comparable cells)" in lines[3]
    assert claim_line(found[0]) == claim_line(found[0].to_dict())


def test_terminal_lines_of_a_matrix_that_decides_nothing_are_one_line() -> None:
    random = [{**r, "profile": "tiny"} for r in _decided_matrix()]
    (line,) = terminal_lines(findings(random))
    assert line == ("  the seed study's findings: these cells cannot tell (2 cannot tell, 2 not judged; evidence in "
                    "the JSON's session.findings and on the HTML page)")
    not_judged = next(f for f in findings(random) if f.verdict == "not judged")
    assert claim_line(not_judged).endswith("(random-init weights: 1 comparison(s) not made)")


# -- what the scores mean, in the records' words ----------------------------------------------------------------------
def test_accuracy_words_follow_the_records_weights() -> None:
    from pytest_longeff.profiles import PROFILES, TINY_PRETRAINED_MEANING

    pretrained = [{"profile": "tiny", "family": "led", "size": "base", "accuracy_meaning": TINY_PRETRAINED_MEANING,
                   "accuracy_meaningful": True}]
    random = [{"profile": "tiny", "family": "bigbird", "size": "large",
               "accuracy_meaning": PROFILES["tiny"].accuracy_meaning, "accuracy_meaningful": False}]
    assert accuracy_words(pretrained) == f"tiny profile: {TINY_PRETRAINED_MEANING}"
    assert cell_meaning(pretrained[0]) == (True, TINY_PRETRAINED_MEANING)
    words = accuracy_words(random)
    assert "random-init" in words and "not the study's models" in words and "pretrained" not in words
    both = accuracy_words(pretrained * 3 + random)
    assert "[led-base: 3 of 4 cells]" in both and "[bigbird-large: 1 of 4 cells]" in both
    old = {"profile": "tiny", "family": "led", "size": "base"}  # an older record: its profile's words
    assert accuracy_words([old]) == accuracy_words(random) and accuracy_words([]) == ""
    assert accuracy_words([{"profile": "paper"}]).startswith("paper profile: the study reproduced: pretrained")

from __future__ import annotations

from typing import Any

from pytest_longeff.findings import findings


def _cell(family: str, size: str, seq_len: int, task: str, score: float, time_s: float, batch: int = 1,
          infer_tput: float = 1.0) -> dict[str, Any]:
    return {"family": family, "size": size, "seq_len": seq_len, "task": task, "status": "passed",
            "batch_size": batch, "accuracy": {"score": score},
            "train": {"time_s": time_s, "energy_j": None, "energy_valid": False},
            "inference": {"time_s": 0.0, "energy_j": None, "energy_valid": False, "samples_per_s": infer_tput}}


def test_led_beats_bigbird_when_it_scores_higher_for_less() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0), _cell("bigbird", "base", 1024, "qasper", 20, 2.0)]
    (led,) = [f for f in findings(records) if f.claim.startswith("LED")]
    assert led.verdict == "holds" and "1 of 1" in led.evidence and "wall time" in led.evidence


def test_bigger_model_vs_longer_input_compares_score_per_extra_cost() -> None:
    records = [
        _cell("led", "base", 1024, "gov_report", 10, 1.0),
        _cell("led", "base", 2048, "gov_report", 12, 3.0),  # +2 points for +2 s: 1 point/s
        _cell("led", "large", 1024, "gov_report", 14, 2.0),  # +4 points for +1 s: 4 points/s
    ]
    (f,) = [f for f in findings(records) if f.claim.startswith("for summarization")]
    assert f.verdict == "holds" and "1 of 1" in f.evidence


def test_unchanged_scores_leave_the_route_comparison_undecided() -> None:
    records = [_cell("led", "base", 1024, "gov_report", 0, 1.0), _cell("led", "base", 2048, "gov_report", 0, 3.0),
               _cell("led", "large", 1024, "gov_report", 0, 2.0)]
    (f,) = [f for f in findings(records) if f.claim.startswith("for summarization")]
    assert f.verdict == "cannot tell" and "1 undecided" in f.evidence


def test_qa_smaller_model_and_inference_speed() -> None:
    records = [_cell("led", "base", 1024, "qasper", 20, 1.0, batch=8, infer_tput=4.0),
               _cell("led", "large", 1024, "qasper", 15, 3.0, batch=2, infer_tput=1.0)]
    qa = next(f for f in findings(records) if f.claim.startswith("for QA"))
    slower = next(f for f in findings(records) if f.claim.startswith("a bigger model"))
    assert qa.verdict == "holds" and "batch was at least as large in 1 of 1" in qa.evidence
    assert slower.verdict == "holds" and "ratio median 4.00" in slower.evidence


def test_skipped_cells_are_not_evidence() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0), {**_cell("bigbird", "base", 1024, "qasper", 0, 9),
                                                               "status": "skipped"}]
    assert all(f.verdict == "cannot tell" for f in findings(records))

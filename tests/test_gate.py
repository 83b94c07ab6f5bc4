from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_longeff.gate import (
    METRICS,
    Rule,
    check,
    gate_failures,
    gate_record,
    machine_mismatch,
    parse_fail_on,
)


def _rec(tput: float | None = 10.0, ci: list[float] | None = None, energy: float | None = None,
         method: str = "nvml", n: int = 5) -> dict[str, object]:
    return {
        "id": "led-base-1024-qasper", "status": "passed",
        "train": {"samples_per_s_stats": {"median": tput, "ci95": ci, "n": n}, "energy_j": energy,
                  "energy_method": method},
        "inference": {"j_per_sample": energy, "energy_method": method},
    }


def test_parse_fail_on() -> None:
    rules = parse_fail_on("inference_j_per_sample:10%, train_samples_per_s:2.5%")
    assert [(r.metric.name, r.tolerance) for r in rules] == [("inference_j_per_sample", 0.1),
                                                            ("train_samples_per_s", 0.025)]
    for bad, message in (("speed:10%", "unknown metric 'speed'; accepted: train_samples_per_s"),
                         ("score:10", "expected metric:N%"), ("score:-5%", ">= 0"), ("", "metric:N%")):
        with pytest.raises(ValueError, match=message):
            parse_fail_on(bad)


def test_direction_comes_from_the_metric() -> None:
    tput = Rule(METRICS["train_samples_per_s"], 0.1)
    assert check(tput, _rec(10.0), _rec(8.0)).fails()  # throughput down 20 %: worse
    assert not check(tput, _rec(10.0), _rec(12.0)).fails()  # up: better
    energy = Rule(METRICS["train_energy_j"], 0.1)
    assert check(energy, _rec(energy=100.0), _rec(energy=120.0)).fails()  # energy up: worse
    assert not check(energy, _rec(energy=100.0), _rec(energy=80.0)).fails()


def test_message_shows_baseline_current_change_and_tolerance() -> None:
    c = check(Rule(METRICS["train_samples_per_s"], 0.1), _rec(10.0), _rec(8.0))
    assert c.message().startswith("train_samples_per_s: baseline 10, current 8, change -20.0%, tolerance 10%")


def test_overlapping_intervals_are_noise_and_separated_ones_a_regression() -> None:
    rule = Rule(METRICS["train_samples_per_s"], 0.1)
    base = _rec(10.0, ci=[9.0, 11.0])
    # Tolerated value: the baseline's worst case 9.0 less 10 % = 8.1.
    noisy = check(rule, base, _rec(8.0, ci=[6.0, 9.5]))
    assert noisy.status == "within_noise" and not noisy.fails()
    assert check(rule, base, _rec(7.5, ci=[7.0, 8.0])).fails()
    # Too few samples for an interval: the point values decide.
    few = check(rule, _rec(10.0, ci=[9.0, 11.0], n=2), _rec(8.0, ci=[6.0, 9.5], n=2))
    assert few.fails() and "single values" in few.note


def test_a_zero_baseline_is_compared_by_value() -> None:
    rule = Rule(METRICS["score"], 0.05)
    zero = {"accuracy": {"score": 0.0}}
    assert check(rule, zero, {"accuracy": {"score": 0.0}}).status == "passed"
    assert check(rule, zero, {"accuracy": {"score": 3.0}}).status == "passed"


def test_other_settings_are_refused() -> None:
    base = {"machine": {}, "settings": {"profile": "tiny", "train_budget": {"spec": "steps=4"}}, "records": [_rec()]}
    gate = gate_record(parse_fail_on("score:5%"), base, _rec(), {}, "b.json",
                       {"profile": "tiny", "train_budget": {"spec": "steps=8"}})
    assert "train_budget 'steps=4' vs 'steps=8'" in gate["refused"]


def test_unmeasured_and_estimated_figures_are_never_gated() -> None:
    rule = Rule(METRICS["train_energy_j"], 0.1)
    assert check(rule, _rec(energy=None, method="none"), _rec(energy=None, method="none")).status == "unmeasured"
    assert check(rule, _rec(energy=1.0, method="estimate"), _rec(energy=9.0, method="estimate")).status == \
        "not_gated"
    assert check(rule, _rec(energy=1.0, method="nvml"), _rec(energy=9.0, method="rapl")).status == "not_gated"


def test_other_machines_are_refused() -> None:
    base = {"machine": {"device": "cuda:0", "accelerator": "H100", "torch": "2.13"}, "records": [_rec()]}
    same = gate_record(parse_fail_on("score:5%"), base, _rec(), {"device": "cuda:1", "accelerator": "H100",
                                                                "torch": "2.13"}, "b.json")
    assert same["refused"] is None
    other = gate_record(parse_fail_on("score:5%"), base, _rec(), {"device": "cuda", "accelerator": "H200",
                                                                 "torch": "2.13"}, "b.json")
    assert "accelerator 'H100' vs 'H200'" in other["refused"] and gate_failures(other)
    assert machine_mismatch({"cpu": "x"}, {"cpu": "x"}) is None


@given(base=st.floats(0.1, 1e6), factor=st.floats(0.0, 10.0), tol=st.floats(0.0, 1.0))
def test_a_check_fails_exactly_when_worse_beyond_tolerance(base: float, factor: float, tol: float) -> None:
    rule = Rule(METRICS["train_samples_per_s"], tol)
    result = check(rule, _rec(base), _rec(base * factor))
    worse_by = (base - base * factor) / base
    assert result.fails() == (worse_by > tol)

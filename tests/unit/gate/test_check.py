"""Unit tests of the gate's pure functions (``gate.check`` and ``gate.suite``) on hand-built
records: exact notes, messages and boundaries, so mutation testing sees every branch (docs/validation/mutation.md).

Expected values are worked out by hand or by a second, independent formula in the test (``statistics.NormalDist``
for the normal distribution, ``statistics.fmean``/``stdev`` for the suite rule), never by calling the code under
test again."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_longeff.gate.acknowledge import Ack
from pytest_longeff.gate.check import (
    Check,
    Gate,
    Rule,
    _interval,
    _intervals_apart,
    acknowledge,
    baseline_record,
    batch_regression,
    check,
    gate_failures,
    gate_record,
    judge_run,
    lost_cells,
    pair,
    parse_fail_on,
    refusal,
    settings_mismatch,
)
from pytest_longeff.gate.suite import (
    Drift,
    Pair,
    PairVerdict,
    RunVerdict,
    SuiteVerdict,
    _reference,
    benjamini_hochberg,
    drift,
    fdr_verdicts,
    log_se,
    p_beyond,
    suite_verdict,
    suite_verdicts,
    terminal_lines,
    threshold,
    torch_settings_differ,
    worse_log_ratio,
)
from pytest_longeff.record.figures import GATED, figure

TPUT = GATED["train_samples_per_s"]  # higher is better, with an interval, samples/s
LAT = GATED["inference_latency_p50_s"]  # lower is better, with an interval, s
ENERGY = GATED["train_energy_j"]  # lower is better, energy-qualified
SCORE = GATED["score"]  # higher is better, no interval
TWO_Z = 2 * 1.959963984540054
PHI = statistics.NormalDist().cdf
ACCEPTED = (", ".join(["score", "train_samples_per_s", "train_energy_j", "train_samples_per_kj",
                       "train_peak_memory_bytes", "inference_samples_per_s", "inference_latency_p50_s",
                       "inference_energy_j", "inference_j_per_sample", "inference_peak_memory_bytes", "work"])
            + ", window_<name>_{time_s,energy_j,energy_net_j,peak_memory_bytes}")
SMALL_REPORT = Path(__file__).resolve().parents[2] / "support" / "data" / "report_small.json"


def near(expected: Any) -> Any:
    """``pytest.approx``, typed to stand in for a float in a dataclass compared with ``==``."""
    return pytest.approx(expected)


def tput(median: float | None, ci: list[float] | None | str = "tight", n: int = 5, cell: str = "c", batch: int = 2,
         status: str = "passed", **extra: Any) -> dict[str, Any]:
    """A record with a train throughput; its 95 % CI is +-1 % unless given (None: no interval)."""
    if ci == "tight":
        ci = None if median is None else [median * 0.99, median * 1.01]
    return {"id": cell, "status": status, "batch_size": batch,
            "train": {"samples_per_s_stats": {"median": median, "ci95": ci, "n": n}}, **extra}


def energy(j: float | None, method: Any = "rapl", coarse: bool | None = None, bound: float | None = None
           ) -> dict[str, Any]:
    return {"id": "c", "status": "passed", "batch_size": 2,
            "train": {"energy_j": j, "energy_method": method, "energy_coarse": coarse, "energy_uncertainty_j": bound}}


def ref(ops: float, ci: list[float] | None = None, method: str = "m") -> dict[str, Any]:
    return {"ops_per_s": ops, "method": method, **({"stats": {"ci95": ci, "n": 14}} if ci else {})}


# -- parsing -----------------------------------------------------------------------------------------------------
def test_parse_fail_on_skips_empty_items_and_accepts_zero() -> None:
    rules = parse_fail_on(" , score:12.5% ,, train_samples_per_s:0% ,")
    assert [(r.metric.name, r.tolerance) for r in rules] == [("score", 0.125), ("train_samples_per_s", 0.0)]
    assert rules[0].metric is SCORE and parse_fail_on("score:5%")[0] == Rule(SCORE, 0.05)


@pytest.mark.parametrize(("text", "message"), [
    ("speed:5%", f"unknown metric 'speed'; accepted: {ACCEPTED}"),
    ("score", "expected metric:N% (e.g. score:10%), got 'score'"),
    ("score:5", "expected metric:N% (e.g. score:10%), got 'score:5'"),
    ("score:50", "expected metric:N% (e.g. score:10%), got 'score:50'"),
    ("score:abc%", "expected metric:N% (e.g. score:10%), got 'score:abc%'"),
    ("score:5%:3%", "expected metric:N% (e.g. score:10%), got 'score:5%:3%'"),
    ("score:-5%", "tolerance must be a percentage >= 0, got '-5%'"),
    ("score:inf%", "tolerance must be a percentage >= 0, got 'inf%'"),
    ("score:nan%", "tolerance must be a percentage >= 0, got 'nan%'"),
    ("", f"expected metric:N% items separated by commas; metrics: {ACCEPTED}"),
    (" , ", f"expected metric:N% items separated by commas; metrics: {ACCEPTED}"),
])
def test_parse_fail_on_errors_word_for_word(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_fail_on(text)
    assert str(raised.value) == message
    assert raised.value.__cause__ is None


def test_figure_and_rule_applies() -> None:
    assert figure("score") is SCORE and figure("nothing") is None
    (win,) = parse_fail_on("window_decode_time_s:5%")
    assert win.applies({"windows": {"decode": {}}})  # an empty section still measures the window
    assert not win.applies({"windows": {"other": {"time_s": 1.0}}})
    assert not win.applies({"kind": "window"})
    cell = Rule(SCORE, 0.05)
    assert cell.applies({}) and cell.applies({"kind": "cell"}) and not cell.applies({"kind": "window"})


# -- Check -------------------------------------------------------------------------------------------------------
def test_check_message_to_dict_and_fails() -> None:
    c = Check("m", "failed", None, 2.5, None, 0.05, "why")
    assert c.message() == "m: baseline n/a, current 2.5, change n/a, tolerance 5% for the worse (failed; why)"
    d = Check("m", "passed", 1234.5678, 0.0001234, -0.1234, 0.1, "ok")
    assert d.message() == ("m: baseline 1235, current 0.0001234, change -12.3%, tolerance 10% for the worse "
                           "(passed; ok)")
    assert d.to_dict() == {"metric": "m", "status": "passed", "baseline": 1234.5678, "current": 0.0001234,
                           "change": -0.1234, "tolerance": 0.1, "note": "ok"}
    assert c.fails() and not d.fails()
    for status in ("inconclusive", "unmeasured", "not_gated", "acknowledged"):
        assert not Check("m", status, 1.0, 1.0, 0.0, 0.1, "").fails()


def test_interval_needs_two_numbers_and_three_samples() -> None:
    def stats(ci: Any, n: Any) -> dict[str, Any]:
        return {"train": {"samples_per_s_stats": {"ci95": ci, "n": n}}}

    got = _interval(stats([1, 2], 3), TPUT)
    assert got == (1.0, 2.0) and all(type(v) is float for v in got)
    assert _interval(stats((1.5, 2.5), 9), TPUT) == (1.5, 2.5)
    for ci, n in (([1, 2], 2), ([1, 2], 3.0), ([1, 2], None), ([1, 2, 3], 5), ([1], 5), (["1", 2], 5),
                  ([1, "2"], 5), (None, 5), ("12", 5)):
        assert _interval(stats(ci, n), TPUT) is None, (ci, n)
    assert _interval({"accuracy": {"score": 1.0, "ci95": [1, 2], "n": 5}}, SCORE) is None  # no ci_path


def test_intervals_apart_at_their_boundaries() -> None:
    # Higher is better: the current high end against the baseline's low end x (1 - 0.5).
    assert not _intervals_apart(TPUT, 0.5, (10.0, 12.0), (1.0, 5.0))
    assert _intervals_apart(TPUT, 0.5, (10.0, 12.0), (1.0, 4.999))
    assert not _intervals_apart(TPUT, 0.5, (10.0, 20.0), (1.0, 6.0))
    # Lower is better: the current low end against the baseline's high end x (1 + 0.5).
    assert not _intervals_apart(LAT, 0.5, (8.0, 10.0), (15.0, 20.0))
    assert _intervals_apart(LAT, 0.5, (8.0, 10.0), (15.001, 20.0))
    assert not _intervals_apart(LAT, 0.5, (8.0, 10.0), (14.0, 20.0))


# -- check -------------------------------------------------------------------------------------------------------
def test_energy_checks_that_are_never_gated() -> None:
    rule = Rule(ENERGY, 0.1)
    est = check(rule, energy(1.0, "estimate"), energy(9.0, "rapl"))
    assert est == Check("train_energy_j", "not_gated", 1.0, 9.0, None, 0.1,
                        "energy from the 'estimate' model is never gated")
    assert check(rule, energy(1.0, "nvml"), energy(9.0, "rapl")) == Check(
        "train_energy_j", "not_gated", 1.0, 9.0, None, 0.1, "energy methods differ (nvml, rapl)")
    assert check(rule, energy(1.0, None), energy(9.0, "rapl")).note == "energy methods differ (None, rapl)"
    coarse = "coarse energy reading (window shorter than 10 counter update periods) is never gated"
    for base, cur in ((energy(1.0, coarse=True), energy(9.0)), (energy(1.0), energy(9.0, coarse=True))):
        assert check(rule, base, cur) == Check("train_energy_j", "not_gated", 1.0, 9.0, None, 0.1, coarse)
    assert check(rule, energy(1.0), energy(9.0)).status == "inconclusive"  # no error bar: cannot tell
    assert check(rule, energy(1.0, bound=0.01), energy(9.0, bound=0.09)).status == "failed"
    wide = check(rule, energy(1.0, bound=0.2), energy(1.05, bound=0.2))
    assert wide.status == "not_gated" and "error bar (±20.0%) exceeds the tolerance" in wide.note
    invalid = energy(1.0)
    invalid["train"].update(energy_j=None, energy_valid=False, energy_note="throttled: SW power cap")
    failed = check(rule, energy(1.0), invalid)
    assert failed.status == "failed" and "invalid now (throttled: SW power cap)" in failed.note


def test_window_energy_method_is_read_beside_the_window() -> None:
    (rule,) = parse_fail_on("window_decode_energy_j:10%")

    def win(j: float, method: str) -> dict[str, Any]:
        return {"kind": "window", "windows": {"decode": {"energy_j": j, "energy_method": method}}}

    assert check(rule, win(1.0, "estimate"), win(1.0, "estimate")).status == "not_gated"
    assert check(rule, win(1.0, "rapl"), win(1.0, "nvml")).note == "energy methods differ (nvml, rapl)"
    assert check(rule, win(1.0, "rapl"), win(2.0, "rapl")).status == "inconclusive"  # no error bar on either
    coarse = win(2.0, "rapl")
    coarse["windows"]["decode"]["energy_coarse"] = True
    assert check(rule, win(1.0, "rapl"), coarse) == Check(
        "window_decode_energy_j", "not_gated", 1.0, 2.0, None, 0.1,
        "coarse energy reading (window shorter than 10 counter update periods) is never gated")


def test_batch_sizes_and_unmeasured_figures() -> None:
    rule = Rule(TPUT, 0.1)
    c = check(rule, tput(10.0, batch=2), tput(10.0, batch=4))
    assert c == Check("train_samples_per_s", "not_gated", 10.0, 10.0, None, 0.1,
                      "batch sizes differ (2 vs 4): efficiency is not comparable")
    # The score does not depend on the batch size: compared anyway.
    score = {"batch_size": 2, "accuracy": {"score": 50.0}}
    assert check(Rule(SCORE, 0.1), score, {"batch_size": 4, "accuracy": {"score": 40.0}}).status == "failed"
    unmeasured = "not measured on one side: nothing to compare"
    assert check(rule, tput(None), tput(10.0)) == Check("train_samples_per_s", "unmeasured", None, 10.0, None, 0.1,
                                                        unmeasured)
    assert check(rule, tput(10.0), tput(None)) == Check("train_samples_per_s", "unmeasured", 10.0, None, None, 0.1,
                                                        unmeasured)


def test_zero_and_negative_baselines() -> None:
    by_value = "baseline is 0: compared by value"
    score = Rule(SCORE, 0.05)

    def s(v: float) -> dict[str, Any]:
        return {"accuracy": {"score": v}}

    assert check(score, s(0.0), s(-1.0)) == Check("score", "failed", 0.0, -1.0, None, 0.05, by_value)
    assert check(score, s(0.0), s(0.0)).status == "passed"
    assert check(score, s(0.0), s(1.0)) == Check("score", "passed", 0.0, 1.0, None, 0.05, by_value)
    rule = Rule(ENERGY, 0.1)
    assert check(rule, energy(0.0), energy(1.0)) == Check("train_energy_j", "failed", 0.0, 1.0, None, 0.1, by_value)
    assert check(rule, energy(0.0), energy(0.0)).status == "passed"
    assert check(rule, energy(0.0), energy(-1.0)).status == "passed"
    # A negative baseline: the change is relative to its magnitude (-10 -> -5 is +50 %, better for the score).
    c = check(score, s(-10.0), s(-5.0))
    assert c.status == "passed" and c.change == 0.5
    assert check(score, s(-10.0), s(-15.0)).change == -0.5


def test_tolerance_boundary_and_notes() -> None:
    rule = Rule(TPUT, 0.1)
    single = ("no interval from >= 3 samples on both sides: a change cannot be told from noise (measure more "
              "repeats, or compare side by side with `pytest-longeff ab`)")
    assert check(rule, tput(10.0, None), tput(9.0, None)) == Check("train_samples_per_s", "inconclusive", 10.0, 9.0,
                                                                   -0.1, 0.1, single)
    assert check(Rule(LAT, 0.1), {"inference": {"latency_s": {"stats": {"median": 10.0}}}},
                 {"inference": {"latency_s": {"stats": {"median": 11.0}}}}).status == "inconclusive"
    assert check(rule, tput(10.0, None), tput(8.0, None)) == Check("train_samples_per_s", "inconclusive", 10.0, 8.0,
                                                                   -0.2, 0.1, single)
    # An interval on one side only: no interval of the change.
    assert check(rule, tput(10.0, [9.0, 11.0]), tput(8.0, None)).note == single
    assert check(rule, tput(10.0, None), tput(8.0, [7.0, 9.0])).note == single
    noise = check(rule, tput(10.0, [9.0, 11.0]), tput(8.0, [7.0, 9.0]))
    assert noise.status == "inconclusive" and noise.note.endswith("current 95% CI [7, 9] vs baseline [9, 11]")
    assert "the intervals cannot resolve the tolerance" in noise.note
    tight = check(rule, tput(10.0, [9.9, 10.1]), tput(9.8, [9.7, 9.9]))
    assert tight.status == "passed" and tight.note.startswith("within tolerance at 95%")
    wide_but_within = check(rule, tput(10.0, [6.0, 14.0]), tput(9.8, [6.0, 14.0]))
    assert wide_but_within.status == "inconclusive"  # -2 %, but the intervals could hide -30 %: not "no regression"
    apart = check(rule, tput(10.0, [9.5, 10.5]), tput(7.0, [6.5, 7.5]))
    assert apart == Check("train_samples_per_s", "failed", 10.0, 7.0, near(-0.3), 0.1,
                          "intervals apart: current 95% CI [6.5, 7.5] vs baseline [9.5, 10.5]")


def test_drift_widens_the_corrected_interval_by_the_reference_noise() -> None:
    rule = Rule(TPUT, 0.1)
    base = tput(10.0, [9.0, 11.0], reference=ref(100.0, [99.0, 101.0]))
    cur = tput(7.0, [6.5, 7.5], reference=ref(85.0, [84.0, 86.0]))
    factor = 100.0 / 85.0
    se = math.hypot(math.log(101 / 99) / TWO_Z, math.log(86 / 84) / TWO_Z)
    w = math.exp(TWO_Z / 2 * se)
    lo, hi = 6.5 * factor / w, 7.5 * factor * w
    c = check(rule, base, cur)
    assert c.status == "inconclusive" and c.current == near(7.0 * factor)
    assert c.note.endswith(f"current 95% CI [{lo:.4g}, {hi:.4g}] vs "
                      f"baseline [9, 11]; drift-corrected by the machine-speed reference: x{factor:.3g} (machine at "
                      "0.85 of the baseline's reference speed)")
    assert f"[{lo:.4g}, {hi:.4g}]" == "[7.53, 8.961]"  # worked by hand (w = 1.0156), not the unwidened [7.647, 8.824]
    # References without intervals: the interval is scaled by the factor alone.
    c = check(rule, tput(10.0, [9.0, 11.0], reference=ref(100.0)), tput(7.0, [6.5, 7.5], reference=ref(85.0)))
    assert f"current 95% CI [{6.5 * factor:.4g}, {7.5 * factor:.4g}]" in c.note
    assert "[7.647, 8.824]" in c.note
    # A current value without an interval stays without one.
    c = check(rule, tput(10.0, [9.0, 11.0], reference=ref(100.0)), tput(7.0, None, reference=ref(85.0)))
    assert c.note.startswith("no interval from") and c.note.endswith("of the baseline's reference speed)")


# -- memory, settings, refusal, acknowledgements -------------------------------------------------------------------
def test_batch_regression() -> None:
    def found(n: Any) -> dict[str, Any]:
        return {"batch_search": {"searched_batch_size": n}}

    c = batch_regression({"batch_size": 4}, found(3))
    assert c == Check("batch_size", "failed", 4, 3, -0.25, 0.0, "the batch-size search now finds a smaller batch "
                      "under the same memory budget: a memory regression")
    for base, cur in (({"batch_size": 4}, found(4)), ({"batch_size": 4}, found(5)), ({"batch_size": 4.0}, found(2)),
                      ({"batch_size": 4}, found(2.0)), ({}, found(2)), ({"batch_size": 4}, {})):
        assert batch_regression(base, cur) is None


def test_running_out_of_memory_at_the_baselines_batch_is_a_memory_regression() -> None:
    """Guards an out-of-memory retry passing the gate: the retried cell's batch differs from the baseline's, so
    every efficiency check is "not gated", and its searched batch may still equal the baseline's."""
    def retried(failed: int, ran: int) -> dict[str, Any]:
        return {"batch_size": ran, "batch_search": {"searched_batch_size": 8,
                                                    "out_of_memory": {"batch_size": failed, "retried_at": ran}}}

    c = batch_regression({"batch_size": 8}, retried(8, 6))
    assert c is not None and (c.status, c.baseline, c.current) == ("failed", 8, 6)
    assert "ran out of memory at batch 8" in c.note
    assert batch_regression({"batch_size": 4}, retried(8, 6)) is None  # failed above what the baseline ran at


def test_settings_mismatch() -> None:
    assert settings_mismatch({}, {}) is None
    assert settings_mismatch({"profile": "tiny", "data_dir": "a"}, {"profile": "tiny", "data_dir": "b"}) is None
    assert settings_mismatch({"profile": "tiny", "repeats": 3, "lr": {"spec": "1e-3", "value": 0.001}},
                             {"profile": "small", "repeats": 5, "lr": "1e-3"}) == \
        "profile 'tiny' vs 'small'; repeats 3 vs 5"
    assert settings_mismatch({"lr": "x"}, {"lr": {"spec": "x"}}) is None
    assert settings_mismatch({"lr": {"spec": "x"}}, {"lr": {"spec": "y"}}) == "lr 'x' vs 'y'"
    assert settings_mismatch({"lr": {"value": 1}}, {}) is None  # no spec on either side


def test_refusal() -> None:
    doc = {"machine": {"cpu": "x"}, "settings": {"profile": "tiny"}}
    assert refusal(doc, None, None) is None
    assert refusal(doc, {"cpu": "y"}, {"profile": "big"}) == \
        "the baseline comes from another machine or software stack (cpu 'x' vs 'y')"
    assert refusal(doc, {"cpu": "x"}, {"profile": "big"}) == \
        "the baseline was measured under other settings (profile 'tiny' vs 'big')"
    assert refusal({}, {}, {"profile": "tiny"}) == \
        "the baseline was measured under other settings (profile None vs 'tiny')"
    assert refusal({}, {"cpu": "x"}, None) == \
        "the baseline comes from another machine or software stack (cpu None vs 'x')"
    assert refusal({"machine": None, "settings": None}, {}, {}) is None


def test_acknowledge_turns_only_covered_failures() -> None:
    failed_score = Check("score", "failed", 1.0, 0.5, -0.5, 0.1, "x")
    passed_score = Check("score", "passed", 1.0, 1.0, 0.0, 0.1, "y")
    failed_tput = Check("train_samples_per_s", "failed", 1.0, 0.5, -0.5, 0.1, "z")
    acks = [Ack("led-*", "score", "new tokenizer")]
    out = acknowledge([failed_score, passed_score, failed_tput], "led-base", acks)
    assert out == [Check("score", "acknowledged", 1.0, 0.5, -0.5, 0.1, "x; acknowledged: new tokenizer"),
                   passed_score, failed_tput]
    assert acknowledge([failed_score], "bigbird", acks) == [failed_score]


# -- a record's gate section ---------------------------------------------------------------------------------------
def test_gate_record_sections() -> None:
    rules = parse_fail_on("train_samples_per_s:10%,window_decode_time_s:10%")
    doc = {"machine": {}, "settings": {},
           "records": [tput(10.0, cell="a", batch=4), tput(10.0, cell="b", status="failed")]}
    refused = gate_record(rules, doc, tput(1.0, cell="a"), {"cpu": "y"}, "b.json")
    assert refused == {"baseline": "b.json", "checks": [],
                       "refused": "the baseline comes from another machine or software stack (cpu None vs 'y')"}
    nothing: dict[str, Any] = {"baseline": "b.json", "checks": [], "refused": None,
               "note": "no passed record of this id in the baseline: nothing to compare"}
    assert gate_record(rules, doc, tput(1.0, cell="z"), {}, "b.json") == nothing
    assert gate_record(rules, doc, tput(1.0, cell="b"), {}, "b.json") == nothing
    cur = tput(8.0, cell="a", batch=4, batch_search={"searched_batch_size": 2})
    memory: dict[str, Any] = {"metric": "batch_size", "status": "failed", "baseline": 4, "current": 2, "change": -0.5,
              "tolerance": 0.0, "note": "the batch-size search now finds a smaller batch under the same memory "
              "budget: a memory regression"}
    speed = {"metric": "train_samples_per_s", "status": "failed", "baseline": 10.0, "current": 8.0, "change": -0.2,
             "tolerance": 0.1, "note": "intervals apart: current 95% CI [7.92, 8.08] vs baseline [9.9, 10.1]"}
    assert gate_record(rules, doc, cur, {}, "b.json") == {"baseline": "b.json", "checks": [memory, speed],
                                                          "refused": None}
    acked = gate_record(rules, doc, cur, {}, "b.json", {}, [Ack("a", "batch_size", "smaller GPU")])
    assert acked["checks"] == [{**memory, "status": "acknowledged",
                                "note": memory["note"] + "; acknowledged: smaller GPU"}, speed]


def test_gate_failures() -> None:
    assert gate_failures(None) == [] and gate_failures({}) == [] and gate_failures({"refused": None}) == []
    assert gate_failures({"refused": "other cpu"}) == [
        "gate refused: other cpu; record a baseline on this machine with these settings"]
    checks = [{"metric": "score", "status": "failed", "baseline": 2.0, "current": 1.0, "change": -0.5,
               "tolerance": 0.1, "note": "n"},
              {"metric": "score", "status": "passed", "baseline": 2.0, "current": 2.0, "change": 0.0,
               "tolerance": 0.1, "note": "n"}]
    assert gate_failures({"refused": None, "checks": checks}) == [
        "score: baseline 2, current 1, change -50.0%, tolerance 10% for the worse (failed; n)"]


def test_baseline_record_and_lost_cells() -> None:
    doc = {"records": [{"id": "a", "v": 1, "status": "passed"}, {"id": "a", "v": 2},
                       {"id": "b", "status": "passed"}, {"id": "c", "status": "failed"},
                       {"id": "d", "status": "passed"}]}
    assert baseline_record(doc, "a") == {"id": "a", "v": 1, "status": "passed"}
    assert baseline_record(doc, "zz") is None and baseline_record({}, "a") is None
    records = [{"id": "a", "status": "skipped"}, {"id": "b", "status": "error"}, {"id": "c", "status": "skipped"},
               {"id": "d", "status": "passed"}, {"id": "e", "status": "skipped"}, {"id": "d", "status": "failed"}]
    assert lost_cells(doc, records) == ["a", "b"]


# -- FDR evidence of one check --------------------------------------------------------------------------------------
def test_pair_evidence() -> None:
    rule = Rule(TPUT, 0.1)
    base, cur = tput(10.0, [9.0, 11.0], cell="x"), tput(8.0, [7.5, 8.5], cell="x")
    c = check(rule, base, cur)
    assert c.status == "inconclusive"
    excess = math.log(10 / 8) + math.log(0.9)
    se = math.hypot(math.log(11 / 9) / TWO_Z, math.log(8.5 / 7.5) / TWO_Z)
    p = pair(rule, base, cur, c)
    assert p == Pair("x", "train_samples_per_s", 10.0, 8.0, near(excess), near(se),
                     near(1 - PHI(excess / se)), 0.1, "inconclusive", None)
    # An interval on one side only: no standard error, and a noisy figure without one is no evidence.
    one = tput(8.0, None, cell="x")
    p = pair(rule, base, one, check(rule, base, one))
    assert p is not None and p.se is None and p.p == 1.0 and p.check_status == "inconclusive"
    p = pair(rule, one, cur, check(rule, one, cur))  # the interval on the current side only
    assert p is not None and p.se is None and p.p == 1.0 and p.check_status == "inconclusive"
    # A figure that does not vary between measurements (the score) is decided by its values.
    score_rule = Rule(SCORE, 0.05)
    lower = {"id": "x", "accuracy": {"score": 40.0}}
    p = pair(score_rule, {"id": "x", "accuracy": {"score": 50.0}}, lower,
             check(score_rule, {"id": "x", "accuracy": {"score": 50.0}}, lower))
    assert p is not None and p.se is None and p.p == 0.0 and p.check_status == "failed"
    # Not measured, not gated or acknowledged: no evidence.
    for status in ("unmeasured", "not_gated", "acknowledged"):
        assert pair(rule, base, cur, Check("m", status, 10.0, 8.0, -0.2, 0.1, "")) is None
    assert pair(rule, base, cur, Check("m", "failed", None, 8.0, None, 0.1, "")) is None
    assert pair(rule, base, cur, Check("m", "failed", 10.0, None, None, 0.1, "")) is None
    p = pair(rule, base, cur, Check("m", "passed", 10.0, 10.0, 0.0, 0.1, ""))
    assert p is not None and p.metric == "m" and p.check_status == "passed"


def test_pair_of_a_zero_baseline_decides_by_the_check() -> None:
    rule = Rule(ENERGY, 0.1)
    base = energy(0.0)
    failed = pair(rule, base, energy(5.0), check(rule, base, energy(5.0)))
    assert failed == Pair("c", "train_energy_j", 0.0, 5.0, None, None, 0.0, 0.1, "failed", None)
    passed = pair(rule, base, energy(0.0), check(rule, base, energy(0.0)))
    assert passed is not None and passed.p == 1.0 and passed.excess is None


def test_pair_adds_the_reference_noise() -> None:
    rule = Rule(TPUT, 0.1)
    base = tput(10.0, [9.0, 11.0], reference=ref(100.0, [99.0, 101.0]))
    cur = tput(8.0, [7.5, 8.5], reference=ref(80.0, [79.0, 81.0]))
    p = pair(rule, base, cur, check(rule, base, cur))
    se = math.sqrt(sum((math.log(hi / lo) / TWO_Z) ** 2 for lo, hi in ((9, 11), (7.5, 8.5), (99, 101), (79, 81))))
    assert p is not None and p.se == near(se) and p.drift == near(1.25)
    assert p.current == near(10.0) and p.excess == near(math.log(0.9))
    # References without intervals: the drift factor without added noise.
    base, cur = tput(10.0, [9.0, 11.0], reference=ref(100.0)), tput(8.0, [7.5, 8.5], reference=ref(80.0))
    p = pair(rule, base, cur, check(rule, base, cur))
    se = math.hypot(math.log(11 / 9) / TWO_Z, math.log(8.5 / 7.5) / TWO_Z)
    assert p is not None and p.se == near(se) and p.drift == near(1.25)


# -- the run --------------------------------------------------------------------------------------------------------
def test_judge_run_refusal_latest_records_and_notes() -> None:
    rules = [Rule(TPUT, 0.1)]
    doc = {"machine": {}, "settings": {},
           "records": [tput(10.0, cell=c) for c in "abcde"] + [tput(10.0, cell="f", status="failed")]}
    assert judge_run(rules, doc, [], current_settings={"profile": "x"}) == RunVerdict(
        refused="the baseline was measured under other settings (profile None vs 'x')")
    assert judge_run(rules, doc, [], current_machine={"cpu": "x"}).refused == \
        "the baseline comes from another machine or software stack (cpu None vs 'x')"
    records = [tput(5.0, cell="c", status="skipped"), tput(5.0, cell="d", status="error"),
               tput(5.0, cell="a"), tput(10.0, cell="a"),  # re-run: the last record counts
               tput(5.0, cell="f"), tput(5.0, cell="g"),  # failed in the baseline / not in it
               tput(5.0, cell="b", status="failed")]  # a failed record is judged
    v = judge_run(rules, doc, records)
    assert [(x.pair.cell, x.verdict) for x in v.fdr] == [("a", "ok"), ("b", "regression")]
    assert v.lost == ("c", "d")
    assert v.notes == ("passed in the baseline, now skipped or errored: c, d",
                       "1 cells of the baseline were not run (e.g. e)")
    assert [s.metric for s in v.suite] == ["train_samples_per_s"] and v.suite[0].cells == 2
    v = judge_run(rules, doc, [tput(10.0, cell="a"), tput(5.0, cell="a")])
    assert [(x.pair.cell, x.verdict) for x in v.fdr] == [("a", "regression")]
    assert v.notes == ("4 cells of the baseline were not run (e.g. b)",) and v.lost == ()
    v = judge_run(rules, {"records": [tput(10.0, cell="a")]}, [tput(10.0, cell="a")])
    assert v.notes == () and not v.fails()
    v = judge_run(rules, {}, [tput(10.0, cell="a")])  # a baseline without records
    assert v.fdr == () and v.notes == () and not v.fails()


def test_judge_run_keeps_the_rule_order_and_skips_rules_that_do_not_apply() -> None:
    rules = parse_fail_on("window_decode_time_s:10%,train_samples_per_s:10%,score:5%")
    doc = {"records": [tput(10.0, cell="a")]}
    v = judge_run(rules, doc, [tput(9.5, cell="a")])
    assert [s.metric for s in v.suite] == ["window_decode_time_s", "train_samples_per_s", "score"]
    assert [s.verdict for s in v.suite] == ["no data", "passed", "no data"]
    assert [p.pair.metric for p in v.fdr] == ["train_samples_per_s"]
    assert [s.tolerance for s in v.suite] == [0.1, 0.1, 0.05]  # each rule's own, with data or without


# -- Gate -----------------------------------------------------------------------------------------------------------
def test_gate_load_reads_relative_and_absolute_paths(tmp_path: Path) -> None:
    shutil.copy(SMALL_REPORT, tmp_path / "base.json")
    (tmp_path / "acks.json").write_text(json.dumps([{"metric": "score", "reason": "new tokenizer"}]))
    doc = json.loads(SMALL_REPORT.read_text(encoding="utf-8"))
    settings = {"acknowledged": "acks.json", "profile": "tiny"}
    gate = Gate.load("base.json", "score:5%,train_samples_per_s:10%", settings, tmp_path)
    assert gate == Gate((Rule(SCORE, 0.05), Rule(TPUT, 0.1)), doc, "base.json", settings,
                        (Ack("*", "score", "new tokenizer"),))
    absolute = Gate.load(str(tmp_path / "base.json"), "score:5%", {}, tmp_path / "elsewhere")
    assert absolute.baseline == doc and absolute.acks == () and absolute.baseline_path == str(tmp_path / "base.json")
    assert Gate.load("base.json", "score:5%", {"acknowledged": None}, tmp_path).acks == ()
    with pytest.raises(ValueError):
        Gate.load("base.json", "speed:5%", {}, tmp_path)


def test_gate_judge_and_judge_run() -> None:
    doc = {"machine": {"cpu": "x"}, "settings": {"profile": "tiny"}, "records": [tput(10.0, cell="a")]}
    gate = Gate(parse_fail_on("train_samples_per_s:10%"), doc, "b.json", {"profile": "tiny"},
                (Ack("b", "train_samples_per_s", "known"),))
    section, failures = gate.judge(tput(5.0, cell="a"), {"cpu": "x"})
    assert [c["status"] for c in section["checks"]] == ["failed"] and section["baseline"] == "b.json"
    assert failures == [("train_samples_per_s: baseline 10, current 5, change -50.0%, tolerance 10% for the worse "
                         "(failed; intervals apart: current 95% CI [4.95, 5.05] vs baseline [9.9, 10.1])")]
    section, failures = gate.judge(tput(5.0, cell="a"), {"cpu": "y"})
    assert section["refused"] == "the baseline comes from another machine or software stack (cpu 'x' vs 'y')"
    assert failures and failures[0].startswith("gate refused: the baseline comes from another machine")
    other = Gate(gate.rules, doc, "b.json", {"profile": "big"})
    assert other.judge(tput(5.0, cell="a"), {"cpu": "x"})[0]["refused"] == \
        "the baseline was measured under other settings (profile 'tiny' vs 'big')"
    section, failures = gate.judge(tput(5.0, cell="b"), {"cpu": "x"})  # no baseline record: nothing to compare
    assert section["checks"] == [] and failures == []
    acked = Gate(gate.rules, {**doc, "records": [tput(10.0, cell="b")]}, "b.json", {"profile": "tiny"}, gate.acks)
    section, failures = acked.judge(tput(5.0, cell="b"), {"cpu": "x"})
    assert [c["status"] for c in section["checks"]] == ["acknowledged"] and failures == []
    # The run: a refusal in any record's gate section stands for the run.
    refused = [tput(5.0, cell="a", gate=None), tput(5.0, cell="a", gate={"refused": None}),
               tput(5.0, cell="a", gate={"refused": "other cpu"}), tput(5.0, cell="a", gate={"refused": "2nd"})]
    assert gate.judge_run(refused) == RunVerdict(refused="other cpu")
    v = gate.judge_run([tput(5.0, cell="a", gate={"refused": None}), tput(5.0, cell="a", gate="x")])
    assert v.refused is None and [x.verdict for x in v.fdr] == ["regression"]
    acked = Gate(gate.rules, {"records": [tput(10.0, cell="b")]}, "b.json", {}, gate.acks)
    assert [x.verdict for x in acked.judge_run([tput(5.0, cell="b")]).fdr] == ["acknowledged"]


def test_gate_baseline_batch_and_skip_regression() -> None:
    doc = {"records": [{"id": "a", "status": "passed", "batch_size": 4}, {"id": "one", "status": "passed",
                                                                          "batch_size": 1},
                       {"id": "z", "status": "passed", "batch_size": 0}, {"id": "s", "status": "passed",
                                                                          "batch_size": "4"},
                       {"id": "f", "status": "failed", "batch_size": 4}]}
    gate = Gate((), doc, "b.json", {})
    assert gate.baseline_batch("a") == 4 and gate.baseline_batch("one") == 1
    for cell in ("z", "s", "f", "missing"):
        assert gate.baseline_batch(cell) is None
    assert gate.skip_regression("a", "it no longer fits") == \
        "a: regression against the baseline: it passed there, but now it no longer fits"
    assert gate.skip_regression("f", "x") is None and gate.skip_regression("missing", "x") is None


# -- gate_suite -----------------------------------------------------------------------------------------------------
def test_time_based_figures() -> None:
    assert TPUT.time_based and LAT.time_based and GATED["inference_samples_per_s"].time_based
    assert not ENERGY.time_based and not SCORE.time_based and not GATED["train_peak_memory_bytes"].time_based
    win_time, win_energy = figure("window_a_time_s"), figure("window_a_energy_j")
    assert win_time is not None and win_time.time_based
    assert win_energy is not None and not win_energy.time_based


def test_drift_note() -> None:
    assert Drift(0.85, 1 / 0.85, None).note() == ("drift-corrected by the machine-speed reference: x1.18 (machine at "
                                                  "0.85 of the baseline's reference speed)")


def test_reference_reading() -> None:
    def r(ops: Any = 100, stats: Any = None, **extra: Any) -> dict[str, Any]:
        return {"reference": {"ops_per_s": ops, "stats": stats, "method": "m", **extra}}

    got = _reference(r(100, {"ci95": [99, 101], "n": 3}))
    assert got == (100.0, (99.0, 101.0), "m") and type(got[0]) is float
    assert got[1] is not None and all(type(v) is float for v in got[1])
    assert _reference(r(0.5, {"ci95": (0.4, 0.6), "n": 14})) == (0.5, (0.4, 0.6), "m")
    for stats in ({"ci95": [99, 101], "n": 2}, {"ci95": [99, 101], "n": 3.0}, {"ci95": [99], "n": 5},
                  {"ci95": [99, 101, 102], "n": 5}, {"ci95": [99, "x"], "n": 5}, {"ci95": ["x", 99], "n": 5},
                  {"ci95": "ab", "n": 5}, {"n": 5}, "stats", None):
        assert _reference(r(100, stats)) == (100.0, None, "m"), stats
    for ops in (True, math.nan, math.inf, 0, 0.0, -1.0, "100", None):
        assert _reference(r(ops)) is None, ops
    assert _reference({}) is None and _reference({"reference": 100.0}) is None
    assert _reference({"reference": {"ops_per_s": 100.0}}) == (100.0, None, "None")


def test_drift_between_two_records() -> None:
    def rec(ops: float, ci: list[float] | None = None, method: str = "m") -> dict[str, Any]:
        return {"reference": ref(ops, ci, method)}

    d = drift(TPUT, rec(100.0, [98.0, 102.0]), rec(80.0, [79.0, 81.0]))
    se = math.hypot(math.log(102 / 98) / TWO_Z, math.log(81 / 79) / TWO_Z)
    assert d is not None and d.speed == near(0.8) and d.factor == near(1.25)
    assert d.se == near(se)
    d = drift(LAT, rec(100.0), rec(80.0, [79.0, 81.0]))
    assert d == Drift(near(0.8), near(0.8), None)
    assert drift(LAT, rec(100.0, [98.0, 102.0]), rec(80.0)) == Drift(near(0.8), near(0.8), None)
    assert drift(ENERGY, rec(100.0), rec(80.0)) is None
    assert drift(TPUT, {}, rec(80.0)) is None and drift(TPUT, rec(100.0), {}) is None
    assert drift(TPUT, rec(100.0), rec(80.0, method="other")) is None


def test_no_drift_correction_across_other_process_wide_torch_settings() -> None:
    """Anomaly mode left on slows the cells and the reference alike: correcting by the reference would cancel the
    regression, so the gate compares uncorrected and says why."""
    settings = {"anomaly_mode": False, "num_threads": 2}

    def rec(median: float, ops: float, **changed: Any) -> dict[str, Any]:
        return tput(median, reference={**ref(ops, [ops * 0.99, ops * 1.01]),
                                       "torch_settings": {**settings, **changed}})

    same = check(Rule(TPUT, 0.1), rec(10.0, 100.0), rec(7.0, 70.0))
    assert same.status == "passed" and "drift-corrected" in same.note  # a slower machine, corrected
    assert drift(TPUT, rec(10.0, 100.0), rec(7.0, 70.0, anomaly_mode=True)) is None
    other = check(Rule(TPUT, 0.1), rec(10.0, 100.0), rec(7.0, 70.0, anomaly_mode=True))
    assert other.status == "failed" and other.current == near(7.0)
    assert other.note.endswith("not drift-corrected: process-wide torch settings differ (anomaly_mode False vs "
                               "True)")
    assert torch_settings_differ(rec(1.0, 1.0), {"reference": {"ops_per_s": 1.0}}) is None  # older record


def _work(extra_copy: bool) -> dict[str, Any]:
    """A record's work section counted by the real counter on code whose work is known."""
    from pytest_longeff.measure.work import count_work

    x = torch.randn(16, 16)
    sections = {}
    for kind, unit, units in (("train", "step", 1), ("inference", "token", 4)):
        with count_work(unit, units, "cpu") as work:
            y = x @ x
            if extra_copy:
                y.clone()
        sections[kind] = work.to_dict()
    return sections


def test_work_is_gated_exactly_with_the_operators_that_changed() -> None:
    rule = parse_fail_on("work:0%")[0]
    base, same, more = (tput(10.0, work=_work(False)), tput(3.0, work=_work(False)), tput(10.0, work=_work(True)))
    passed = check(rule, base, same)  # the clock says -70 %; the work is the same
    assert passed.status == "passed" and passed.note == "the same work" and passed.change == 0.0
    assert passed.baseline == passed.current == 2 * 16**3  # FLOPs of one step: the one matrix product
    failed = check(rule, base, more)
    assert failed.status == "failed"
    assert "train calls per step 1 -> 2" in failed.note and "train output_bytes per step 1024 -> 2048" in failed.note
    assert "inference output_bytes per token 256 -> 512" in failed.note
    assert "train: aten.clone: calls 0 -> 1, output_bytes 0 -> 1024" in failed.note
    assert check(rule, base, more).change == 0.0  # a copy adds no FLOPs
    assert check(parse_fail_on("work:150%")[0], base, more).status == "passed"  # within a tolerance of +150 %
    missing = check(rule, base, tput(10.0))
    assert missing.status == "unmeasured" and "no work counters" in missing.note


def test_threshold_log_ratio_standard_error_and_p() -> None:
    assert threshold(TPUT, 1.5) == math.inf and threshold(TPUT, 0.5) == near(math.log(2))
    assert threshold(TPUT, 0.0) == 0.0 and threshold(LAT, 1.5) == near(math.log(2.5))
    assert worse_log_ratio(TPUT, 10.0, 8.0) == near(math.log(1.25))
    assert worse_log_ratio(LAT, 10.0, 8.0) == near(math.log(0.8))
    assert worse_log_ratio(TPUT, 0.5, 0.25) == near(math.log(2))
    for base, cur in ((0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (1.0, -1.0)):
        assert worse_log_ratio(TPUT, base, cur) is None
    assert log_se((0.5, 2.0)) == near(math.log(4) / TWO_Z)
    assert log_se((2.0, 2.0)) == 0.0
    for bad in ((2.0, 1.0), (0.0, 1.0), (-1.0, 1.0)):
        assert log_se(bad) is None
    assert p_beyond(0.0, None) == 1.0 and p_beyond(0.0, 0.0) == 1.0 and p_beyond(1e-9, 0.0) == 0.0
    assert p_beyond(0.05, 0.1) == near(1 - PHI(0.5))
    assert p_beyond(-0.2, 0.1) == near(1 - PHI(-2.0))


def test_benjamini_hochberg_small_cases() -> None:
    assert benjamini_hochberg([0.6]) == [0.6]
    assert benjamini_hochberg([0.3, 0.4]) == near([0.4, 0.4])
    assert benjamini_hochberg([0.9, 0.8]) == near([0.9, 0.9])
    assert benjamini_hochberg([0.01, 0.02, 0.9]) == near([0.03, 0.03, 0.9])
    assert benjamini_hochberg([0.6, 0.7, 0.8]) == near([0.8, 0.8, 0.8])


def _pair(cell: str, p: float = 0.5, excess: float | None = 0.0, se: float | None = 0.1, metric: str = "m",
          tol: float = 0.1, base: float = 10.0, cur: float = 8.0, drift: float | None = None) -> Pair:
    return Pair(cell, metric, base, cur, excess, se, p, tol, "failed", drift)


def test_verdicts_as_dicts() -> None:
    v = PairVerdict(_pair("a", p=0.01, se=None, drift=1.25), 0.02, "regression")
    assert v.to_dict() == {"cell": "a", "metric": "m", "baseline": 10.0, "current": 8.0,
                           "change": near(-0.2), "tolerance": 0.1, "p": 0.01, "q": 0.02,
                           "method": "single values", "check": "failed", "verdict": "regression", "reason": None,
                           "drift_factor": 1.25}
    w = PairVerdict(_pair("b", base=0.0, se=0.1), 0.5, "acknowledged", "why").to_dict()
    assert w["change"] is None and w["method"] == "log-normal, CI as SE" and w["reason"] == "why"
    s = SuiteVerdict("m", 3, 0.8, 0.1, 0.01, "failed", "r", 2)
    assert s.to_dict() == {"metric": "m", "cells": 3, "geomean_ratio": 0.8, "change": near(-0.2),
                           "tolerance": 0.1, "p": 0.01, "verdict": "failed", "reason": "r",
                           "drift_corrected_cells": 2}
    assert SuiteVerdict("m", 0, None, 0.1, None, "no data").to_dict()["change"] is None
    assert SuiteVerdict("m", 0, None, 0.1, None, "no data").corrected == 0


def test_run_verdict_fails_and_to_dict() -> None:
    reg = PairVerdict(_pair("a"), 0.01, "regression")
    ack = PairVerdict(_pair("b"), 0.01, "acknowledged", "k")
    ok = PairVerdict(_pair("c"), 0.5, "ok")
    failed = SuiteVerdict("m", 3, 0.8, 0.1, 0.01, "failed")
    passed = SuiteVerdict("n", 3, 1.0, 0.1, 0.5, "passed")
    acked = SuiteVerdict("o", 3, 0.8, 0.1, 0.01, "acknowledged", "k")
    assert not RunVerdict().fails() and not RunVerdict((ack, ok), (passed, acked)).fails()
    assert RunVerdict(refused="x").fails() and RunVerdict(lost=("a",)).fails()
    assert RunVerdict((reg,)).fails() and RunVerdict(suite=(failed,)).fails()
    v = RunVerdict((reg, ack, ok), (failed, passed, acked), notes=("n1",), lost=("z",))
    assert v.regressions == [reg] and v.suite_failures == [failed] and v.q_level == 0.05
    assert v.to_dict() == {"refused": None, "failed": True, "fdr_q": 0.05, "suite_alpha": 0.05,
                           "suite": {"m": failed.to_dict(), "n": passed.to_dict(), "o": acked.to_dict()},
                           "fdr": [reg.to_dict(), ack.to_dict(), ok.to_dict()], "lost": ["z"], "notes": ["n1"]}
    assert RunVerdict().to_dict() == {"refused": None, "failed": False, "fdr_q": 0.05, "suite_alpha": 0.05,
                                      "suite": {}, "fdr": [], "lost": [], "notes": []}


def test_fdr_verdicts_at_the_level() -> None:
    single = _pair("a", p=0.05)
    assert fdr_verdicts([single], ()) == (PairVerdict(single, 0.05, "regression"),)
    over = _pair("a", p=0.07)
    assert fdr_verdicts([over], ()) == (PairVerdict(over, 0.07, "ok"),)
    assert fdr_verdicts([over], (), q=0.1) == (PairVerdict(over, 0.07, "regression"),)
    acks = [Ack("a*", "m", "accepted"), Ack("*", "other", "no")]
    pairs = [_pair("ab", p=0.01), _pair("b", p=0.02), _pair("c", p=0.5)]
    assert fdr_verdicts(pairs, acks) == (PairVerdict(pairs[0], near(0.03), "acknowledged", "accepted"),
                                         PairVerdict(pairs[1], near(0.03), "regression", None),
                                         PairVerdict(pairs[2], 0.5, "ok"))


def _suite_expected(fig_higher: bool, excesses: list[float], ses: list[float | None], t: float) -> tuple[float, ...]:
    """The suite rule written out a second way: ratio, p."""
    worse = [e + t for e in excesses]
    k = len(worse)
    mean = statistics.fmean(worse)
    within = math.sqrt(sum((s or 0.0) ** 2 for s in ses)) / k
    spread = statistics.stdev(worse) / math.sqrt(k) if k > 1 else 0.0
    ratio = math.exp(-mean if fig_higher else mean)
    se = max(within, spread)
    p = (0.0 if mean > t else 1.0) if se == 0 else 1 - PHI((mean - t) / se)
    return ratio, p


def test_suite_verdict_without_data() -> None:
    assert suite_verdict("m", TPUT, [], ()) == SuiteVerdict("m", 0, None, 0.0, None, "no data")
    none = [_pair("a", excess=None, tol=0.2), _pair("b", excess=None, tol=0.2)]
    assert suite_verdict("m", TPUT, none, ()) == SuiteVerdict("m", 0, None, 0.2, None, "no data")


def test_a_tolerated_drop_of_100_percent_or_more_passes_the_suite_rule_with_its_change() -> None:
    # threshold() is infinite for such a tolerance of a higher-is-better figure; the rule must not compute nan.
    pairs = [_pair("a", excess=-math.inf, base=10.0, cur=2.0, tol=10.0, drift=1.1),
             _pair("b", excess=-math.inf, base=10.0, cur=8.0, tol=10.0)]
    v = suite_verdict("m", TPUT, pairs, ())
    assert v == SuiteVerdict("m", 2, near(math.sqrt(0.2 * 0.8)), 10.0, 1.0, "passed", None, 1)
    assert v.to_dict()["change"] == near(math.sqrt(0.16) - 1)


def test_suite_verdict_with_spread_dominating() -> None:
    t = -math.log(0.9)
    pairs = [_pair("a", excess=0.10, se=0.01, drift=1.1), _pair("b", excess=0.30, se=None),
             _pair("c", excess=0.20, se=0.02), _pair("d", excess=None, se=None, drift=1.2)]
    ratio, p = _suite_expected(True, [0.10, 0.30, 0.20], [0.01, None, 0.02], t)
    assert suite_verdict("m", TPUT, pairs, ()) == SuiteVerdict("m", 3, near(ratio), 0.1, near(p),
                                                                "failed", None, 1)
    assert p < 0.05 and ratio == near(math.exp(-0.2) * 0.9)
    acks = [Ack("suite", "other", "no"), Ack("suite", "m", "accepted")]
    assert suite_verdict("m", TPUT, pairs, acks) == SuiteVerdict("m", 3, near(ratio), 0.1,
                                                                  near(p), "acknowledged", "accepted", 1)
    assert suite_verdict("m", TPUT, pairs, [Ack("c*", "m", "cells only")]).verdict == "failed"


def test_suite_verdict_with_within_cell_noise_dominating() -> None:
    t = math.log(1.1)
    pairs = [_pair("a", excess=0.05, se=0.2, drift=0.9), _pair("b", excess=0.06, se=0.3),
             _pair("c", excess=0.04, se=0.25)]
    ratio, p = _suite_expected(False, [0.05, 0.06, 0.04], [0.2, 0.3, 0.25], t)
    v = suite_verdict("m", LAT, pairs, ())
    assert v.verdict == "inconclusive" and v.reason is not None and "reaches beyond the tolerance" in v.reason
    assert v == SuiteVerdict("m", 3, near(ratio), 0.1, near(p), "inconclusive", v.reason, 1)
    assert ratio == near(1.1 * math.exp(0.05)) and p > 0.05  # not significant, yet no claim of "passed"
    # One cell: no spread, its own standard error; clearly worse than the tolerance.
    one = [_pair("a", excess=0.5, se=0.1)]
    ratio, p = _suite_expected(False, [0.5], [0.1], t)
    assert suite_verdict("m", LAT, one, ()) == SuiteVerdict("m", 1, near(ratio), 0.1, near(p),
                                                             "failed", None, 0)
    # Two cells without standard errors: the spread alone, stdev 0.2 / sqrt(2) / sqrt(2) = 0.1, z = 0.4 / 0.1.
    two = [_pair("a", excess=0.3, se=None), _pair("b", excess=0.5, se=None)]
    v = suite_verdict("m", LAT, two, ())
    assert v.verdict == "failed" and v.cells == 2 and v.p == near(1 - PHI(4.0))
    # One cell, no standard error at all: a point decision.
    point = suite_verdict("m", LAT, [_pair("a", excess=0.01, se=None)], ())
    assert point.verdict == "failed" and point.p == 0.0
    better = suite_verdict("m", LAT, [_pair("a", excess=-0.01, se=None)], ())
    # A noisy figure without an interval cannot show it stayed within the tolerance: never "passed".
    assert better.verdict == "inconclusive" and better.p == 1.0
    assert better.reason == "a cell's figure has no interval (too few samples)"
    assert suite_verdict("m", LAT, [_pair("a", excess=-0.01, se=0.001)], ()).verdict == "passed"


def test_suite_verdicts_follow_the_figures_order() -> None:
    pairs = [_pair("a", metric="x", excess=1.0, se=None), _pair("a", metric="y", excess=-1.0, se=0.01)]
    out = suite_verdicts(pairs, {"y": TPUT, "z": TPUT, "x": TPUT}, ())
    assert [(s.metric, s.verdict, s.cells) for s in out] == [("y", "passed", 1), ("z", "no data", 0),
                                                              ("x", "failed", 1)]


def test_terminal_lines_word_for_word() -> None:
    reg = PairVerdict(_pair("c1", base=10.0, cur=8.0), 0.01, "regression")
    ack = PairVerdict(_pair("c2", base=0.0, cur=8.0), 0.02, "acknowledged", "known")
    ok = PairVerdict(_pair("c3"), 0.5, "ok")
    suite = (SuiteVerdict("tput", 2, 0.9, 0.1, 0.01, "failed", None, corrected=1),
             SuiteVerdict("lat", 0, None, 0.05, None, "no data"),
             SuiteVerdict("x", 3, 1.0, 0.2, 0.5, "acknowledged", "why"))
    verdict = RunVerdict((reg, ack, ok), suite, notes=("n1", "n2"))
    head = ("longeff gate over the run: FAILED (FDR q=0.05 over 3 (cell, metric) pairs; suite rule: geometric mean "
            "per metric, alpha=0.05)")
    suite_lines = [("  suite tput: failed, geometric mean change -10.0% over 2 cells, drift-corrected in 1, "
                    "tolerance 10%"),
                   "  suite lat: no data, geometric mean change n/a over 0 cells, tolerance 5%",
                   "  suite x: acknowledged, geometric mean change +0.0% over 3 cells, tolerance 20% (why)"]
    flagged = ["  regression c1 m: baseline 10, current 8, change -20.0%, q=0.01",
               "  acknowledged c2 m: baseline 0, current 8, change n/a, q=0.02: known"]
    notes = ["  note: n1", "  note: n2"]
    assert terminal_lines(verdict) == [head, *suite_lines, *flagged, *notes]
    assert terminal_lines(verdict, limit=2) == [head, *suite_lines, *flagged, *notes]
    assert terminal_lines(verdict, limit=1) == [
        head, *suite_lines, flagged[0],
        "  ... and 1 more (the JSON report's session.gate.fdr has them all)", *notes]
    assert terminal_lines(RunVerdict(q_level=0.1)) == [
        ("longeff gate over the run: passed (FDR q=0.1 over 0 (cell, metric) pairs; suite rule: geometric mean per "
         "metric, alpha=0.05)")]
    assert terminal_lines(RunVerdict(refused="other cpu")) == ["longeff gate: refused: other cpu"]
    many = RunVerdict(tuple(PairVerdict(_pair(f"c{i}"), 0.01, "regression") for i in range(21)))
    lines = terminal_lines(many)
    assert len(lines) == 22 and lines[-1] == "  ... and 1 more (the JSON report's session.gate.fdr has them all)"
    assert len(terminal_lines(RunVerdict(many.fdr[:20]))) == 21


def test_inference_timed_otherwise_in_the_baseline_is_not_gated() -> None:
    """A baseline whose generation ran until the end token against a run timing a fixed number of new tokens: the
    inference figures measure different work."""
    rule = parse_fail_on("inference_samples_per_s:10%")[0]

    def rec(median: float, new_tokens: str | None) -> dict[str, Any]:
        stats = {"median": median, "ci95": [median * 0.99, median * 1.01], "n": 5}
        inference = {"samples_per_s_stats": stats, **({"new_tokens": new_tokens} if new_tokens else {})}
        return {"id": "c", "status": "passed", "batch_size": 2, "inference": inference}

    old = check(rule, rec(10.0, None), rec(5.0, "fixed"))
    assert old.status == "not_gated" and "timed otherwise" in old.note
    assert check(rule, rec(10.0, "fixed"), rec(5.0, "fixed")).status == "failed"


def test_a_remeasured_baseline_is_judged_by_its_pooled_figures() -> None:
    rule = Rule(TPUT, 0.1)
    base = tput(5.0, remeasured={"others": [{"measurement": 2, **tput(20.0)}]})  # a burst, then 20: pooled 10
    out = gate_record([rule], {"records": [base]}, tput(9.9), {}, "base.json", None)
    (c,) = out["checks"]
    assert c["baseline"] == near(10.0) and c["status"] == "inconclusive"  # pooled interval: t with 1 df, wide


def test_the_terminal_says_inconclusive_for_unresolved_cells() -> None:
    unresolved = Pair("c1", "m", 10.0, 9.5, -0.05, 0.2, 0.9, 0.1, "inconclusive")
    lines = terminal_lines(RunVerdict((PairVerdict(unresolved, 0.9, "ok"),), ()))
    assert lines[0].startswith("longeff gate over the run: INCONCLUSIVE")
    assert lines[1] == ("  inconclusive: 1 (cell, metric) check(s) could not resolve the tolerance (c1 m); decide "
                        "with `pytest-longeff ab`")
    resolved = Pair("c1", "m", 10.0, 9.9, -0.09, 0.01, 1.0, 0.1, "passed")
    assert terminal_lines(RunVerdict((PairVerdict(resolved, 1.0, "ok"),), ()))[0].startswith(
        "longeff gate over the run: passed")

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_longeff.gate.check import Rule, check, gate_failures, gate_record, parse_fail_on
from pytest_longeff.measure.machine import mismatch
from pytest_longeff.record.figures import GATED, figure


def _rec(tput: float | None = 10.0, ci: list[float] | None | str = "tight", energy: float | None = None,
         method: str = "nvml", n: int = 5) -> dict[str, object]:
    """A record; throughput CI +-1 % and energy error bars of 1 % unless given (``ci=None``: no interval)."""
    if ci == "tight":
        ci = None if tput is None else [tput * 0.99, tput * 1.01]
    bound = None if energy is None else energy * 0.01
    return {
        "id": "led-base-1024-qasper", "status": "passed",
        "train": {"samples_per_s_stats": {"median": tput, "ci95": ci, "n": n}, "energy_j": energy,
                  "energy_method": method, "energy_uncertainty_j": bound},
        "inference": {"j_per_sample": energy, "energy_method": method, "energy_j": energy,
                      "energy_uncertainty_j": bound},
    }


def test_parse_fail_on() -> None:
    rules = parse_fail_on("inference_j_per_sample:10%, train_samples_per_s:2.5%")
    assert [(r.metric.name, r.tolerance) for r in rules] == [("inference_j_per_sample", 0.1),
                                                            ("train_samples_per_s", 0.025)]
    for bad, message in (("speed:10%", "unknown metric 'speed'; accepted: score, train_samples_per_s"),
                         ("score:10", "expected metric:N%"), ("score:-5%", ">= 0"), ("", "metric:N%")):
        with pytest.raises(ValueError, match=message):
            parse_fail_on(bad)


def test_direction_comes_from_the_metric() -> None:
    tput = Rule(GATED["train_samples_per_s"], 0.1)
    assert check(tput, _rec(10.0), _rec(8.0)).fails()  # throughput down 20 %: worse
    assert not check(tput, _rec(10.0), _rec(12.0)).fails()  # up: better
    energy = Rule(GATED["train_energy_j"], 0.1)
    assert check(energy, _rec(energy=100.0), _rec(energy=120.0)).fails()  # energy up: worse
    assert not check(energy, _rec(energy=100.0), _rec(energy=80.0)).fails()


def test_message_shows_baseline_current_change_and_tolerance() -> None:
    c = check(Rule(GATED["train_samples_per_s"], 0.1), _rec(10.0), _rec(8.0))
    assert c.message().startswith("train_samples_per_s: baseline 10, current 8, change -20.0%, tolerance 10%")


def test_overlapping_intervals_are_noise_and_separated_ones_a_regression() -> None:
    rule = Rule(GATED["train_samples_per_s"], 0.1)
    base = _rec(10.0, ci=[9.0, 11.0])
    # Tolerated value: the baseline's worst case 9.0 less 10 % = 8.1.
    noisy = check(rule, base, _rec(8.0, ci=[6.0, 9.5]))
    assert noisy.status == "inconclusive" and not noisy.fails()
    assert check(rule, base, _rec(7.5, ci=[7.0, 8.0])).fails()
    # Too few samples for an interval: a noisy figure cannot be judged, either way.
    few = check(rule, _rec(10.0, ci=[9.0, 11.0], n=2), _rec(8.0, ci=[6.0, 9.5], n=2))
    assert few.status == "inconclusive" and "no interval from >= 3 samples" in few.note


def test_a_zero_baseline_is_compared_by_value() -> None:
    rule = Rule(GATED["score"], 0.05)
    zero = {"accuracy": {"score": 0.0}}
    assert check(rule, zero, {"accuracy": {"score": 0.0}}).status == "passed"
    assert check(rule, zero, {"accuracy": {"score": 3.0}}).status == "passed"


def test_other_settings_are_refused() -> None:
    base = {"machine": {}, "settings": {"profile": "tiny", "train_budget": {"spec": "steps=4"}}, "records": [_rec()]}
    gate = gate_record(parse_fail_on("score:5%"), base, _rec(), {}, "b.json",
                       {"profile": "tiny", "train_budget": {"spec": "steps=8"}})
    assert "train_budget 'steps=4' vs 'steps=8'" in gate["refused"]


def test_unmeasured_and_estimated_figures_are_never_gated() -> None:
    rule = Rule(GATED["train_energy_j"], 0.1)
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
    assert mismatch({"cpu": "x"}, {"cpu": "x"}) is None


@given(base=st.floats(0.1, 1e6), factor=st.floats(0.0, 10.0), tol=st.floats(0.0, 1.0))
def test_a_check_fails_exactly_when_worse_beyond_tolerance(base: float, factor: float, tol: float) -> None:
    rule = Rule(GATED["train_samples_per_s"], tol)
    result = check(rule, _rec(base), _rec(base * factor))  # +-1 % intervals on both sides
    worse_by = (base - base * factor) / base
    if result.fails():
        assert worse_by > tol  # never a failure within the tolerance
    if worse_by > 1 - 0.98 * (1 - tol) + 1e-9:
        assert result.fails()  # beyond the tolerance by more than the intervals: always a failure
    if result.status == "passed":
        assert worse_by <= tol


def _latency(median: float, ci: list[float]) -> dict[str, object]:
    return {"id": "led-base-1024-qasper", "status": "passed",
            "inference": {"latency_s": {"stats": {"median": median, "ci95": ci, "n": 9}}}}


def test_lower_is_better_intervals_compare_current_low_end_with_baseline_high_end() -> None:
    """Guards against using the wrong end of an interval for a lower-is-better figure: the current best case is
    its LOW end, the baseline's worst case its HIGH end (tolerated value 1.1 x 1.1 = 1.21 here)."""
    rule = Rule(GATED["inference_latency_p50_s"], 0.1)
    base = _latency(1.0, [0.9, 1.1])
    # 50 % slower, but the current interval reaches down to 1.15 < 1.21: noise. Using ci[1] (1.6) or the
    # baseline's low end (0.99) would call it a regression.
    assert check(rule, base, _latency(1.5, [1.15, 1.6])).status == "inconclusive"
    # Best case 1.3 > 1.21: a regression. Using the baseline's high end scaled the wrong way (1.1 x 0.9) or the
    # current high end would agree, so a mutant swapping the comparison is caught by the case above.
    assert check(rule, base, _latency(1.5, [1.3, 1.6])).fails()


def test_higher_is_better_intervals_compare_current_high_end_with_baseline_low_end() -> None:
    rule = Rule(GATED["train_samples_per_s"], 0.1)
    base = _rec(10.0, ci=[9.0, 11.0])  # tolerated value 9.0 x 0.9 = 8.1
    assert check(rule, base, _rec(7.0, ci=[6.0, 8.5])).status == "inconclusive"  # using ci[0] would fail it
    assert check(rule, base, _rec(7.0, ci=[6.0, 8.0])).fails()


def test_metrics_are_the_record_figure_table() -> None:
    """Guards against the gate keeping a path table of its own that drifts from the record's."""
    assert figure("train_time_s") is None  # reported, not gated


def test_window_metrics_name_the_window_and_figure() -> None:
    fig = figure("window_decode_energy_net_j")
    assert fig is not None and fig.path == ("windows", "decode", "energy_net_j") and not fig.higher_is_better
    time_fig = figure("window_my_step_time_s")
    assert time_fig is not None and time_fig.ci_path == ("windows", "my_step", "time_s_stats", "ci95")
    assert figure("window__time_s") is None and figure("window_decode_speed") is None
    (rule,) = parse_fail_on("window_decode_time_s:5%")
    assert rule.applies({"kind": "window", "windows": {"decode": {}}})
    assert not rule.applies({"id": "led-base-1024-qasper"})
    (cell_rule,) = parse_fail_on("score:5%")
    assert not cell_rule.applies({"kind": "window", "windows": {"decode": {}}})


def test_a_window_regression_fails_by_its_time() -> None:
    rule = parse_fail_on("window_decode_time_s:10%")
    base = {"machine": {}, "records": [{"id": "t::x", "kind": "window", "status": "passed", "windows": {"decode": {
        "time_s": 1.0, "time_s_stats": {"ci95": [0.99, 1.01], "n": 5}}}}]}
    current = {"id": "t::x", "kind": "window", "windows": {"decode": {
        "time_s": 2.0, "time_s_stats": {"ci95": [1.98, 2.02], "n": 5}}}}
    gate = gate_record(rule, base, current, {}, "b.json")
    assert [c["status"] for c in gate["checks"]] == ["failed"] and gate_failures(gate)


def test_cpu_threads_decide_whether_a_serial_baseline_fits_a_parallel_run() -> None:
    """Workers sharing a CPU run with fewer torch threads each: their figures are not comparable to a serial
    run's, so the gate refuses such a baseline, and only then."""
    machine: dict[str, object] = {"device": "cpu", "cpu": "x", "cpu_threads": 2}
    base = {"machine": machine, "records": [_rec()]}
    rules = parse_fail_on("score:5%")
    assert "cpu_threads 2 vs 1" in gate_record(rules, base, _rec(), {**machine, "cpu_threads": 1},
                                               "b.json")["refused"]
    assert gate_record(rules, base, _rec(), dict(machine), "b.json")["refused"] is None


# -- acknowledged regressions -----------------------------------------------------------------------------------------
def test_an_acknowledged_regression_is_reported_with_its_reason_not_failed() -> None:
    import datetime as dt

    from pytest_longeff.gate.acknowledge import Ack

    base = {"machine": {}, "settings": {}, "records": [_rec(10.0)]}
    rules = parse_fail_on("train_samples_per_s:10%")
    ack = Ack("led-base-*", "train_samples_per_s", "slower kernel, accepted in #12")
    gate = gate_record(rules, base, _rec(5.0), {}, "b.json", None, [ack])
    (c,) = gate["checks"]
    assert c["status"] == "acknowledged" and "slower kernel, accepted in #12" in c["note"]
    assert gate_failures(gate) == []
    expired = Ack("*", "train_samples_per_s", "old", until=dt.date(2000, 1, 1))
    assert gate_failures(gate_record(rules, base, _rec(5.0), {}, "b.json", None, [expired]))


def test_acknowledged_files_in_toml_and_json(tmp_path: object) -> None:
    import datetime as dt
    from pathlib import Path

    from pytest_longeff.gate.acknowledge import load_acknowledged

    d = Path(str(tmp_path))
    (d / "a.toml").write_text('[[acknowledged]]\ncell = "led-*"\nmetric = "train_samples_per_s"\n'
                              'reason = "accepted"\nuntil = 2030-01-31\n')
    (ack,) = load_acknowledged(d / "a.toml")
    assert (ack.cell, ack.metric, ack.reason, ack.until) == ("led-*", "train_samples_per_s", "accepted",
                                                             dt.date(2030, 1, 31))
    (d / "a.json").write_text('[{"metric": "score", "reason": "new tokenizer", "until": "2030-01-31"}]')
    (ack,) = load_acknowledged(d / "a.json")
    assert ack.cell == "*" and ack.until == dt.date(2030, 1, 31)
    needs_reason = "entry 1: an acknowledged regression needs a reason"
    for text, message in (('{"acknowledged": [{"metric": "score"}]}', needs_reason),
                          ('[{"metric": "speed", "reason": "x"}]', "unknown metric 'speed'"),
                          ('[{"metric": "score", "reason": "x", "until": "soon"}]', "'until' must be a date"),
                          ('[{"metric": "score", "reason": "x", "who": "me"}]', "unknown keys who"),
                          ('{"acknowledged": 3}', "expected a list"), ("{", "acknowledged file")):
        (d / "bad.json").write_text(text)
        with pytest.raises(ValueError, match=message):
            load_acknowledged(d / "bad.json")


# -- drift correction by the machine-speed reference ----------------------------------------------------------------
REF_METHOD = "reference block v1"


def _timed(tput: float, ref: float | None, latency: float | None = None, energy: float | None = None,
           method: str = REF_METHOD) -> dict[str, object]:
    """A record with train throughput (+-2 % CI), optional latency (+-2 %), energy and machine-speed reference."""
    out: dict[str, object] = {
        "id": "led-base-1024-qasper", "status": "passed", "batch_size": 2,
        "train": {"samples_per_s_stats": {"median": tput, "ci95": [tput * 0.98, tput * 1.02], "n": 5},
                  "energy_j": energy, "energy_method": "rapl",
                  "energy_uncertainty_j": None if energy is None else energy * 0.01}}
    if latency is not None:
        out["inference"] = {"latency_s": {"stats": {"median": latency, "ci95": [latency * 0.98, latency * 1.02],
                                                    "n": 5}}}
    if ref is not None:
        out["reference"] = {"ops_per_s": ref, "method": method,
                            "stats": {"n": 14, "median": ref, "ci95": [ref * 0.99, ref * 1.01]}}
    return out


TPUT_RULE = Rule(GATED["train_samples_per_s"], 0.1)
LAT_RULE = Rule(GATED["inference_latency_p50_s"], 0.1)


def test_a_common_mode_slowdown_seen_by_the_reference_passes() -> None:
    # The machine runs 15 % slower now: the cell's throughput and the reference both dropped 15 %.
    base, cur = _timed(10.0, ref=100.0), _timed(8.5, ref=85.0)
    c = check(TPUT_RULE, base, cur)
    assert c.status == "passed"
    assert c.current == pytest.approx(10.0)  # 8.5 x 100 / 85
    assert c.change == pytest.approx(0.0, abs=1e-12)
    assert "drift-corrected by the machine-speed reference: x1.18 (machine at 0.85" in c.note
    # Without the reference the same figures are a regression (-15 %, intervals apart).
    assert check(TPUT_RULE, base, _timed(8.5, ref=None)).fails()


def test_a_slowdown_of_the_cell_alone_fails() -> None:
    # Same machine speed (reference unchanged), the cell 20 % slower: a real regression.
    c = check(TPUT_RULE, _timed(10.0, ref=100.0), _timed(8.0, ref=100.0))
    assert c.fails() and c.current == pytest.approx(8.0) and c.change == pytest.approx(-0.2)
    # A 20 % slower cell on a 15 % slower machine: corrected 6.8 x 100/85 = 8.0, still -20 %.
    c = check(TPUT_RULE, _timed(10.0, ref=100.0), _timed(6.8, ref=85.0))
    assert c.fails() and c.current == pytest.approx(8.0) and c.change == pytest.approx(-0.2)


def test_a_faster_machine_does_not_hide_a_regression() -> None:
    # The machine is 25 % faster now and the cell only 5 % faster: corrected 10.5 / 1.25 = 8.4, -16 %.
    c = check(TPUT_RULE, _timed(10.0, ref=100.0), _timed(10.5, ref=125.0))
    assert c.fails() and c.current == pytest.approx(8.4)


def test_latency_is_corrected_the_other_way() -> None:
    # A 15 % slower machine raises latency by 1/0.85: the correction multiplies it by 0.85 (lower is better).
    c = check(LAT_RULE, _timed(10.0, 100.0, latency=0.1), _timed(8.5, 85.0, latency=0.1 / 0.85))
    assert c.status == "passed" and c.current == pytest.approx(0.1) and "x0.85 " in c.note
    # On a 20 % faster machine an unchanged latency is 25 % worse than the machine allows: 0.1 x 1.2 = 0.12.
    c = check(LAT_RULE, _timed(10.0, 100.0, latency=0.1), _timed(10.0, 120.0, latency=0.1))
    assert c.fails() and c.current == pytest.approx(0.12)


@pytest.mark.parametrize(("base_ref", "cur_ref", "method"), [(100.0, None, REF_METHOD), (None, 85.0, REF_METHOD),
                                                            (100.0, 85.0, "reference block v0")])
def test_no_correction_without_a_reference_on_both_sides(base_ref: float | None, cur_ref: float | None,
                                                         method: str) -> None:
    c = check(TPUT_RULE, _timed(10.0, ref=base_ref), _timed(8.5, ref=cur_ref, method=method))
    assert c.fails() and c.current == pytest.approx(8.5) and "drift" not in c.note


def test_energy_and_memory_are_never_drift_corrected() -> None:
    energy = Rule(GATED["train_energy_j"], 0.1)
    c = check(energy, _timed(10.0, 100.0, energy=100.0), _timed(8.5, 85.0, energy=115.0))
    assert c.fails() and c.current == pytest.approx(115.0) and "drift" not in c.note


def test_the_run_level_gate_is_drift_corrected_too() -> None:
    from pytest_longeff.gate.check import judge_run

    cells = [f"c{i}" for i in range(6)]
    base = {"machine": {}, "settings": {},
            "records": [{**_timed(10.0 + i, 100.0), "id": cell} for i, cell in enumerate(cells)]}
    # The whole run 15 % slower, reference included: no regression, the suite ratio is 1.
    slow = [{**_timed(0.85 * (10.0 + i), 85.0), "id": cell} for i, cell in enumerate(cells)]
    verdict = judge_run([TPUT_RULE], base, slow)
    assert not verdict.fails()
    assert verdict.suite[0].ratio == pytest.approx(1.0) and verdict.suite[0].corrected == 6
    pair = verdict.fdr[0].pair
    assert pair.drift == pytest.approx(1 / 0.85) and verdict.fdr[0].to_dict()["drift_factor"] == pair.drift
    # The reference's own noise widens the standard error: hypot of four +-1 %/+-2 % intervals.
    se = math.hypot(*[math.log(1.02 / 0.98) / 3.919927969080108] * 2, *[math.log(1.01 / 0.99) / 3.919927969080108] * 2)
    assert pair.se == pytest.approx(se)
    # Without references the same run fails, per cell and by the suite rule.
    bare = judge_run([TPUT_RULE], base, [{k: v for k, v in r.items() if k != "reference"} for r in slow])
    assert bare.fails() and bare.suite[0].ratio == pytest.approx(0.85) and bare.suite[0].corrected == 0
    # A 20 % slowdown of the cells alone (reference unchanged) fails the run.
    assert judge_run([TPUT_RULE], base, [{**_timed(0.8 * (10.0 + i), 100.0), "id": c}
                                         for i, c in enumerate(cells)]).fails()


def test_a_check_says_when_the_two_sides_ran_another_recipe() -> None:
    rule = Rule(GATED["train_samples_per_s"], 0.1)
    base, cur = _rec(10.0), _rec(8.0)
    assert "recipe" not in check(rule, base, cur).note  # no model_config on either side: the defaults, the same
    cur["model_config"] = {"gradient_checkpointing": True, "attn_implementation": "eager"}
    c = check(rule, base, cur)
    assert c.fails()  # said, not excused: checkpointing making training slower is a regression a gate reports
    assert c.note.endswith("; the two sides ran another recipe (gradient checkpointing False vs True)")
    base["model_config"] = {"attn_implementation": "sdpa"}
    assert check(rule, base, cur).note.endswith("(gradient checkpointing False vs True; attention implementation "
                                                "'sdpa' vs 'eager')")

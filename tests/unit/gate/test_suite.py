"""The run-level gate: p-values, Benjamini-Hochberg, the suite rule and acknowledged regressions."""

from __future__ import annotations

import itertools
import math
import random
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.scripts import load_script

from pytest_longeff.ci.compare import compare_docs
from pytest_longeff.gate.acknowledge import Ack
from pytest_longeff.gate.check import judge_run, parse_fail_on
from pytest_longeff.gate.suite import (
    RunVerdict,
    benjamini_hochberg,
    log_se,
    normal_cdf,
    p_beyond,
    terminal_lines,
    threshold,
)
from pytest_longeff.record.figures import GATED

TPUT = parse_fail_on("train_samples_per_s:10%")


def rec(cell: str, tput: float, half: float = 0.03, n: int = 5, status: str = "passed") -> dict[str, Any]:
    return {"id": cell, "status": status, "batch_size": 2,
            "train": {"samples_per_s_stats": {"median": tput, "ci95": [tput * (1 - half), tput * (1 + half)],
                                              "n": n}}}


def doc(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema_version": 1, "machine": {"cpu": "x"}, "settings": {}, "records": records}


def test_normal_cdf_matches_known_values() -> None:
    assert normal_cdf(0) == pytest.approx(0.5)
    assert normal_cdf(1.959963984540054) == pytest.approx(0.975)
    assert normal_cdf(-1.6448536269514722) == pytest.approx(0.05)


def test_benjamini_hochberg_matches_the_textbook_example() -> None:
    # p-values and BH-adjusted values as R's p.adjust(method = "BH") gives them.
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    assert benjamini_hochberg(p) == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    assert benjamini_hochberg([]) == []


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_adjusted_values_are_bounded_and_keep_the_order(p: list[float]) -> None:
    q = benjamini_hochberg(p)
    assert all(pi <= qi + 1e-12 and qi <= 1 for pi, qi in zip(p, q, strict=True))
    order = sorted(range(len(p)), key=lambda i: p[i])
    assert all(q[a] <= q[b] + 1e-12 for a, b in itertools.pairwise(order))


def test_threshold_and_standard_error() -> None:
    tput, energy = GATED["train_samples_per_s"], GATED["train_energy_j"]
    assert math.exp(-threshold(tput, 0.1)) == pytest.approx(0.9)  # throughput may drop to 90 %
    assert math.exp(threshold(energy, 0.1)) == pytest.approx(1.1)  # energy may rise to 110 %
    assert threshold(tput, 1.0) == math.inf
    assert log_se((9.0, 11.0)) == pytest.approx((math.log(11) - math.log(9)) / 3.92, rel=1e-3)
    assert log_se(None) is None and log_se((0.0, 1.0)) is None
    assert p_beyond(0.1, None) == 0.0 and p_beyond(-0.1, 0.0) == 1.0
    assert p_beyond(0.0, 0.05) == pytest.approx(0.5)


def test_noise_within_the_tolerance_is_no_alarm_over_a_large_matrix() -> None:
    rng = random.Random(1)
    base = doc([rec(f"c{i}", 10.0) for i in range(64)])
    new = [rec(f"c{i}", 10.0 * math.exp(rng.gauss(0, 0.03))) for i in range(64)]
    verdict = judge_run(TPUT, base, new)
    assert not verdict.fails()
    assert len(verdict.fdr) == 64 and verdict.suite[0].verdict == "passed"


def test_a_uniform_slowdown_fails_the_suite_rule_and_the_cells() -> None:
    base = doc([rec(f"c{i}", 10.0) for i in range(8)])
    verdict = judge_run(TPUT, base, [rec(f"c{i}", 7.5) for i in range(8)])
    (suite,) = verdict.suite
    assert suite.verdict == "failed" and suite.ratio == pytest.approx(0.75) and suite.cells == 8
    assert len(verdict.regressions) == 8 and verdict.fails()


def test_a_borderline_cell_among_many_is_judged_by_the_fdr() -> None:
    # 15 % slower with wide intervals: within noise per cell, and no discovery among 20 unchanged cells.
    base = doc([rec(f"c{i}", 10.0, half=0.1) for i in range(20)])
    new = [rec("c0", 8.5, half=0.1), *(rec(f"c{i}", 10.0, half=0.1) for i in range(1, 20))]
    verdict = judge_run(TPUT, base, new)
    assert verdict.fdr[0].verdict == "ok" and not verdict.fails()
    # Tight intervals: 30 % slower is a discovery even among many unchanged cells.
    new[0] = rec("c0", 7.0, half=0.01)
    verdict = judge_run(TPUT, base, new)
    assert [v.pair.cell for v in verdict.regressions] == ["c0"]
    assert verdict.suite[0].verdict == "passed"  # one slow cell of 20 does not move the geometric mean by 10 %


def test_acknowledged_regressions_pass_with_their_reason() -> None:
    base = doc([rec(f"c{i}", 10.0) for i in range(4)])
    acks = [Ack("c*", "train_samples_per_s", "checkpointing on"), Ack("suite", "train_samples_per_s", "same")]
    verdict = judge_run(TPUT, base, [rec(f"c{i}", 7.0) for i in range(4)], acks)
    assert not verdict.fails()
    assert {v.verdict for v in verdict.fdr} == {"acknowledged"} and verdict.fdr[0].reason == "checkpointing on"
    assert verdict.suite[0].verdict == "no data"  # acknowledged cells are out of the suite's geometric mean
    # One cell acknowledged, three unchanged: the suite reads the three, not a mean dragged by the accepted one.
    part = judge_run(TPUT, base, [rec("c0", 7.0), *(rec(f"c{i}", 10.0) for i in range(1, 4))],
                     [Ack("c0", "train_samples_per_s", "checkpointing on")])
    assert part.suite[0].cells == 3 and part.suite[0].ratio == pytest.approx(1.0)


def test_lost_cells_refusals_and_the_report_form() -> None:
    base = doc([rec("a", 10.0), rec("b", 10.0), rec("c", 10.0)])
    verdict = judge_run(TPUT, base, [rec("a", 10.0), rec("b", 10.0, status="skipped")])
    assert verdict.lost == ("b",) and verdict.fails()
    d = verdict.to_dict()
    assert d["failed"] and d["suite"]["train_samples_per_s"]["cells"] == 1 and d["fdr"][0]["cell"] == "a"
    assert any("not run" in n for n in d["notes"])
    refused = judge_run(TPUT, base, [], current_machine={"cpu": "y"})
    assert refused.fails() and "another machine" in str(refused.refused)
    assert terminal_lines(refused)[0].startswith("longeff gate: refused")


def test_terminal_lines_list_suite_and_flagged_pairs() -> None:
    base = doc([rec(f"c{i}", 10.0) for i in range(3)])
    lines = terminal_lines(judge_run(TPUT, base, [rec(f"c{i}", 5.0) for i in range(3)]))
    assert "FAILED" in lines[0]
    assert any(line.startswith("  suite train_samples_per_s: failed, geometric mean change -50.0%") for line in lines)
    assert sum("regression c" in line for line in lines) == 3
    assert terminal_lines(RunVerdict(), limit=0)[0].startswith("longeff gate over the run: passed")


def test_importing_the_gate_loads_no_heavy_module() -> None:
    code = ("import sys, pytest_longeff.gate.check, pytest_longeff.gate.plugin, pytest_longeff.ci.compare, "
            "pytest_longeff.report.github; print(sorted({'torch', 'scipy', 'numpy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _replay_module() -> Any:
    return load_script("gate_replay")


def test_the_replay_benchmark_scales_throughput_and_counts_pairs() -> None:
    replay = _replay_module()
    rng = random.Random(3)
    docs = [doc([rec(f"c{i}", 10.0 * math.exp(rng.gauss(0, 0.01))) for i in range(6)]) for _ in range(4)]
    slow = replay.slowed(docs[0], 0.2)
    stats = slow["records"][0]["train"]["samples_per_s_stats"]
    assert stats["median"] == pytest.approx(0.8 * docs[0]["records"][0]["train"]["samples_per_s_stats"]["median"])
    assert docs[0]["records"][0]["train"]["samples_per_s_stats"]["median"] > stats["median"]  # a copy
    counts = replay.replay(docs, "train_samples_per_s:10%", 1)
    assert counts["unchanged"] == (0, 12) and counts["slowdown 20%"] == (12, 12)


def test_the_replay_remeasures_a_burst_away_but_not_a_regression() -> None:
    """A cell hit by a burst in its first measurement takes its next one (as the plugin's --longeff-remeasure would);
    an injected slowdown is in every measurement of the cell, so the gate still finds it."""
    replay = _replay_module()
    base = doc([rec(f"c{i}", 10.0) for i in range(4)])
    burst = rec("c0", 6.0)
    burst["_again"] = [rec("c0", 10.1)]
    new = doc([burst, *(rec(f"c{i}", 10.0) for i in range(1, 4))])
    assert compare_docs(base, replay.remeasured(base, new, parse_fail_on("train_samples_per_s:10%"), 0),
                        parse_fail_on("train_samples_per_s:10%")).fails()  # one measurement: a false alarm
    rules = parse_fail_on("train_samples_per_s:10%")
    settled = replay.remeasured(base, new, rules, 1)
    first = settled["records"][0]
    # The first measurement stays in the record (nothing selected); the gate judged both measurements pooled.
    assert first["train"]["samples_per_s_stats"]["median"] == 6.0 and "_again" not in first
    assert first["remeasured"]["kept"] == 1 and first["remeasured"]["pooled"]["train_samples_per_s"]["values"] == \
        [6.0, 10.1]
    assert first["remeasured"]["first_why"][0].startswith("train_samples_per_s -40.0%")
    assert not compare_docs(base, settled, rules).fails()  # two measurements that disagree: no false alarm
    slow = replay.slowed(new, 0.2)
    assert slow["records"][0]["_again"][0]["train"]["samples_per_s_stats"]["median"] == pytest.approx(8.08)
    assert compare_docs(base, replay.remeasured(base, slow, rules, 1), rules).verdict() != "no regression"

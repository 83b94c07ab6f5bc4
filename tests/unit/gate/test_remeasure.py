"""Measuring a suspect cell again: which cells are suspect, which measurement stands, what the record keeps."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pytest_longeff.gate.remeasure import earlier, noisy, pool, run_note, settle, suspects


def _gate(*statuses: str, change: float = -0.25, metric: str = "train_samples_per_s") -> dict[str, Any]:
    return {"refused": None, "checks": [{"metric": metric, "status": s, "change": change, "tolerance": 0.1}
                                        for s in statuses]}


def test_suspect_means_a_noisy_figure_worse_than_the_tolerance_and_not_acknowledged() -> None:
    assert suspects(_gate("failed")) == ["train_samples_per_s -25.0% (tolerance 10%, failed)"]
    assert suspects(_gate("passed", "inconclusive")) == ["train_samples_per_s -25.0% (tolerance 10%, inconclusive)"]
    assert suspects(_gate("inconclusive", change=-0.05)) == []  # inconclusive but not worse than the tolerance
    for quiet in ("passed", "acknowledged", "unmeasured", "not_gated"):
        assert suspects(_gate(quiet)) == []
    assert suspects(None) == [] and suspects({}) == []
    assert suspects({"refused": "another machine", "checks": _gate("failed")["checks"]}) == []  # nothing to repeat


@pytest.mark.parametrize("metric", ["score", "train_peak_memory_bytes", "batch_size", "window_decode_peak_memory_bytes",
                                    "no_such_figure"])
def test_figures_that_come_out_the_same_every_time_never_make_a_cell_suspect(metric: str) -> None:
    """A memory regression or a score change is found as surely by one measurement as by three."""
    assert not noisy(metric) and suspects(_gate("failed", metric=metric)) == []


@pytest.mark.parametrize("metric", ["train_samples_per_s", "inference_latency_p50_s", "train_energy_j",
                                    "inference_j_per_sample", "train_samples_per_kj", "window_decode_time_s",
                                    "window_decode_energy_net_j"])
def test_times_throughputs_and_energies_are_noisy(metric: str) -> None:
    assert noisy(metric)


def _rate(value: float, half: float = 0.05, n: int = 5) -> dict[str, Any]:
    """A measurement whose train throughput is ``value`` with a 95 % CI of ``value * (1 -+ half)``."""
    return {"id": "c", "train": {"samples_per_s_stats": {"median": value, "ci95": [value * (1 - half),
                                                                                    value * (1 + half)], "n": n}}}


def _measurements(*values: float) -> tuple[list[dict[str, Any]], Any, Any]:
    """Measurements in order with the given train throughputs, judged against a baseline of 10 samples/s (10 %
    tolerated); ``judge`` and ``again`` over them."""
    made = [_rate(values[0])]

    def judge(m: dict[str, Any]) -> dict[str, Any]:
        value = m["train"]["samples_per_s_stats"]["median"]
        change = value / 10.0 - 1
        return _gate("passed", change=change) if change >= -0.1 else _gate("failed", change=change)

    def again() -> dict[str, Any]:
        made.append(_rate(values[len(made)]))
        return made[-1]

    return made, judge, again


def test_a_burst_in_the_first_measurement_is_pooled_with_the_next_not_replaced() -> None:
    made, judge, again = _measurements(6.0, 10.0)
    final, section = settle(made[0], judge, again, 1, dict)
    assert final is made[0] and len(made) == 2
    assert section is not None and section["measurements"] == 2 and section["kept"] == 1
    pooled = section["pooled"]["train_samples_per_s"]
    assert pooled["values"] == [6.0, 10.0] and pooled["geometric_mean"] == pytest.approx(60**0.5)
    assert [o["measurement"] for o in section["others"]] == [2]


def test_a_suspect_first_measurement_gets_every_further_measurement_not_until_one_looks_fine() -> None:
    """Stopping at the first measurement that is not suspect would end every pool on a good value."""
    made, judge, again = _measurements(6.0, 10.0, 6.0, 6.5)
    final, section = settle(made[0], judge, again, 3, dict)
    assert final is made[0] and len(made) == 4
    assert section is not None and section["pooled"]["train_samples_per_s"]["values"] == [6.0, 10.0, 6.0, 6.5]


def test_every_measurement_counts_so_the_verdict_is_not_the_mildest_one() -> None:
    """Keeping the least suspect measurement biased the gate toward passing; the pooled figure does not pick."""
    made, judge, again = _measurements(7.0, 5.0, 8.5)
    final, section = settle(made[0], judge, again, 2, dict)
    assert len(made) == 3 and final is made[0]
    assert section is not None
    mean = section["pooled"]["train_samples_per_s"]["geometric_mean"]
    assert mean == pytest.approx((7.0 * 5.0 * 8.5) ** (1 / 3))
    assert mean < 8.5  # the mildest measurement (8.5, a -15 % change) is not what the gate sees


def test_the_pooled_interval_takes_the_spread_between_measurements() -> None:
    record, pooled = pool([_rate(10.0, 0.01), _rate(5.0, 0.01)])
    low, high = record["train"]["samples_per_s_stats"]["ci95"]
    assert low < 5.0 * 1.01 and high > 10.0 * 0.99  # far apart measurements: the interval spans both
    assert record["train"]["samples_per_s_stats"]["median"] == pytest.approx(50**0.5)
    assert pooled["train_samples_per_s"]["log_se"] == pytest.approx(math.log(2) / 2)
    assert math.log(high / low) / 2 == pytest.approx(1.959963984540054 * math.log(2) / 2)  # worked by hand


def test_a_measurement_without_an_interval_leaves_the_pooled_figure_without_one() -> None:
    bare = _rate(5.0)
    bare["train"]["samples_per_s_stats"]["ci95"] = None
    record, _ = pool([_rate(10.0, 0.01), bare])
    assert record["train"]["samples_per_s_stats"]["ci95"] is None
    assert record["train"]["samples_per_s_stats"]["median"] == pytest.approx(50**0.5)


def test_a_failure_while_measuring_again_keeps_what_was_measured() -> None:
    """A measurement that cannot be repeated (out of memory, a skip) still stands, and the record says why measuring
    again stopped."""
    made, judge, _ = _measurements(6.0)

    def broken() -> dict[str, Any]:
        raise RuntimeError("CUDA out of memory")

    final, section = settle(made[0], judge, broken, 2, dict)
    assert final is made[0]
    assert section is not None and section["measurements"] == 1 and section["others"] == []
    assert section["stopped"] == "measuring again failed: RuntimeError: CUDA out of memory"


@pytest.mark.parametrize("limit", [0, -1])
def test_no_remeasurement_at_limit_zero(limit: int) -> None:
    made, judge, again = _measurements(6.0, 10.0)
    assert settle(made[0], judge, again, limit, dict) == (made[0], None) and len(made) == 1


def test_a_clean_first_measurement_stands_alone() -> None:
    made, judge, again = _measurements(10.0, 10.0)
    assert settle(made[0], judge, again, 5, dict) == (made[0], None) and len(made) == 1


def test_earlier_keeps_the_measured_sections_only() -> None:
    rec = {"id": "x", "train": 1, "inference": 2, "reference": 3, "cell_wall_s": 4.0, "batch_size": 2, "score": 9,
           "_predictions": {}}
    assert earlier(rec, 2, ["why"]) == {"measurement": 2, "why": ["why"], "train": 1, "inference": 2, "reference": 3,
                                        "cell_wall_s": 4.0, "batch_size": 2}


def test_the_run_note_names_cells_measured_again_in_this_run() -> None:
    assert run_note([{"id": "a"}]) is None
    one = run_note([{"id": "a", "remeasured": {"kept": 2}}, {"id": "b"},
                    {"id": "c", "remeasured": {"kept": 1}, "carried_over": True}])  # measured again in another run
    assert one == ("1 cell was measured again after a suspect measurement (--longeff-remeasure; the gate judged the "
                   "figures pooled over every measurement): a")
    many = [{"id": f"c{i}", "remeasured": {"kept": 1}} for i in range(7)]
    assert run_note(many) == ("7 cells were measured again after a suspect measurement (--longeff-remeasure; the "
                              "gate judged the figures pooled over every measurement): c0, c1, c2, c3, c4 ...")


def test_the_machine_speed_references_are_pooled_with_the_figures() -> None:
    """A burst that slowed the first measurement slowed its reference too: the pooled time figure is corrected by
    the pooled machine speed, not the first measurement's."""
    first, second = _rate(5.0), _rate(10.0)
    first["reference"] = {"ops_per_s": 50.0, "method": "m", "stats": {"ci95": [49.0, 51.0], "n": 6}}
    second["reference"] = {"ops_per_s": 100.0, "method": "m", "stats": {"ci95": [98.0, 102.0], "n": 6}}
    record, pooled = pool([first, second])
    assert record["reference"]["ops_per_s"] == pytest.approx((50 * 100) ** 0.5)
    assert pooled["reference"]["values"] == [50.0, 100.0]
    assert record["reference"]["method"] == "m" and first["reference"]["ops_per_s"] == 50.0  # inputs untouched

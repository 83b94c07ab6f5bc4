"""Measuring a suspect cell again: which cells are suspect, which measurement stands, what the record keeps."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_longeff.gate.remeasure import badness, earlier, noisy, run_note, settle, suspects


def _gate(*statuses: str, change: float = -0.25, metric: str = "train_samples_per_s") -> dict[str, Any]:
    return {"refused": None, "checks": [{"metric": metric, "status": s, "change": change, "tolerance": 0.1}
                                        for s in statuses]}


def test_suspect_means_a_noisy_figure_worse_than_the_tolerance_and_not_acknowledged() -> None:
    assert suspects(_gate("failed")) == ["train_samples_per_s -25.0% (tolerance 10%, failed)"]
    assert suspects(_gate("passed", "within_noise")) == ["train_samples_per_s -25.0% (tolerance 10%, within_noise)"]
    for quiet in ("passed", "acknowledged", "unmeasured", "not_gated"):
        assert suspects(_gate(quiet)) == []
    assert suspects(None) == [] and suspects({}) == []
    assert suspects({"refused": "another machine", "checks": _gate("failed")["checks"]}) == []  # nothing to repeat


@pytest.mark.parametrize("metric", ["score", "train_peak_memory_bytes", "batch_size", "window_decode_peak_memory_bytes",
                                    "no_such_figure"])
def test_figures_that_come_out_the_same_every_time_never_make_a_cell_suspect(metric: str) -> None:
    """A memory regression or a score change is found as surely by one measurement as by three."""
    assert not noisy(metric) and suspects(_gate("failed", metric=metric)) == []
    assert badness(_gate("failed", metric=metric)) == (0, 0.0)


@pytest.mark.parametrize("metric", ["train_samples_per_s", "inference_latency_p50_s", "train_energy_j",
                                    "inference_j_per_sample", "train_samples_per_kj", "window_decode_time_s",
                                    "window_decode_energy_net_j"])
def test_times_throughputs_and_energies_are_noisy(metric: str) -> None:
    assert noisy(metric)


def test_badness_ranks_a_measurement_that_would_pass_before_one_that_would_fail() -> None:
    assert badness(_gate("passed")) == (0, 0.0) and badness(None) == (0, 0.0)
    failed, excess = badness(_gate("failed"))
    assert failed == 1 and excess == pytest.approx(0.15)  # throughput 25 % lower, 10 % tolerated
    failed, excess = badness(_gate("within_noise", change=0.3, metric="inference_j_per_sample"))
    assert failed == 0 and excess == pytest.approx(0.2)  # lower is better: 30 % more energy, 10 % tolerated
    # One figure failing by a wide margin is worse than two within the noise just past the line.
    near = {"refused": None, "checks": [*_gate("within_noise", change=-0.11)["checks"],
                                        *_gate("within_noise", change=0.11, metric="inference_j_per_sample")["checks"]]}
    assert badness(near) < badness(_gate("failed", change=-0.5))
    assert badness(_gate("failed")) < badness(_gate("failed", change=-0.5)) < badness(_gate("failed", "failed"))


def _measurements(*changes: float | None) -> tuple[list[dict[str, Any]], Any, Any]:
    """Measurements numbered in order, each with a train throughput change against the baseline (None: within
    tolerance); ``judge`` and ``again`` over them."""
    made = [{"n": 0, "train": {"v": 0}}]

    def judge(m: dict[str, Any]) -> dict[str, Any]:
        change = changes[m["n"]]
        return _gate("passed", change=0.0) if change is None else _gate("failed", change=change)

    def again() -> dict[str, Any]:
        made.append({"n": len(made), "train": {"v": len(made)}})
        return made[-1]

    return made, judge, again


def test_a_burst_in_the_first_measurement_gives_way_to_a_clean_one() -> None:
    made, judge, again = _measurements(-0.4, None, -0.4)
    final, section = settle(made[0], judge, again, 3, dict)
    assert final["n"] == 1 and len(made) == 2  # stops at the first measurement that is not suspect
    assert section == {"measurements": 2, "kept": 2, "others": [
        {"measurement": 1, "why": ["train_samples_per_s -40.0% (tolerance 10%, failed)"], "train": {"v": 0}}]}


def test_a_regression_in_every_measurement_stands_as_the_least_suspect_one() -> None:
    made, judge, again = _measurements(-0.3, -0.5, -0.25, -0.4)
    final, section = settle(made[0], judge, again, 2, dict)
    assert len(made) == 3 and final["n"] == 2  # measured twice more, no more; -25 % is the mildest
    assert section is not None and section["kept"] == 3 and [o["measurement"] for o in section["others"]] == [1, 2]
    assert suspects(judge(final))  # still worse than the tolerance: the gate judges it a regression


def test_a_worse_second_measurement_leaves_the_first_standing() -> None:
    made, judge, again = _measurements(-0.2, -0.6)
    final, section = settle(made[0], judge, again, 1, dict)
    assert final is made[0] and section is not None and section["kept"] == 1
    assert [o["measurement"] for o in section["others"]] == [2]


def test_equally_suspect_measurements_keep_the_first() -> None:
    made, judge, again = _measurements(-0.3, -0.3)
    final, section = settle(made[0], judge, again, 1, dict)
    assert final is made[0] and section is not None and section["kept"] == 1


def test_a_failure_while_measuring_again_keeps_what_was_measured() -> None:
    """A measurement that cannot be repeated (out of memory, a skip) still stands, and the record says why measuring
    again stopped."""
    made, judge, _ = _measurements(-0.4)

    def broken() -> dict[str, Any]:
        raise RuntimeError("CUDA out of memory")

    final, section = settle(made[0], judge, broken, 2, dict)
    assert final is made[0]
    assert section == {"measurements": 1, "kept": 1, "others": [],
                       "stopped": "measuring again failed: RuntimeError: CUDA out of memory"}


@pytest.mark.parametrize("limit", [0, -1])
def test_no_remeasurement_at_limit_zero(limit: int) -> None:
    made, judge, again = _measurements(-0.4, None)
    assert settle(made[0], judge, again, limit, dict) == (made[0], None) and len(made) == 1


def test_a_clean_first_measurement_stands_alone() -> None:
    made, judge, again = _measurements(None, None)
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
    assert one == ("1 cell was measured again after a suspect measurement (--longeff-remeasure; the least suspect "
                   "measurement stands): a")
    many = [{"id": f"c{i}", "remeasured": {"kept": 1}} for i in range(7)]
    assert run_note(many) == ("7 cells were measured again after a suspect measurement (--longeff-remeasure; the "
                              "least suspect measurement stands): c0, c1, c2, c3, c4 ...")

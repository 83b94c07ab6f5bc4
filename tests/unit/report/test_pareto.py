"""The Pareto front: computed over records, ties kept, unmeasured costs left out with a note."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from support.report_variants import merged, single_cell, skipped_and_failed, small, with_energy

from pytest_longeff.report import pareto
from pytest_longeff.report.pareto import Point, dominates, find, front, front_ids

values = st.integers(min_value=0, max_value=6).map(float)  # small ranges: many ties
points = st.lists(st.builds(Point, st.uuids().map(str), values, values), max_size=25)


@given(points)
def test_no_member_is_dominated_and_every_other_point_is(ps: list[Point]) -> None:
    ids = set(front_ids(ps))
    members = [p for p in ps if p.id in ids]
    for m in members:
        assert not any(dominates(p, m) for p in ps)
    for p in ps:
        if p.id not in ids:
            assert any(dominates(m, p) for m in members)
    assert bool(ps) == bool(members)


def test_ties_stay_on_the_front_and_order_is_by_cost() -> None:
    ps = [Point("a", 5, 2), Point("b", 5, 2), Point("c", 9, 4), Point("d", 4, 3), Point("e", 9, 4.5)]
    assert front_ids(ps) == ["a", "b", "c"]


def test_front_of_a_real_report_uses_time_when_energy_is_missing() -> None:
    doc = small()
    result = front(doc)
    assert set(result["costs"]) == set(pareto.COSTS)
    energy = find(result, "gov_report", "inference_j_per_sample")
    assert energy is not None and energy["front"] == [] and energy["points"] == 0
    assert energy["unmeasured"] == ["led-base-1024-gov_report"] and "not measured" in energy["note"]
    latency = find(result, "gov_report", "inference_latency_p50_s")
    assert latency is not None and latency["front"] == ["led-base-1024-gov_report"] and latency["note"] is None


def test_partly_measured_energy_leaves_the_unmeasured_cells_out_with_a_note() -> None:
    doc = with_energy(skipped_and_failed(), every=2)
    f = find(front(doc), "gov_report", "train_energy_j")
    assert f is not None
    measured = {r["id"] for i, r in enumerate(doc["records"]) if i % 2 == 0 and r["task"] == "gov_report"
                and r.get("accuracy")}
    assert set(f["front"]) <= measured and f["front"]
    assert "led-base-4096-gov_report" in f["unscored"]  # the skipped cell
    assert f["unmeasured"] and "left out" in f["note"]


def test_machines_get_their_own_fronts() -> None:
    result = front(merged())
    machines = {f["machine"] for f in result["fronts"]}
    assert machines == {"m1", "m2"}
    a = find(result, "qasper", "train_time_s", "m1")
    assert a is not None and a["front"] == ["bigbird-large-2048-qasper"]


def test_single_cell_and_empty_report() -> None:
    f = find(front(single_cell()), "gov_report", "train_time_s")
    assert f is not None and f["front"] == ["led-base-1024-gov_report"]
    assert front({"records": []})["fronts"] == []


def test_machine_label_forms() -> None:
    assert pareto.machine_label({}) is None
    assert pareto.machine_label({"machine": "runner-3"}) == "runner-3"
    assert pareto.machine_label({"machine": {"cpu": "x", "name": "gpu-a"}}) == "gpu-a"
    assert str(pareto.machine_label({"machine": {"cpu": "x"}})).startswith("machine-")
    assert pareto.machine_label({"machine_index": 1}) == "m2"
    assert not pareto.merged([{"machine_index": 0}, {"machine_index": 0}])

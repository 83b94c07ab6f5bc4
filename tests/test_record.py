"""The typed cell record: one to_dict, derived figures computed by value objects, and a table of figures whose
every path exists in a full record (a typo would otherwise make a figure 'unmeasured' forever)."""

from __future__ import annotations

import json

import pytest

from pytest_longeff.energy import EnergyReading, IdleBaseline
from pytest_longeff.record import (
    FIGURES,
    GATED,
    Accuracy,
    BatchChoice,
    CellRecord,
    Efficiency,
    Energy,
    Identity,
    InferenceWindow,
    ModelFacts,
    TrainWindow,
    lookup,
)
from pytest_longeff.stats import summarize


def _reading(joules: float | None, seconds: float = 10.0) -> EnergyReading:
    return EnergyReading(joules, seconds, "nvml" if joules else "none", joules is not None, None, 2, None, None)


def full_record(train_j: float | None = 500.0, infer_j: float | None = 90.0) -> CellRecord:
    idle = IdleBaseline(20.0, 10.0, "nvml", True, None)
    record = CellRecord(Identity("led-base-1024-qasper", "led", "base", 1024, "qasper", "tiny", "cpu"))
    record.model = ModelFacts(1000, "tiny LED", {"d_model": 32}, True, 1.5, 2**29, {"spec": "steps=4"},
                              {"name": "AdamW"}, 3)
    record.batch = BatchChoice(4, "searched", 2, 3 * 2**20, {"probe_log": [], "start": 1}, accumulation=2)
    record.train = TrainWindow(
        steps=5, samples=40, time_s=10.0, eval_time_s=2.0, throughput=summarize([4.0, 5.0, 6.0]),
        warmup_steps_excluded=1, input_tokens_per_step=8192, losses=[3.0, 2.5], evaluations=[], best_step=None,
        peak_memory_bytes=2**20, memory_method="m", within_memory_budget=True, stopped_by="steps",
        energy=Energy.from_reading(_reading(train_j), idle), flops_per_step=1000, flops_method="f",
        median_step_s=2.0)
    record.inference = InferenceWindow(
        samples=9, passes=3, time_s=3.0, throughput=summarize([3.0, 3.0, 3.0]), latency=summarize([0.2, 0.3, 0.4]),
        latency_p50_s=0.3, latency_p90_s=0.38, generated_tokens=90, max_new_tokens=25, peak_memory_bytes=2**19,
        memory_method="m", energy=Energy.from_reading(_reading(infer_j, 3.0), idle))
    record.attention = "sliding_window"
    record.accuracy = Accuracy({"f1": 12.5, "score": 12.5}, "greedy generation, SCROLLS f1, x100")
    return record


def test_every_figure_path_exists_in_a_full_record() -> None:
    d = full_record().to_dict()
    for figure in FIGURES:
        assert figure.value(d) is not None, f"{figure.name}: {figure.path} not in a full record"
        if figure.ci_path is not None:
            assert isinstance(lookup(d, *figure.ci_path), list), figure.name
    assert set(GATED) >= {"train_samples_per_s", "inference_j_per_sample", "score", "train_energy_j"}


def test_derived_figures_are_computed_from_the_window() -> None:
    d = full_record().to_dict()
    # By hand: 40 samples over (10 - 2) s of training; 500 J -> 40 / 0.5 kJ; 5 steps x 8192 tokens / 500 J.
    assert d["train"]["samples_per_s"] == pytest.approx(5.0)
    assert d["train"]["samples_per_kj"] == pytest.approx(80.0)
    assert d["train"]["tokens_per_j"] == pytest.approx(5 * 8192 / 500)
    assert d["train"]["achieved_flop_per_s"] == pytest.approx(500.0)
    assert d["train"]["energy_net_j"] == pytest.approx(500 - 20 * 10)
    assert d["inference"]["j_per_sample"] == pytest.approx(10.0)
    assert d["inference"]["tokens_per_j"] == pytest.approx(1.0)
    assert d["inference"]["samples_per_s"] == pytest.approx(3.0)
    assert d["inference"]["generated_tokens_per_s"] == pytest.approx(30.0)
    assert d["inference"]["latency_s"]["p50"] == 0.3
    assert d["effective_batch"] == 8 and d["gradient_accumulation"] == 2


def test_unmeasured_energy_is_null_never_zero() -> None:
    d = full_record(train_j=None, infer_j=None).to_dict()
    for part in ("train", "inference"):
        assert d[part]["energy_j"] is None and d[part]["samples_per_kj"] is None and d[part]["tokens_per_j"] is None
    assert d["inference"]["j_per_sample"] is None
    assert Efficiency.from_energy(0.0, 10, 10) == Efficiency(None, None, None)


def test_a_partial_record_keeps_what_was_measured_and_is_json() -> None:
    record = full_record()
    record.inference = record.accuracy = None
    d = json.loads(json.dumps(record.to_dict()))
    assert "train" in d and "inference" not in d and "accuracy" not in d


@pytest.mark.parametrize(("peak", "expected"), [(100, True), (101, False), (None, None)])
def test_within_memory_budget_comes_from_the_exact_probe(peak: int | None, expected: bool | None) -> None:
    assert BatchChoice(2, "searched", 1, peak).within(100) is expected

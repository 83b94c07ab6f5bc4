"""The machine-speed reference: readings, pooling, the time budget, and where it is measured."""

from __future__ import annotations

import json

import pytest
import torch

from pytest_longeff.measure.reference import METHOD, MIN_REPEATS, CellReference, ReferenceReading, reference
from pytest_longeff.stats import summarize

SUMMARY_KEYS = {"n", "median", "iqr", "q1", "q3", "mean", "ci95", "ci_method"}


SECTION_KEYS = {"ops_per_s", "unit", "stats", "before_ops_per_s", "after_ops_per_s", "cost_s", "method",
                "torch_settings"}


def _reading(*rates: float, seconds: float = 0.1) -> ReferenceReading:
    stats = summarize(rates)
    assert stats is not None
    return ReferenceReading("cpu", tuple(rates), stats, seconds)


def test_two_readings_pool_into_the_cells_reference() -> None:
    ref = CellReference.from_readings(_reading(100.0, 102.0, 98.0), _reading(90.0, 91.0, 89.0, seconds=0.2))
    assert ref.ops_per_s == pytest.approx(94.5)  # the median of the six pooled repeats: (91 + 98) / 2
    d = ref.to_dict()
    assert set(d) == SECTION_KEYS and set(d["stats"]) == SUMMARY_KEYS
    assert d["stats"]["n"] == 6 and d["before_ops_per_s"] == 100.0 and d["after_ops_per_s"] == 90.0
    assert d["cost_s"] == pytest.approx(0.3) and d["method"] == METHOD
    # Deterministic: the same readings give the same section (the bootstrap is seeded).
    assert CellReference.from_readings(_reading(100.0, 102.0, 98.0), _reading(90.0, 91.0, 89.0, seconds=0.2)
                                       ).to_dict() == d


def test_a_reading_measures_the_fixed_workload_in_shape() -> None:
    reading = reference("cpu", repeats=3)
    assert reading.device == "cpu" and len(reading.rates) == 3 and reading.stats.n == 3
    assert reading.ops_per_s > 0 and reading.seconds > 0
    section = CellReference.from_readings(reading, reference("cpu", repeats=3)).to_dict()
    assert set(section) == SECTION_KEYS and set(section["stats"]) == SUMMARY_KEYS and section["stats"]["n"] == 6
    json.dumps(section)  # the record's section is plain JSON


def test_a_reading_leaves_the_global_random_state_and_grad_mode_alone() -> None:
    state = torch.random.get_rng_state()
    with torch.no_grad():
        reference("cpu", repeats=1)
        assert not torch.is_grad_enabled()
    assert torch.equal(state, torch.random.get_rng_state())


def test_a_reading_past_its_time_budget_stops_after_the_minimum_repeats() -> None:
    reading = reference("cpu", repeats=7, warmup=0, budget_s=0.0)
    assert len(reading.rates) == MIN_REPEATS


def test_a_reading_needs_a_repeat() -> None:
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        reference("cpu", repeats=0)


@pytest.mark.parametrize(("setting", "device", "measured"), [
    ("auto", "cpu", True), ("auto", "cuda", False), ("auto", "cuda:1", False), ("on", "cuda:0", True),
    ("on", "cpu", True), ("off", "cpu", False), ("off", "cuda", False)])
def test_auto_measures_the_reference_on_cpu_devices_only(setting: str, device: str, measured: bool) -> None:
    from types import SimpleNamespace

    from pytest_longeff.config.settings import Settings

    assert Settings.measures_reference(SimpleNamespace(speed_reference=setting), device) is measured  # type: ignore[arg-type]


def test_the_torch_settings_a_reference_ran_under_are_recorded() -> None:
    from pytest_longeff.measure.reference import torch_settings

    plain = torch_settings()
    assert plain["anomaly_mode"] is False and plain["num_threads"] == torch.get_num_threads()
    with pytest.warns(UserWarning, match="Anomaly Detection"), torch.autograd.detect_anomaly(check_nan=False):
        assert torch_settings()["anomaly_mode"] is True
    assert torch_settings() == plain

"""Acceptance tests for budgets, caches and energy figures, run by pytester; reports are parsed."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from support.fake_pynvml import FakeGpu, FakeNvml

ONE_CELL = [
    "--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
    "--longeff-eval-samples=2", "--longeff-idle-s=0", "--longeff-max-batch=2", "-p", "no:randomly",
    # Pinned, so a GPU machine runs the same test (a later --longeff-energy=... in a test wins).
    "--longeff-device=cpu", "--longeff-energy=none",
]



def _records(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    doc = json.loads((pytester.path / "reports" / "longeff.json").read_text())
    return {r["id"]: r for r in doc["records"]}


def _one(pytester: pytest.Pytester) -> dict[str, Any]:
    (record,) = _records(pytester).values()
    return record


def test_found_batch_sizes_are_cached_across_runs_and_forgotten_on_reset(bench: pytest.Pytester) -> None:
    args = [*ONE_CELL, "--longeff-train-budget=steps=1"]
    bench.runpytest(*args).assert_outcomes(passed=1)
    first = _one(bench)
    assert first["batch_search"]["source"] == "searched" and first["batch_search"]["probes"] >= 1
    bench.runpytest(*args).assert_outcomes(passed=1)
    second = _one(bench)
    assert second["batch_search"]["source"] == "cached" and second["batch_search"]["probes"] == 0
    assert second["batch_size"] == first["batch_size"]
    bench.runpytest(*args, "--longeff-batch-reset").assert_outcomes(passed=1)
    assert _one(bench)["batch_search"]["source"] == "searched"


def test_a_cell_that_cannot_fit_is_skipped_with_its_reason_while_others_pass(bench: pytest.Pytester) -> None:
    # LED-base at 4096 tokens needs ~270 MB at batch 1 on the CPU; at 256 tokens ~20 MB.
    args = [a for a in ONE_CELL if not a.startswith("--longeff-lengths")]
    result = bench.runpytest(*args, "--longeff-lengths=256,4096", "--longeff-memory-budget=100MiB",
                             "--longeff-train-budget=steps=1")
    result.assert_outcomes(passed=1, skipped=1)
    records = _records(bench)
    skipped = records["led-base-4096-qasper"]
    assert skipped["status"] == "skipped" and "does not fit the memory budget" in skipped["reason"]
    assert skipped["batch_size"] == 0 and skipped["batch_search"]["probes"] >= 1
    assert records["led-base-256-qasper"]["status"] == "passed"


def test_gradient_accumulation_reaches_the_effective_batch(bench: pytest.Pytester) -> None:
    bench.runpytest(*ONE_CELL, "--longeff-batch-size=2", "--longeff-effective-batch=4",
                    "--longeff-train-budget=steps=2").assert_outcomes(passed=1)
    r = _one(bench)
    assert (r["batch_size"], r["gradient_accumulation"], r["effective_batch"]) == (2, 2, 4)
    assert r["batch_search"]["source"] == "fixed" and r["train"]["samples"] == 8


@pytest.mark.parametrize(
    ("spec", "stopped_by"),
    [("samples=6", "samples"), ("time=1s", "time"), ("epochs=1,patience=1,eval_every=2,max_steps=6", None)],
)
def test_training_budgets_say_what_stopped_training(bench: pytest.Pytester, spec: str, stopped_by: str | None) -> None:
    bench.runpytest(*ONE_CELL, "--longeff-batch-size=2", f"--longeff-train-budget={spec}").assert_outcomes(passed=1)
    train = _one(bench)["train"]
    if stopped_by is None:  # early stopping: patience after evaluations, or the step cap
        assert train["stopped_by"] in ("patience", "max_steps") and train["evaluations"]
        assert train["best_step"] is not None
    else:
        assert train["stopped_by"] == stopped_by
    if spec.startswith("samples"):
        assert train["samples"] == 6 and train["steps"] == 3


def test_energy_budget_without_a_meter_is_a_clear_error(bench: pytest.Pytester) -> None:
    result = bench.runpytest(*ONE_CELL, "--longeff-energy=none", "--longeff-train-budget=energy=1kJ")
    result.assert_outcomes(errors=1)
    assert "needs a real energy meter" in result.stdout.str()
    assert "needs a real energy meter" in _one(bench)["reason"]


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml([FakeGpu(power_w=300.0)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_energy_figures_from_the_gpu_counter_carry_method_and_derived_figures(bench: pytest.Pytester,
                                                                             fake_gpu: FakeNvml) -> None:
    # The model runs on the CPU; the explicitly chosen GPU meter is honoured (a fake pynvml at its API boundary).
    args = [a for a in ONE_CELL if not a.startswith("--longeff-idle-s")]
    result = bench.runpytest(*args, "--longeff-energy=nvml", "--longeff-idle-s=0.3",
                             "--longeff-train-budget=steps=20")  # a window well over 100 ms
    result.assert_outcomes(passed=1)
    r = _one(bench)
    train, inference = r["train"], r["inference"]
    assert train["energy_method"] == "nvml" and train["energy_valid"] is True
    # Constant 300 W over the window: the counter's reading is 300 W x the window, to its 100 ms resolution.
    assert train["energy_j"] == pytest.approx(300.0 * train["time_s"], abs=300.0 * 0.11)
    assert train["samples_per_kj"] > 0 and train["tokens_per_j"] > 0
    # Idle was the same 300 W: net energy is about zero, and it is a number, not a missing value.
    assert train["energy_net_j"] == pytest.approx(0.0, abs=300.0 * 0.25)
    if inference["energy_valid"]:
        assert inference["j_per_sample"] == pytest.approx(inference["energy_j"] / inference["samples"])
    else:
        # Two tiny generations can finish inside one counter update: reported invalid with why, never as 0 J.
        assert inference["energy_j"] is None and inference["j_per_sample"] is None
        assert "update period" in inference["energy_note"] or "did not move" in inference["energy_note"]
    doc = json.loads((bench.path / "reports" / "longeff.json").read_text())
    assert doc["machine"]["meter"]["gpus"][0]["name"] == "NVIDIA Fake H100"
    assert doc["machine"]["idle"]["idle_power_w"] == pytest.approx(300.0, rel=0.2)
    assert "(nvml)" in result.stdout.str()


def test_energy_budget_stops_training(bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([FakeGpu(power_w=20000.0)]))
    bench.runpytest(*ONE_CELL, "--longeff-energy=nvml", "--longeff-batch-size=1",
                    "--longeff-train-budget=energy=5kJ,max_steps=500").assert_outcomes(passed=1)
    train = _one(bench)["train"]
    assert train["stopped_by"] == "energy" and train["steps"] < 500


def test_flops_are_counted_and_warmup_steps_excluded(bench: pytest.Pytester) -> None:
    bench.runpytest(*ONE_CELL, "--longeff-train-budget=steps=3").assert_outcomes(passed=1)
    train = _one(bench)["train"]
    assert train["flops_per_step"] > 0 and train["achieved_flop_per_s"] > 0
    assert "outside the measured windows" in train["flops_method"]
    assert train["warmup_steps_excluded"] == 1 and train["samples_per_s_stats"]["n"] == 2

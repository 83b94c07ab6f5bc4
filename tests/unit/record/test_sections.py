"""The typed cell record: one to_dict, derived figures computed by value objects, and a table of figures whose
every path exists in a full record (a typo would otherwise make a figure 'unmeasured' forever)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pytest_longeff.energy import EnergyReading, IdleBaseline
from pytest_longeff.record.figures import FIGURES, GATED, Figure
from pytest_longeff.record.sections import (
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
from pytest_longeff.cell.phases import PrefillResult, Timeline, phases_section
from pytest_longeff.stats import summarize


def _reading(joules: float | None, seconds: float = 10.0) -> EnergyReading:
    return EnergyReading(joules, seconds, "nvml" if joules else "none", joules is not None, None, 2, None, None,
                         uncertainty_j=1.0 if joules else None)


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
    # Prefill and decode as the cell's phase makes them: 3 prefill batches of 2 rows x 1024 tokens, and 3 generated
    # batches whose 25 new tokens came 10 ms apart after a first token at 0.1 s.
    prefill = PrefillResult([0.09, 0.1, 0.11], [2, 2, 2], 3 * 2 * 1024)
    timelines = [Timeline(0.0, [0.1 + 0.01 * k for k in range(25)], 0.35, 2) for _ in range(3)]
    energy = Energy.from_reading(_reading(30.0, 0.3), idle).to_dict()
    kv = {"bytes_per_token": 512.0, "formula_bytes_per_token": 512, "ratio": 1.0, "formula": "2 x 1 x 2 x 16 x 4",
          "kind": "self-attention cache (per prompt token)", "tokens": 1024, "dtype": "float32"}
    record.phases = phases_section(prefill, 0.3, energy, 2**20, timelines, [0.35, 0.35, 0.35], kv)
    return record


def test_the_phases_section_adds_up_what_was_measured() -> None:
    ph = full_record().to_dict()["phases"]
    assert ph["prefill"]["tokens_per_s"] == pytest.approx(6144 / 0.3)
    assert ph["prefill"]["j_per_token"] == pytest.approx(30.0 / 6144)
    assert ph["decode"]["ttft_s"]["p50"] == pytest.approx(0.1)
    assert ph["decode"]["inter_token_latency_s"] == {"p50": pytest.approx(0.01), "p90": pytest.approx(0.01),
                                                     "samples": 72}
    assert ph["decode"]["tokens"] == 3 * 2 * 24 and ph["decode"]["time_s"] == pytest.approx(3 * 0.25)
    assert ph["decode"]["tokens_per_s"] == pytest.approx(144 / 0.75)
    # (0.3 s of prefill + 0.75 s of decode) against 1.05 s of generation: the halves make the whole.
    assert ph["check"]["ratio"] == pytest.approx(1.0)
    assert ph["check"]["ttft_minus_prefill_s"] == pytest.approx(0.0)  # a first token exactly one prefill in
    # Batch by batch: (0.09 + 0.25) / 0.35, (0.10 + 0.25) / 0.35, (0.11 + 0.25) / 0.35.
    pairs = ph["check"]["pairs"]
    assert pairs["n"] == 3 and pairs["median"] == pytest.approx(1.0)
    assert pairs["min"] == pytest.approx(0.34 / 0.35) and pairs["max"] == pytest.approx(0.36 / 0.35)


def test_batches_that_do_not_line_up_give_no_pairs() -> None:
    from pytest_longeff.cell.phases import paired_ratios

    line = Timeline(0.0, [0.1, 0.2], 0.3, 1)
    # A prefill batch more than generations: no pairing.
    assert paired_ratios(PrefillResult([0.1, 0.1], [1, 1], 2), [line], [0.3]) == []
    # As many batches, other rows (four examples at batch 2 against batch 3): no pairing.
    two, three = Timeline(0.0, [0.1, 0.2], 0.3, 2), Timeline(0.0, [0.1, 0.2], 0.3, 3)
    assert paired_ratios(PrefillResult([0.1, 0.1], [2, 2], 8), [three, Timeline(0.0, [0.1], 0.3, 1)],
                         [0.3, 0.3]) == []
    assert paired_ratios(PrefillResult([0.1, 0.1], [2, 2], 8), [two, two], [0.3, 0.3]) == [pytest.approx(1.0)] * 2
    # No token stamped: no decode time, the batch is left out.
    assert paired_ratios(PrefillResult([0.1], [1], 1), [Timeline(0.0, [], 0.3, 1)], [0.3]) == []
    assert paired_ratios(PrefillResult([0.1], [1], 1), [line], [0.3]) == [pytest.approx(1.0)]


def test_the_prefill_and_generated_batches_line_up_in_the_cells_own_loops() -> None:
    """run_prefill and generate over a 5-example split at batch 2, 2 passes: the same rows batch by batch."""
    import torch

    from pytest_longeff.cell.infer import generate
    from pytest_longeff.cell.phases import paired_ratios, run_prefill
    from pytest_longeff.cell.prepare import TokenizedSplit
    from pytest_longeff.data.tokenizer import lexicon_tokenizer
    from pytest_longeff.models.families import build_model
    from pytest_longeff.models.recent import LLAMA

    built = build_model(LLAMA, "base", "tiny", len(lexicon_tokenizer()), 64, None, seed=0)
    split = TokenizedSplit([f"e{i}" for i in range(5)], torch.randint(10, 100, (5, 32)),
                           torch.ones(5, 32, dtype=torch.long), torch.randint(10, 100, (5, 4)), 5 * 32)
    timelines: list[Timeline] = []
    gen = generate(built, split, 2, 3, 2, "cpu", fixed=True, timelines=timelines)
    prefill = run_prefill(built, split, 2, 2, "cpu")
    assert prefill.batch_rows == [t.rows for t in timelines] == gen.batch_sizes == [2, 2, 1, 2, 2, 1]
    assert len(paired_ratios(prefill, timelines, gen.batch_latencies_s)) == 6


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


# -- the whole dict form, key by key (values worked out by hand from full_record) ----------------------------------


def _summary(values: list[float]) -> dict[str, object]:
    summary = summarize(values)
    assert summary is not None
    return summary.to_dict()


def _energy_fields(joules: float, net_j: float) -> dict[str, object]:
    return {"energy_j": joules, "energy_method": "nvml", "energy_valid": True, "energy_note": None,
            "energy_samples": 2, "energy_max_gap_s": None, "legacy_sum_of_30s_mean_power_kw": None,
            "energy_uncertainty_j": 1.0, "energy_coarse": False, "energy_update_period_s": None,
            "energy_other_processes": [], "energy_throttle_reasons": [], "legacy_buckets": None,
            "legacy_sum_as_extracted_kw": None, "energy_net_j": net_j}  # fmt: skip


def test_full_record_dict_form_key_by_key() -> None:
    d = full_record().to_dict()
    assert set(d.pop("phases")) == {"prefill", "decode", "kv_cache", "check"}  # its own test checks the values
    assert d == {
        "id": "led-base-1024-qasper", "family": "led", "size": "base", "seq_len": 1024, "task": "qasper",
        "profile": "tiny", "device": "cpu", "status": None, "reason": None,
        "params": 1000, "model": "tiny LED", "model_config": {"d_model": 32},
        "model_build": {"built_now": True, "build_s": 1.5}, "memory_budget_bytes": 2**29,
        "train_budget": {"spec": "steps=4"}, "optimizer": {"name": "AdamW"}, "validation_examples": 3,
        "accuracy_meaning": "",
        "batch_size": 4,
        "batch_search": {"source": "searched", "probe_log": [], "start": 1, "probes": 2,
                         "peak_memory_bytes": 3 * 2**20, "batch_size": 4},
        "gradient_accumulation": 2, "effective_batch": 8,
        "train": {
            "steps": 5, "samples": 40, "time_s": 10.0, "eval_time_s": 2.0,
            "samples_per_s": 40 / 8,
            "samples_per_s_note": "samples / (window time - early-stopping evaluation time); energy covers the "
                                  "whole window",
            "samples_per_s_stats": _summary([4.0, 5.0, 6.0]),
            "warmup_steps_excluded": 1, "input_tokens_per_step": 8192, "loss_first": 3.0, "loss_last": 2.5,
            "evaluations": [], "best_step": None, "peak_memory_bytes": 2**20, "memory_method": "m",
            "within_memory_budget": True, "stopped_by": "steps",
            **_energy_fields(500.0, 500.0 - 20.0 * 10.0),
            "flops_per_step": 1000, "flops_method": "f", "achieved_flop_per_s": 1000 / 2.0,
            "samples_per_kj": 40 / 0.5, "tokens_per_j": 5 * 8192 / 500,
            "decoder_positions": None, "label_padding": None, "peak_reserved_bytes": None, "epochs": None,
        },
        "attention": "sliding_window",
        "inference": {
            "samples": 9, "passes": 3, "time_s": 3.0, "samples_per_s": 9 / 3,
            "samples_per_s_stats": _summary([3.0, 3.0, 3.0]),
            "latency_s": {"p50": 0.3, "p90": 0.38, "stats": _summary([0.2, 0.3, 0.4]),
                          "note": "per-sample latency: each batch's generate() wall time / its size"},
            "generated_tokens": 90, "generated_tokens_per_s": 90 / 3, "max_new_tokens": 25,
            "peak_memory_bytes": 2**19, "memory_method": "m",
            **_energy_fields(90.0, 90.0 - 20.0 * 3.0),
            "j_per_sample": 90 / 9, "samples_per_kj": 9 / 0.09, "tokens_per_j": 90 / 90,
            "generation_config": None, "peak_reserved_bytes": None,
        },
        "accuracy": {"f1": 12.5, "score": 12.5}, "accuracy_method": "greedy generation, SCROLLS f1, x100",
    }  # fmt: skip
    assert d["inference"]["samples_per_kj"] == pytest.approx(100.0)


def test_optional_sections_and_fields_appear_only_when_set() -> None:
    identity = Identity("c", "led", "base", 512, "qasper", "tiny", "cuda:0")
    record = CellRecord(identity, status="failed", reason="OOM", gate={"verdict": "pass"}, cell_wall_s=12.5,
                        predictions={"ex1": "yes"})  # fmt: skip
    assert record.id == "c"
    assert record.to_dict() == {
        "id": "c", "family": "led", "size": "base", "seq_len": 512, "task": "qasper", "profile": "tiny",
        "device": "cuda:0", "status": "failed", "reason": "OOM", "gate": {"verdict": "pass"}, "cell_wall_s": 12.5,
    }  # fmt: skip  (the predictions travel beside the record, never inside it)


def test_finish_sets_the_outcome_and_the_gate_section_on_the_typed_record() -> None:
    record = CellRecord(Identity("c", "led", "base", 512, "qasper", "tiny", "cpu"), predictions={"ex1": "yes"})
    assert (record.status, record.reason, record.gate) == (None, None, None)
    section = {"baseline": "b.json", "checks": [], "refused": None}
    record.finish("failed", "AssertionError: boom", section)
    assert (record.status, record.reason, record.gate) == ("failed", "AssertionError: boom", section)
    d = record.to_dict()
    assert (d["status"], d["reason"], d["gate"]) == ("failed", "AssertionError: boom", section)
    assert "_predictions" not in d and "predictions" not in d
    record.finish("passed", None, None)
    assert "gate" not in record.to_dict() and record.to_dict()["status"] == "passed"


def test_a_fixed_batch_states_no_searched_batch_size() -> None:
    d = BatchChoice(6, "fixed", 0, None).to_dict()
    assert d == {"batch_size": 6, "batch_search": {"source": "fixed", "probes": 0, "peak_memory_bytes": None},
                 "gradient_accumulation": 1, "effective_batch": 6}  # fmt: skip


def test_teacher_forced_accuracy_names_the_study_method() -> None:
    from pytest_longeff.tasks.study import METHOD

    assert Accuracy({"score": 1.0}, "g").to_dict() == {"accuracy": {"score": 1.0}, "accuracy_method": "g"}
    assert Accuracy({"score": 1.0}, "g", {"score": 2.0}).to_dict() == {
        "accuracy": {"score": 1.0}, "accuracy_method": "g", "accuracy_teacher_forced": {"score": 2.0},
        "accuracy_teacher_forced_method": METHOD,
    }  # fmt: skip


def test_energy_without_a_reading_states_no_meter() -> None:
    energy = Energy.from_reading(None, IdleBaseline(20.0, 10.0, "nvml", True, None))
    assert energy == Energy(None, None) and energy.joules is None
    assert energy.to_dict() == {"energy_j": None, "energy_method": "none", "energy_valid": False,
                                "energy_note": "no energy meter", "energy_net_j": None}  # fmt: skip
    assert Energy.from_reading(_reading(50.0, 2.0), None).net_j is None  # no idle baseline: no net figure
    # The reading's own time_s is left out: the window's time_s stands beside the energy fields.
    assert "time_s" not in Energy.from_reading(_reading(50.0, 2.0), None).to_dict()
    window = replace(_train(0.0, None), energy=Energy.from_reading(_reading(50.0, 7.0), None))
    assert window.to_dict()["time_s"] == 10.0 and window.to_dict()["energy_j"] == 50.0


def test_efficiency_and_rates_by_hand() -> None:
    # 250 J for 10 samples and 1000 tokens: 10 / 0.25 kJ = 40 samples/kJ, 4 tokens/J, 25 J/sample.
    assert Efficiency.from_energy(250.0, 10, 1000) == Efficiency(40.0, 4.0, 25.0)
    assert Efficiency.from_energy(250.0, 0, 1000) == Efficiency(0.0, 4.0, None)  # no samples: no J/sample
    assert Efficiency.from_energy(-1.0, 10, 10) == Efficiency(None, None, None)
    assert Efficiency.from_energy(0.5, 1, 2) == Efficiency(2000.0, 4.0, 0.5)  # under 1 J still counts
    assert Efficiency.from_energy(None, 10, 10) == Efficiency(None, None, None)


def _train(eval_time_s: float, median_step_s: float | None, samples: int = 40) -> TrainWindow:
    return TrainWindow(
        steps=4, samples=samples, time_s=10.0, eval_time_s=eval_time_s, throughput=None, warmup_steps_excluded=0,
        input_tokens_per_step=10, losses=[], evaluations=[], best_step=None, peak_memory_bytes=None,
        memory_method="m", within_memory_budget=None, stopped_by="steps", energy=Energy(None, None),
        flops_per_step=100, flops_method="f", median_step_s=median_step_s)  # fmt: skip


def test_train_window_without_evaluation_or_step_times() -> None:
    d = _train(0.0, None).to_dict()
    assert d["samples_per_s"] == 4.0 and d["samples_per_s_note"] == "samples / window time"
    assert d["achieved_flop_per_s"] is None and d["samples_per_s_stats"] is None
    assert d["loss_first"] is None and d["loss_last"] is None
    assert d["energy_note"] == "no energy meter" and d["samples_per_kj"] is None
    assert _train(10.0, 0.5).samples_per_s is None  # the whole window was evaluation: no throughput
    assert _train(0.0, 0.5).to_dict()["achieved_flop_per_s"] == 200.0
    three = replace(_train(0.0, None), losses=[3.0, 2.0, 1.5]).to_dict()
    assert (three["loss_first"], three["loss_last"]) == (3.0, 1.5)


def test_inference_window_without_generated_tokens_or_time() -> None:
    window = InferenceWindow(samples=4, passes=1, time_s=0.0, throughput=None, latency=None, latency_p50_s=None,
                             latency_p90_s=None, generated_tokens=0, max_new_tokens=8, peak_memory_bytes=None,
                             memory_method="m", energy=Energy(None, None))  # fmt: skip
    d = window.to_dict()
    assert d["samples_per_s"] is None and d["generated_tokens_per_s"] is None
    assert d["latency_s"] == {"p50": None, "p90": None, "stats": None,
                              "note": "per-sample latency: each batch's generate() wall time / its size"}  # fmt: skip
    assert d["j_per_sample"] is None and d["tokens_per_j"] is None
    timed = replace(window, time_s=2.0).to_dict()
    assert timed["samples_per_s"] == 2.0 and timed["generated_tokens_per_s"] is None  # no tokens: no token rate


def test_lookup_and_figure_value_treat_non_numbers_as_unmeasured() -> None:
    record = {"a": {"b": 3, "flag": True, "text": "7", "deep": [1]}}
    assert lookup(record, "a", "b") == 3 and lookup(record, "a", "deep", "x") is None
    assert lookup(record, "missing", "b") is None and lookup(record) == record
    figure = FIGURES[0]
    values = [Figure(figure.name, ("a", key), "u", True, "m").value(record) for key in ("b", "flag", "text", "no")]
    assert values == [3.0, None, None, None] and isinstance(values[0], float)


def test_a_coarse_window_reading_is_marked_so_the_gate_skips_it() -> None:
    from pytest_longeff.energy import EnergyReading
    from pytest_longeff.measure.recorder import WindowSample, WindowSummary

    coarse = EnergyReading(5.0, 0.5, "nvml", True, None, 2, None, None, uncertainty_j=1.0, coarse=True)
    fine = EnergyReading(50.0, 5.0, "nvml", True, None, 2, None, None, uncertainty_j=1.0, coarse=False)
    windows = [WindowSummary("decode", (WindowSample(0.5, Energy.from_reading(r, None), 10, "m"),)) for r in (coarse,
                                                                                                        fine)]
    assert [w.to_dict()["energy_coarse"] for w in windows] == [True, False]

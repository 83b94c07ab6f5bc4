"""The table of figures: which figures may be gated, which way each is better, which scale with machine speed or vary
between measurements, where each lives in a record, and the figures of a user's measured windows.

The expected values are written out here, from what each figure measures, not read from the table under test: a
flipped direction or a figure that becomes gateable by mistake fails one of these tests."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_longeff.record.figures import (
    FIGURES,
    FIGURES_BY_NAME,
    GATED,
    WORK,
    Figure,
    figure,
    window_figure,
    window_figures,
)

#: Every gated cell figure and whether more is better: rates of work (samples per second, per kJ) and the score are
#: better higher; times, energies, joules per sample and memory are better lower.
GATED_DIRECTIONS: dict[str, bool] = {
    "score": True,
    "train_samples_per_s": True,
    "train_energy_j": False,
    "train_samples_per_kj": True,
    "train_peak_memory_bytes": False,
    "inference_samples_per_s": True,
    "inference_latency_p50_s": False,
    "inference_energy_j": False,
    "inference_j_per_sample": False,
    "inference_peak_memory_bytes": False,
}

#: Figures that are reported but may not be gated, with their direction: the whole-window rates and times (the
#: medians are gated instead), the energies' error bounds, the batch size and the FLOPs of a step.
REPORTED_ONLY: dict[str, bool] = {
    "batch_size": True,
    "train_window_samples_per_s": True,
    "train_time_s": False,
    "train_energy_uncertainty_j": False,
    "train_flops_per_step": False,
    "inference_window_samples_per_s": True,
    "inference_time_s": False,
    "inference_energy_uncertainty_j": False,
    # Prefill and decode apart: rates of work better higher, times, energy per token and cache size lower.
    "prefill_tokens_per_s": True,
    "prefill_j_per_token": False,
    "ttft_p50_s": False,
    "decode_tokens_per_s": True,
    "inter_token_latency_p50_s": False,
    "inter_token_latency_p90_s": False,
    "kv_cache_bytes_per_token": False,
}

#: Figures that scale with the machine's speed (a throughput or a time), as the gate's drift correction needs them.
TIME_BASED = {"train_samples_per_s", "train_window_samples_per_s", "train_time_s", "inference_samples_per_s",
              "inference_window_samples_per_s", "inference_latency_p50_s", "inference_time_s", "prefill_tokens_per_s",
              "ttft_p50_s", "decode_tokens_per_s", "inter_token_latency_p50_s", "inter_token_latency_p90_s"}
#: Figures whose readings come from the energy meter, by the record section whose energy method qualifies them.
ENERGY_PART = {"train_energy_j": "train", "train_energy_uncertainty_j": "train", "train_samples_per_kj": "train",
               "inference_energy_j": "inference", "inference_energy_uncertainty_j": "inference",
               "inference_j_per_sample": "inference", "prefill_j_per_token": "phases.prefill"}
#: Gated figures with a confidence interval (medians over batches), and where the interval is.
CI_PATHS = {"train_samples_per_s": ("train", "samples_per_s_stats", "ci95"),
            "inference_samples_per_s": ("inference", "samples_per_s_stats", "ci95"),
            "inference_latency_p50_s": ("inference", "latency_s", "stats", "ci95")}


@pytest.mark.parametrize(("name", "higher"), GATED_DIRECTIONS.items())
def test_every_gated_figure_goes_the_right_way(name: str, higher: bool) -> None:
    assert GATED[name].higher_is_better is higher
    assert figure(name) is GATED[name]


def test_the_gated_figures_are_exactly_these_and_the_rest_are_reported_only() -> None:
    assert set(GATED) == set(GATED_DIRECTIONS)
    assert {f.name for f in FIGURES} == set(GATED_DIRECTIONS) | set(REPORTED_ONLY)
    for name, higher in REPORTED_ONLY.items():
        assert not FIGURES_BY_NAME[name].gated and FIGURES_BY_NAME[name].higher_is_better is higher
        assert figure(name) is None  # a reported-only figure can never be named by --longeff-fail-on
    assert all(FIGURES_BY_NAME[n].gated for n in GATED_DIRECTIONS)


def test_the_units_say_the_direction() -> None:
    # Throughputs and samples per kJ are rates of work; seconds, joules, J/sample and bytes are costs.
    better_higher = {"samples/s", "samples/kJ", "points", "samples", "tokens/s"}
    better_lower = {"s", "J", "J/sample", "B", "FLOP", "J/token", "B/token"}
    for f in FIGURES:
        assert f.unit in better_higher | better_lower, f.name
        assert f.higher_is_better is (f.unit in better_higher), f.name


def test_which_figures_scale_with_machine_speed_and_which_vary_between_measurements() -> None:
    assert {f.name for f in FIGURES if f.time_based} == TIME_BASED
    assert {f.name: f.energy_part for f in FIGURES if f.energy_part is not None} == ENERGY_PART
    assert {f.name for f in FIGURES if f.noisy} == TIME_BASED | set(ENERGY_PART)
    # Scores, memory, the batch size and FLOPs come out the same every time: measuring again cannot help.
    assert not any(FIGURES_BY_NAME[n].noisy for n in ("score", "batch_size", "train_peak_memory_bytes",
                                                      "inference_peak_memory_bytes", "train_flops_per_step"))
    assert {f.name: f.ci_path for f in FIGURES if f.ci_path is not None} == CI_PATHS


def test_figure_value_reads_numbers_only() -> None:
    f = FIGURES_BY_NAME["inference_latency_p50_s"]
    assert f.path == ("inference", "latency_s", "stats", "median")
    assert f.value({"inference": {"latency_s": {"stats": {"median": 2}}}}) == 2.0
    assert isinstance(f.value({"inference": {"latency_s": {"stats": {"median": 2}}}}), float)
    assert f.value({"inference": {"latency_s": {"stats": {"median": 0.25}}}}) == 0.25
    for missing in ({}, {"inference": None}, {"inference": {"latency_s": {"stats": {"median": None}}}},
                    {"inference": {"latency_s": {"stats": {"median": True}}}},
                    {"inference": {"latency_s": {"stats": {"median": "0.5"}}}}):
        assert f.value(missing) is None
    assert FIGURES_BY_NAME["score"].value({"accuracy": {"score": 41.5}}) == 41.5


def test_headers_fall_back_from_short_to_label_to_name() -> None:
    assert FIGURES_BY_NAME["train_samples_per_s"].header == "train samp/s (median)"
    assert FIGURES_BY_NAME["train_samples_per_s"].short_header == "trn s/s"
    assert FIGURES_BY_NAME["score"].short_header == "score"  # no short header: the label
    bare = Figure("bare_figure", ("x",), "s", False, "test")
    assert bare.header == "bare_figure" and bare.short_header == "bare_figure"
    assert Figure("f", ("x",), "s", False, "test", label="F").short_header == "F"


def test_the_work_counters_are_one_gated_rule_compared_exactly() -> None:
    assert figure("work") is WORK and not WORK.higher_is_better and WORK.path == ("work",)
    assert not WORK.time_based and not WORK.noisy
    assert figure("nonsense") is None and figure("") is None and figure("works") is None


# -- window figures -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "path", "unit", "ci", "energy"), [
    ("window_decode_time_s", ("windows", "decode", "time_s"), "s", ("windows", "decode", "time_s_stats", "ci95"),
     None),
    ("window_decode_energy_j", ("windows", "decode", "energy_j"), "J", None, "windows.decode"),
    ("window_decode_energy_net_j", ("windows", "decode", "energy_net_j"), "J", None, "windows.decode"),
    ("window_decode_peak_memory_bytes", ("windows", "decode", "peak_memory_bytes"), "B", None, None),
    # A window whose own name ends like a suffix: the longest suffix is taken off once.
    ("window_a_time_s_time_s", ("windows", "a_time_s", "time_s"), "s",
     ("windows", "a_time_s", "time_s_stats", "ci95"), None),
    ("window_x_energy_net_j", ("windows", "x", "energy_net_j"), "J", None, "windows.x"),
    ("window_0_energy_j", ("windows", "0", "energy_j"), "J", None, "windows.0"),
])
def test_window_figures_are_lower_is_better_and_point_into_their_window(
        name: str, path: tuple[str, ...], unit: str, ci: tuple[str, ...] | None, energy: str | None) -> None:
    found = window_figure(name)
    assert found is not None and figure(name) == found
    assert (found.name, found.path, found.unit, found.ci_path, found.energy_part) == (name, path, unit, ci, energy)
    assert found.higher_is_better is False and found.gated
    assert found.method


@pytest.mark.parametrize("name", ["window_time_s", "window__time_s", "window_Decode_time_s", "window_de-code_time_s",
                                  "window_decode", "window_decode_time", "decode_time_s", "windows_decode_time_s",
                                  "window_decode_energy_uncertainty_j", "train_time_s"])
def test_names_that_are_not_window_figures(name: str) -> None:
    assert window_figure(name) is None and figure(name) is None


def test_window_figures_of_a_record_in_the_order_measured() -> None:
    record: dict[str, Any] = {"windows": {"prefill": {"time_s": 1.0}, "decode": {"time_s": 2.0}}}
    names = [f.name for f in window_figures(record)]
    assert names == ["window_prefill_peak_memory_bytes", "window_prefill_energy_net_j", "window_prefill_energy_j",
                     "window_prefill_time_s", "window_decode_peak_memory_bytes", "window_decode_energy_net_j",
                     "window_decode_energy_j", "window_decode_time_s"]
    assert window_figures(record)[-1].value(record) == 2.0
    assert window_figures({}) == [] and window_figures({"windows": None}) == []
    assert window_figures({"windows": ["decode"]}) == []
    # A window name that is not a figure name (upper case) is left out.
    assert window_figures({"windows": {"Bad": {}}}) == []

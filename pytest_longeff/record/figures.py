"""The table of reported figures: every figure's name, where it lives in a record's dict form, its unit, which way
is better and how it was obtained. Every reader (JSON, CSV, Markdown, the terminal matrix, JUnit, CI outputs, the
plots, the page and the gate) takes its columns from here, so one name means one number everywhere.

Cell figures are :data:`FIGURES`; a user's measured windows add ``window_<name>_<suffix>`` figures
(:func:`window_figure`), and :func:`figure` finds either by name. A figure that is reported but may not be gated
(the whole-window rates, times, the energy readings' error bounds) is a row with ``gated=False``: under its own
name, never under a gated figure's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_longeff.record.sections import lookup


@dataclass(frozen=True)
class Figure:
    """A reported figure: where it lives in the record's dict form, its unit, which way is better, how it was
    obtained, and (for gated figures) its confidence interval."""

    name: str
    path: tuple[str, ...]
    unit: str
    higher_is_better: bool
    method: str
    ci_path: tuple[str, ...] | None = None
    energy_part: str | None = None
    """The record section whose energy method qualifies this figure (energy figures only)."""
    gated: bool = True
    """Whether ``--longeff-fail-on`` may name it."""
    label: str = ""
    """Its column header in the terminal matrix, the Markdown table and the page (the name when empty)."""
    short: str = ""
    """A shorter header for a narrow terminal (the label when empty)."""

    @property
    def header(self) -> str:
        """The column header: :attr:`label`, else the name."""
        return self.label or self.name

    @property
    def short_header(self) -> str:
        """The header on a narrow terminal: :attr:`short`, else :attr:`header`."""
        return self.short or self.header

    @property
    def time_based(self) -> bool:
        """Whether the figure scales with machine speed: throughput (``samples/s``) and times (``s``). Energy does
        not (a slower shared machine draws power for longer, but at another level: energy per unit of work does not
        scale like time), and neither does memory."""
        return self.unit in ("samples/s", "tokens/s", "s")

    @property
    def noisy(self) -> bool:
        """Whether the figure varies from one measurement to the next (times, throughputs, energies), so that
        measuring again can tell a burst from a regression. Scores, peak memory and the batch size come out the same
        every time."""
        return self.time_based or self.energy_part is not None

    def value(self, record: Mapping[str, Any]) -> float | None:
        """The figure in ``record``, or None where it was not measured."""
        v = lookup(record, *self.path)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


_TIME = "perf_counter between device-synchronised window edges"
_MEDIAN = "; median with a percentile-bootstrap 95% CI"
_ENERGY = "the session's energy meter over the window (method in the record)"
_BOUND = ("bound on the energy reading's quantisation error: one meter update at the power ceiling (error bar of the "
          "energy, not of a driver's partial power sampling; none for an estimate)")
_MEMORY = "peak per window: CUDA peak allocated, or CPU process high-water mark plus weights"

FIGURES: tuple[Figure, ...] = (
    Figure("score", ("accuracy", "score"), "points", True, "SCROLLS metric x100 on greedy generations",
           label="score"),
    Figure("batch_size", ("batch_size",), "samples", True, "largest batch that fits the memory budget", gated=False,
           label="batch"),
    Figure("train_samples_per_s", ("train", "samples_per_s_stats", "median"), "samples/s", True,
           f"per training step after the warm-up steps, {_TIME}{_MEDIAN}", ("train", "samples_per_s_stats", "ci95"),
           label="train samp/s (median)", short="trn s/s"),
    Figure("train_window_samples_per_s", ("train", "samples_per_s"), "samples/s", True,
           f"samples / the whole training window (warm-up steps included, early-stopping evaluation left out), "
           f"{_TIME}", gated=False, label="train samp/s (window)", short="trn win s/s"),
    Figure("train_time_s", ("train", "time_s"), "s", False, _TIME, gated=False, label="train s", short="trn s"),
    Figure("train_energy_j", ("train", "energy_j"), "J", False, _ENERGY, energy_part="train", label="train J",
           short="trn J"),
    Figure("train_energy_uncertainty_j", ("train", "energy_uncertainty_j"), "J", False, _BOUND,
           energy_part="train", gated=False, label="train ±J", short="trn ±J"),
    Figure("train_samples_per_kj", ("train", "samples_per_kj"), "samples/kJ", True, f"samples / {_ENERGY}",
           energy_part="train", label="train samp/kJ", short="trn s/kJ"),
    Figure("train_peak_memory_bytes", ("train", "peak_memory_bytes"), "B", False, _MEMORY,
           label="train peak MiB", short="peak MiB"),
    Figure("train_flops_per_step", ("train", "flops_per_step"), "FLOP", False,
           "torch FlopCounterMode on an untimed step", gated=False, label="train FLOP/step", short="FLOP/step"),
    Figure("inference_samples_per_s", ("inference", "samples_per_s_stats", "median"), "samples/s", True,
           f"per generate() batch, {_TIME}{_MEDIAN}", ("inference", "samples_per_s_stats", "ci95"),
           label="infer samp/s (median)", short="inf s/s"),
    Figure("inference_window_samples_per_s", ("inference", "samples_per_s"), "samples/s", True,
           f"samples / the whole inference window (every pass), {_TIME}", gated=False,
           label="infer samp/s (window)", short="inf win s/s"),
    Figure("inference_latency_p50_s", ("inference", "latency_s", "stats", "median"), "s", False,
           f"per-sample latency (batch wall time / its size), {_TIME}{_MEDIAN}",
           ("inference", "latency_s", "stats", "ci95"), label="p50 s/sample", short="p50 s"),
    Figure("inference_time_s", ("inference", "time_s"), "s", False, _TIME, gated=False, label="infer s",
           short="inf s"),
    Figure("inference_energy_j", ("inference", "energy_j"), "J", False, _ENERGY, energy_part="inference",
           label="infer J", short="inf J"),
    Figure("inference_energy_uncertainty_j", ("inference", "energy_uncertainty_j"), "J", False, _BOUND,
           energy_part="inference", gated=False, label="infer ±J", short="inf ±J"),
    Figure("inference_j_per_sample", ("inference", "j_per_sample"), "J/sample", False, f"{_ENERGY} / samples",
           energy_part="inference", label="infer J/sample", short="inf J/s"),
    Figure("inference_peak_memory_bytes", ("inference", "peak_memory_bytes"), "B", False, _MEMORY,
           label="infer peak MiB", short="inf MiB"),
    # Prefill and decode apart (pytest_longeff.cell.phases); reported, not yet gated.
    Figure("prefill_tokens_per_s", ("phases", "prefill", "tokens_per_s"), "tokens/s", True,
           f"input tokens / the prefill batches' times (up to the first new token's logits), {_TIME}", gated=False,
           label="prefill tok/s", short="pre t/s"),
    Figure("prefill_j_per_token", ("phases", "prefill", "j_per_token"), "J/token", False,
           f"{_ENERGY} (the prefill window) / input tokens", energy_part="phases.prefill", gated=False,
           label="prefill J/token", short="pre J/t"),
    Figure("ttft_p50_s", ("phases", "decode", "ttft_s", "p50"), "s", False,
           "time to first token per generate() batch, stamped as its logits are ready; median", gated=False,
           label="TTFT p50 s", short="ttft s"),
    Figure("decode_tokens_per_s", ("phases", "decode", "tokens_per_s"), "tokens/s", True,
           "new tokens after the first / the time from the first token to each batch's end, inside the inference "
           "window", gated=False, label="decode tok/s", short="dec t/s"),
    Figure("inter_token_latency_p50_s", ("phases", "decode", "inter_token_latency_s", "p50"), "s", False,
           "time between consecutive new tokens' logits, inside the inference window; median", gated=False,
           label="ITL p50 s", short="itl p50"),
    Figure("inter_token_latency_p90_s", ("phases", "decode", "inter_token_latency_s", "p90"), "s", False,
           "time between consecutive new tokens' logits, inside the inference window; 90th percentile",
           gated=False, label="ITL p90 s", short="itl p90"),
    Figure("kv_cache_bytes_per_token", ("phases", "kv_cache", "bytes_per_token"), "B/token", False,
           "bytes of the KV cache's tensors after one untimed prefill / its input tokens (cross-attention cache "
           "for encoder-decoders)", gated=False, label="KV B/token", short="KV B/t"),
)
FIGURES_BY_NAME: Mapping[str, Figure] = {f.name: f for f in FIGURES}
#: The work counters (:mod:`pytest_longeff.measure.work`) as one gated rule, ``work:0%``: compared exactly, per
#: operator, not as a column (a record's ``work`` section holds the counts).
WORK = Figure("work", ("work",), "operator calls, FLOPs and output bytes per step and per token", False,
              "work counters of a training step and a generated token, outside the windows; compared exactly")
GATED: Mapping[str, Figure] = {f.name: f for f in FIGURES if f.gated}


# -- figures of a user's measured windows (``longeff_window``) -------------------------------------------------------
NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
PREFIX = "window_"
_WINDOW_TIME = "perf_counter between device-synchronised window edges; median over repeats with a bootstrap 95% CI"
_WINDOW_ENERGY = "the session's energy meter over the window, median over repeats (method in the record)"
#: suffix -> (key in the window's section, unit, CI key or None, energy-qualified); longest suffixes first.
WINDOW_FIGURES: Mapping[str, tuple[str, str, str | None, bool, str]] = {
    "peak_memory_bytes": ("peak_memory_bytes", "B", None, False, "highest peak memory over repeats"),
    "energy_net_j": ("energy_net_j", "J", None, True, f"{_WINDOW_ENERGY}, less the session's idle draw"),
    "energy_j": ("energy_j", "J", None, True, _WINDOW_ENERGY),
    "time_s": ("time_s", "s", "time_s_stats", False, _WINDOW_TIME),
}


def window_figure(metric: str) -> Figure | None:
    """The figure ``window_<name>_<suffix>`` names (every window figure is lower-is-better), or None."""
    if not metric.startswith(PREFIX):
        return None
    rest = metric[len(PREFIX):]
    for suffix, (key, unit, ci_key, energy, method) in WINDOW_FIGURES.items():
        name = rest.removesuffix("_" + suffix)
        if name != rest and NAME.match(name):
            ci = ("windows", name, ci_key, "ci95") if ci_key else None
            return Figure(metric, ("windows", name, key), unit, False, method, ci,
                          energy_part=f"windows.{name}" if energy else None)
    return None


def window_figures(record: Mapping[str, Any]) -> list[Figure]:
    """Every window figure a record carries, in the order measured."""
    windows = record.get("windows")
    names = list(windows) if isinstance(windows, Mapping) else []
    return [f for n in names for s in WINDOW_FIGURES if (f := window_figure(f"{PREFIX}{n}_{s}")) is not None]


def figure(name: str) -> Figure | None:
    """The gateable figure called ``name``: a cell figure, the work counters (``work``), a window figure, or None."""
    return GATED.get(name) or (WORK if name == WORK.name else None) or window_figure(name)

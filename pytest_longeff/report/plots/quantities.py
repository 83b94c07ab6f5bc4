"""What the figures plot: a quantity read from a record with its unit, method and interval, built from the table
of figures (:data:`pytest_longeff.record.figures.FIGURES`), and the cost axis of a window (energy, or time where
energy was not measured). Pure: no matplotlib here."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_longeff.record.figures import FIGURES_BY_NAME, Figure
from pytest_longeff.record.sections import lookup


@dataclass(frozen=True)
class Metric:
    """A plotted quantity: words, unit and method for its axis, and how to read it (and its 95 % CI) from a
    record."""

    label: str
    unit: str
    method: str
    value: Callable[[Mapping[str, Any]], float | None]
    ci: Callable[[Mapping[str, Any]], tuple[float, float] | None] = lambda r: None
    figure: str = ""
    """The :data:`record.FIGURES` name this metric reads, if any (Pareto fronts are computed over those)."""

    def axis(self, note: str = "") -> str:
        """The axis label: words, unit, method (and a note), wrapped."""
        return textwrap.fill(f"{self.label} ({self.unit}){note}; {self.method}", 62)


def _ci(fig: Figure) -> Callable[[Mapping[str, Any]], tuple[float, float] | None]:
    def read(record: Mapping[str, Any]) -> tuple[float, float] | None:
        ci = lookup(record, *fig.ci_path) if fig.ci_path else None
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
            return float(ci[0]), float(ci[1])
        return None
    return read


def metric(name: str, label: str, records: Sequence[Mapping[str, Any]] = ()) -> Metric:
    """The :data:`record.FIGURES` figure ``name`` as a metric; energy figures name the meter that measured them."""
    fig = FIGURES_BY_NAME[name]
    method = fig.method
    if fig.energy_part is not None:
        meters = sorted({str(lookup(r, *fig.energy_part.split("."), "energy_method")) for r in records
                         if fig.value(r) is not None})
        method = f"{'/'.join(meters) or 'no'} meter: {method}"
    return Metric(label, fig.unit, method, fig.value, _ci(fig), name)


def _per_sample(name: str, label: str, unit: str, invert: Callable[[float], float],
                records: Sequence[Mapping[str, Any]]) -> Metric:
    base = metric(name, label, records)
    return Metric(label, unit, f"inverse of {name}: {base.method}", lambda r: (v := base.value(r)) and invert(v))


def cost_metric(window: str, records: Sequence[Mapping[str, Any]], per_sample: bool = False) -> tuple[Metric, bool]:
    """The cost axis for a window: energy where any record measured it, else wall time (second item True)."""
    if window == "inference":
        energy = metric("inference_j_per_sample", "inference energy per sample", records)
        time = metric("inference_latency_p50_s", "inference time per sample (p50 latency)", records)
    elif per_sample:
        energy = _per_sample("train_samples_per_kj", "training energy per sample", "J/sample",
                             lambda v: 1000 / v, records)
        time = _per_sample("train_samples_per_s", "training time per sample", "s/sample", lambda v: 1 / v, records)
    else:
        energy = metric("train_energy_j", "training energy (whole window)", records)
        time = metric("train_time_s", "training time (whole window)", records)
    measured = any(energy.value(r) is not None for r in records)
    return (energy, False) if measured else (time, True)

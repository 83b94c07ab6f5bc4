"""The regression gate: compare a cell's record with the same cell in a baseline report.

``--longeff-fail-on "inference_j_per_sample:10%,train_samples_per_s:10%"`` names metrics and the change each may
make for the worse; the direction of "worse" comes from the metric. A check fails only when the change is beyond
the tolerance *and*, where both sides carry a 95 % confidence interval, the current interval lies wholly beyond
the tolerated value: a gate must tell a regression from noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_longeff.report import lookup


@dataclass(frozen=True)
class Metric:
    """A gateable figure of a record: where it lives, which way is better, and its confidence interval if any."""

    name: str
    path: tuple[str, ...]
    higher_is_better: bool
    ci_path: tuple[str, ...] | None = None
    energy_part: str | None = None  # the record section whose energy method qualifies this figure
    unit: str = ""


METRICS: Mapping[str, Metric] = {
    m.name: m
    for m in (
        Metric("train_samples_per_s", ("train", "samples_per_s_stats", "median"), True,
               ("train", "samples_per_s_stats", "ci95"), unit="samples/s"),
        Metric("inference_samples_per_s", ("inference", "samples_per_s_stats", "median"), True,
               ("inference", "samples_per_s_stats", "ci95"), unit="samples/s"),
        Metric("inference_latency_p50_s", ("inference", "latency_s", "stats", "median"), False,
               ("inference", "latency_s", "stats", "ci95"), unit="s"),
        Metric("train_energy_j", ("train", "energy_j"), False, energy_part="train", unit="J"),
        Metric("train_samples_per_kj", ("train", "samples_per_kj"), True, energy_part="train", unit="samples/kJ"),
        Metric("inference_energy_j", ("inference", "energy_j"), False, energy_part="inference", unit="J"),
        Metric("inference_j_per_sample", ("inference", "j_per_sample"), False, energy_part="inference",
               unit="J/sample"),
        Metric("train_peak_memory_bytes", ("train", "peak_memory_bytes"), False, unit="B"),
        Metric("inference_peak_memory_bytes", ("inference", "peak_memory_bytes"), False, unit="B"),
        Metric("score", ("accuracy", "score"), True, unit="points"),
    )
}


@dataclass(frozen=True)
class Rule:
    """One ``metric:tolerance`` item of ``--longeff-fail-on``; ``tolerance`` is a fraction (10% -> 0.1)."""

    metric: Metric
    tolerance: float


def parse_fail_on(text: str) -> tuple[Rule, ...]:
    """Parse ``metric:10%[,metric:5%...]``; errors list the accepted metrics."""
    rules: list[Rule] = []
    accepted = ", ".join(METRICS)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, tol = part.partition(":")
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; accepted: {accepted}")
        if not sep or not tol.endswith("%"):
            raise ValueError(f"expected metric:N% (e.g. {name}:10%), got {part!r}")
        try:
            value = float(tol[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected metric:N% (e.g. {name}:10%), got {part!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"tolerance must be a percentage >= 0, got {tol!r}")
        rules.append(Rule(METRICS[name], value))
    if not rules:
        raise ValueError(f"expected metric:N% items separated by commas; metrics: {accepted}")
    return tuple(rules)


@dataclass(frozen=True)
class Check:
    """The comparison of one metric of one cell with its baseline."""

    metric: str
    status: str  # "passed" | "failed" | "within_noise" | "unmeasured" | "not_gated"
    baseline: float | None
    current: float | None
    change: float | None  # relative, signed: (current - baseline) / baseline
    tolerance: float
    note: str

    def fails(self) -> bool:
        return self.status == "failed"

    def message(self) -> str:
        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4g}"

        change = "n/a" if self.change is None else f"{self.change:+.1%}"
        return (f"{self.metric}: baseline {fmt(self.baseline)}, current {fmt(self.current)}, change {change}, "
                f"tolerance {self.tolerance:.0%} for the worse ({self.status}; {self.note})")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "status": self.status, "baseline": self.baseline, "current": self.current,
                "change": self.change, "tolerance": self.tolerance, "note": self.note}


MIN_INTERVAL_SAMPLES = 3  # fewer samples give no interval worth trusting: compared as single values


def _interval(record: Mapping[str, Any], metric: Metric) -> tuple[float, float] | None:
    """The figure's 95 % CI, when it comes from at least ``MIN_INTERVAL_SAMPLES`` samples."""
    if metric.ci_path is None:
        return None
    ci = lookup(record, *metric.ci_path)
    n = lookup(record, *metric.ci_path[:-1], "n")
    if (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci)
            and isinstance(n, int) and n >= MIN_INTERVAL_SAMPLES):
        return float(ci[0]), float(ci[1])
    return None


def check(rule: Rule, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Check:
    """Compare one metric; unmeasured or estimated figures are reported, never gated.

    With intervals on both sides, a regression needs the intervals themselves to be apart by more than the
    tolerance (current best case worse than the baseline's worst case, scaled); otherwise the point values are
    compared."""
    m = rule.metric
    base, cur = lookup(baseline, *m.path), lookup(current, *m.path)
    if m.energy_part is not None:
        methods = {lookup(r, m.energy_part, "energy_method") for r in (baseline, current)}
        if "estimate" in methods:
            return Check(m.name, "not_gated", base, cur, None, rule.tolerance,
                         "energy from the 'estimate' model is never gated")
        if len(methods) > 1:
            return Check(m.name, "not_gated", base, cur, None, rule.tolerance,
                         f"energy methods differ ({', '.join(sorted(map(str, methods)))})")
    if not isinstance(base, (int, float)) or not isinstance(cur, (int, float)):
        return Check(m.name, "unmeasured", base if isinstance(base, (int, float)) else None,
                     cur if isinstance(cur, (int, float)) else None, None, rule.tolerance,
                     "not measured on one side: nothing to compare")
    if base == 0:
        worse = cur < 0 if m.higher_is_better else cur > 0
        return Check(m.name, "failed" if worse else "passed", base, cur, None, rule.tolerance,
                     "baseline is 0: compared by value")
    change = (cur - base) / abs(base)
    worse_by = -change if m.higher_is_better else change
    if worse_by <= rule.tolerance:
        return Check(m.name, "passed", base, cur, change, rule.tolerance, "within tolerance")
    base_ci, cur_ci = _interval(baseline, m), _interval(current, m)
    if base_ci is not None and cur_ci is not None:
        if m.higher_is_better:
            limit, best_case = base_ci[0] * (1 - rule.tolerance), cur_ci[1]
            apart = best_case < limit
        else:
            limit, best_case = base_ci[1] * (1 + rule.tolerance), cur_ci[0]
            apart = best_case > limit
        detail = (f"current 95% CI [{cur_ci[0]:.4g}, {cur_ci[1]:.4g}] vs baseline [{base_ci[0]:.4g}, "
                  f"{base_ci[1]:.4g}]")
        if not apart:
            return Check(m.name, "within_noise", base, cur, change, rule.tolerance,
                         f"beyond tolerance, but the intervals overlap within it ({detail})")
        return Check(m.name, "failed", base, cur, change, rule.tolerance, f"intervals apart: {detail}")
    return Check(m.name, "failed", base, cur, change, rule.tolerance,
                 f"compared as single values (no interval from >= {MIN_INTERVAL_SAMPLES} samples on both sides)")


COMPARABLE_SETTINGS = ("profile", "train_budget", "memory_budget_bytes", "max_batch", "batch_size",
                       "effective_batch", "lr", "eval_samples", "repeats", "warmup_steps")


def settings_mismatch(baseline_settings: Mapping[str, Any], current_settings: Mapping[str, Any]) -> str | None:
    """Why two runs' settings make their figures incomparable (a matrix is comparable only under the same
    budgets), or None."""
    diffs = []
    for key in COMPARABLE_SETTINGS:
        a, b = baseline_settings.get(key), current_settings.get(key)
        if isinstance(a, Mapping) or isinstance(b, Mapping):
            a = a.get("spec") if isinstance(a, Mapping) else a
            b = b.get("spec") if isinstance(b, Mapping) else b
        if a != b:
            diffs.append(f"{key} {a!r} vs {b!r}")
    return "; ".join(diffs) or None


def machine_mismatch(baseline_machine: Mapping[str, Any], current_machine: Mapping[str, Any]) -> str | None:
    """Why two reports' machines are not comparable, or None. Compares device kind, accelerator, CPU model and
    the torch / transformers versions."""
    diffs = []
    for key in ("device", "accelerator", "cpu", "cpu_threads", "torch", "transformers"):
        a, b = baseline_machine.get(key), current_machine.get(key)
        if key == "device":  # cuda:0 and cuda:1 of one machine are the same kind of device
            a, b = str(a).split(":")[0], str(b).split(":")[0]
        if a != b:
            diffs.append(f"{key} {a!r} vs {b!r}")
    return "; ".join(diffs) or None


DEFAULT_FAIL_ON = ("train_samples_per_s:10%,inference_samples_per_s:10%,train_energy_j:10%,"
                   "inference_j_per_sample:10%")


def gate_record(rules: Sequence[Rule], baseline_doc: Mapping[str, Any], current: Mapping[str, Any],
                current_machine: Mapping[str, Any], baseline_path: str,
                current_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``gate`` section of a record: every check, or why the cell could not be compared."""
    out: dict[str, Any] = {"baseline": baseline_path, "checks": [], "refused": None}
    mismatch = machine_mismatch(baseline_doc.get("machine") or {}, current_machine)
    if mismatch is not None:
        out["refused"] = f"the baseline comes from another machine or software stack ({mismatch})"
        return out
    if current_settings is not None:
        differ = settings_mismatch(baseline_doc.get("settings") or {}, current_settings)
        if differ is not None:
            out["refused"] = f"the baseline was measured under other settings ({differ})"
            return out
    base = next((r for r in baseline_doc.get("records", []) if r.get("id") == current.get("id")), None)
    if base is None or base.get("status") != "passed":
        out["refused"] = None
        out["note"] = "no passed record of this cell in the baseline: nothing to compare"
        return out
    out["checks"] = [check(rule, base, current).to_dict() for rule in rules]
    return out


def gate_failures(gate: Mapping[str, Any] | None) -> list[str]:
    """Messages for everything in a record's gate section that must fail its test."""
    if not gate:
        return []
    if gate.get("refused"):
        return [f"gate refused: {gate['refused']}; record a baseline on this machine with these settings"]
    return [Check(**c).message() for c in gate.get("checks", []) if c.get("status") == "failed"]

"""The gate over a whole run: false-discovery-rate control across (cell, metric) pairs and a suite-level rule.

A per-cell test fails at once only for a clear regression (intervals apart, :func:`pytest_longeff.gate.check.check`).
With many cells, borderline changes are judged together once every record is in:

* **FDR**: per (cell, metric) a one-sided p-value for "worse by more than the tolerance", from the log ratio of the
  medians with a normal standard error read off both 95 % intervals (``(ln hi - ln lo) / 3.92``); a noisy figure
  without intervals gets p = 1 (it cannot be a discovery; its check says inconclusive), energy gets its error bar,
  and exact figures (memory, score) get p = 0 when beyond the tolerance, else 1. The work counters are exact checks
  of their own, outside the FDR. Benjamini-Hochberg at ``FDR_Q`` over all gated pairs of the run decides which are
  regressions.
* **Suite**: per metric, the geometric mean of current/baseline over all cells but the acknowledged ones; it fails
  when worse than the tolerance and, with a standard error from the cells' intervals and their spread (the larger),
  significantly so (``SUITE_ALPHA``); it passes only when
  the upper end of its 95 % interval is within the tolerance and every noisy cell had an interval, and is
  ``inconclusive`` otherwise: a suite that cannot resolve its tolerance says nothing about the change.
* **Drift**: where both records carry a machine-speed reference (``record["reference"]``, measured around the cell by
  :mod:`pytest_longeff.measure.reference`), time-based figures (throughput, latency, window times) are compared as if
  both runs had the baseline's machine speed (:func:`drift`): the per-cell check, the FDR p-values (the reference's own
  uncertainty added to the standard error) and the suite's geometric mean all see the corrected value. Energy and
  memory are never corrected.

Pure Python (``math.erf``): importing the gate must not import numpy, scipy or torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_longeff.gate.acknowledge import SUITE_ID, Ack, acknowledged
from pytest_longeff.record.figures import Figure

FDR_Q = 0.05  # expected share of false alarms among the regressions the run reports
SUITE_ALPHA = 0.05  # one-sided level of the suite rule
Z95 = 1.959963984540054  # the normal quantile a 95 % interval spans on each side


@dataclass(frozen=True)
class Drift:
    """The machine-speed correction of one time-based figure of one cell."""

    speed: float
    """The current run's machine speed relative to the baseline's: reference ops/s current / baseline."""
    factor: float
    """What the current value (and its interval) is multiplied by: ``1 / speed`` for higher-is-better figures
    (a slower machine lowered the throughput), ``speed`` for lower-is-better ones (it raised the latency)."""
    se: float | None
    """Standard error of ``ln speed`` from both references' intervals; None without intervals on both sides."""

    def note(self) -> str:
        """How the current value was corrected, for the check's note."""
        return (f"drift-corrected by the machine-speed reference: x{self.factor:.3g} (machine at {self.speed:.3g} "
                "of the baseline's reference speed)")


def _reference(record: Mapping[str, Any]) -> tuple[float, tuple[float, float] | None, str] | None:
    """A record's reference: ops/s, its 95 % interval (from >= 3 samples) and method; None without a usable one."""
    ref = record.get("reference")
    if not isinstance(ref, Mapping):
        return None
    ops, stats = ref.get("ops_per_s"), ref.get("stats")
    if not isinstance(ops, (int, float)) or isinstance(ops, bool) or not math.isfinite(ops) or ops <= 0:
        return None
    ci, n = (stats.get("ci95"), stats.get("n")) if isinstance(stats, Mapping) else (None, None)
    interval = None
    if (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci)
            and isinstance(n, int) and n >= 3):
        interval = (float(ci[0]), float(ci[1]))
    return float(ops), interval, str(ref.get("method"))


def torch_settings_differ(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """Which process-wide torch settings the two records' references ran under differently (None: the same, or not
    recorded on a side)."""
    a, b = ((r.get("reference") or {}).get("torch_settings") for r in (baseline, current))
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        return None
    differ = [f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(differ) or None


def drift(fig: Figure, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Drift | None:
    """The correction of ``fig`` between two records, or None: not time-based, a side without a reference, the
    references measured another workload (other ``method``), or under other process-wide torch settings (a
    correction would cancel the regression they cause)."""
    if not fig.time_based:
        return None
    base, cur = _reference(baseline), _reference(current)
    if base is None or cur is None or base[2] != cur[2] or torch_settings_differ(baseline, current):
        return None
    speed = cur[0] / base[0]
    ses = [log_se(base[1]), log_se(cur[1])]
    se = math.hypot(ses[0], ses[1]) if ses[0] is not None and ses[1] is not None else None
    return Drift(speed, 1 / speed if fig.higher_is_better else speed, se)


def normal_cdf(x: float) -> float:
    """The standard normal distribution function."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def threshold(fig: Figure, tolerance: float) -> float:
    """The tolerated change as a "worse" log ratio (positive; infinite for a 100 % drop of a higher-is-better one)."""
    if fig.higher_is_better:
        return math.inf if tolerance >= 1 else -math.log1p(-tolerance)
    return math.log1p(tolerance)


def worse_log_ratio(fig: Figure, base: float, cur: float) -> float | None:
    """``ln`` of the change for the worse (positive when worse), or None where a side is not positive."""
    if base <= 0 or cur <= 0:
        return None
    return math.log(base / cur) if fig.higher_is_better else math.log(cur / base)


def log_se(interval: tuple[float, float] | None) -> float | None:
    """Standard error of a median's logarithm from its 95 % interval, or None without a usable interval."""
    if interval is None or interval[0] <= 0 or interval[1] < interval[0]:
        return None
    return (math.log(interval[1]) - math.log(interval[0])) / (2 * Z95)


def p_beyond(excess: float, se: float | None) -> float:
    """One-sided p-value that a log ratio ``excess`` above the tolerated one is noise; point decision without se."""
    if se is None or se == 0:
        return 0.0 if excess > 0 else 1.0
    return 1.0 - normal_cdf(excess / se)


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values), in the input order: a pair is a discovery at level q when its value <= q."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * m / rank)
        adjusted[i] = min(running, 1.0)
    return adjusted


@dataclass(frozen=True)
class Pair:
    """One gated (cell, metric) comparison with its evidence."""

    cell: str
    metric: str
    baseline: float
    current: float
    excess: float | None  # worse log ratio minus the tolerated one; None where a side is not positive
    se: float | None  # standard error of the log ratio; None: compared as single values
    p: float
    tolerance: float
    check_status: str  # the per-cell verdict (passed, failed, inconclusive, acknowledged)
    drift: float | None = None  # the machine-speed factor ``current`` was corrected by (None: uncorrected)


@dataclass(frozen=True)
class PairVerdict:
    """A pair's run-level verdict: ``regression``, ``acknowledged`` or ``ok``."""

    pair: Pair
    q: float
    verdict: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The verdict as an item of the report's ``session.gate.fdr``."""
        p = self.pair
        return {"cell": p.cell, "metric": p.metric, "baseline": p.baseline, "current": p.current,
                "change": p.current / p.baseline - 1 if p.baseline else None, "tolerance": p.tolerance,
                "p": p.p, "q": self.q, "method": "single values" if p.se is None else "log-normal, CI as SE",
                "check": p.check_status, "verdict": self.verdict, "reason": self.reason, "drift_factor": p.drift}


@dataclass(frozen=True)
class SuiteVerdict:
    """The suite rule for one metric: geometric mean of current/baseline over ``cells`` cells."""

    metric: str
    cells: int
    ratio: float | None  # geometric mean of current / baseline
    tolerance: float
    p: float | None
    verdict: str  # passed | failed | inconclusive | acknowledged | no data
    reason: str | None = None
    corrected: int = 0  # cells whose ratio was drift-corrected by the machine-speed reference

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a value of the report's ``session.gate.suite``."""
        return {"metric": self.metric, "cells": self.cells, "geomean_ratio": self.ratio,
                "change": None if self.ratio is None else self.ratio - 1, "tolerance": self.tolerance, "p": self.p,
                "verdict": self.verdict, "reason": self.reason, "drift_corrected_cells": self.corrected}


@dataclass(frozen=True)
class RunVerdict:
    """The gate over the whole run: FDR per (cell, metric) pair, the suite rule per metric, or why it was refused."""

    fdr: tuple[PairVerdict, ...] = ()
    suite: tuple[SuiteVerdict, ...] = ()
    refused: str | None = None
    q_level: float = FDR_Q
    notes: tuple[str, ...] = field(default_factory=tuple)
    lost: tuple[str, ...] = ()  # cells that passed in the baseline and are now skipped or errored

    @property
    def regressions(self) -> list[PairVerdict]:
        """The FDR discoveries not acknowledged."""
        return [v for v in self.fdr if v.verdict == "regression"]

    @property
    def inconclusive(self) -> list[SuiteVerdict]:
        """The metrics whose suite rule could not resolve the tolerance."""
        return [s for s in self.suite if s.verdict == "inconclusive"]

    @property
    def suite_failures(self) -> list[SuiteVerdict]:
        """The metrics whose suite rule failed."""
        return [s for s in self.suite if s.verdict == "failed"]

    def fails(self) -> bool:
        """Whether the run must fail: refused, an FDR regression or a failed suite rule (acknowledged ones pass)."""
        return self.refused is not None or bool(self.regressions) or bool(self.suite_failures) or bool(self.lost)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as the report's ``session.gate``."""
        return {"refused": self.refused, "failed": self.fails(), "fdr_q": self.q_level,
                "suite_alpha": SUITE_ALPHA, "suite": {s.metric: s.to_dict() for s in self.suite},
                "fdr": [v.to_dict() for v in self.fdr], "lost": list(self.lost), "notes": list(self.notes)}


def fdr_verdicts(pairs: Sequence[Pair], acks: Sequence[Ack], q: float = FDR_Q) -> tuple[PairVerdict, ...]:
    """Benjamini-Hochberg over ``pairs``; a discovery that an entry of ``acks`` covers is ``acknowledged``."""
    out = []
    for pair, adjusted in zip(pairs, benjamini_hochberg([p.p for p in pairs]), strict=True):
        if adjusted > q:
            out.append(PairVerdict(pair, adjusted, "ok"))
            continue
        ack = acknowledged(acks, pair.cell, pair.metric)
        out.append(PairVerdict(pair, adjusted, "acknowledged" if ack else "regression", ack.reason if ack else None))
    return tuple(out)


def suite_verdict(metric: str, fig: Figure, pairs: Sequence[Pair], acks: Sequence[Ack],
                  tolerance: float | None = None) -> SuiteVerdict:
    """The suite rule for one metric over its pairs (those with positive values on both sides, not acknowledged);
    ``tolerance``: the rule's (else the pairs', so a rule without data still shows its own tolerance when given)."""
    usable = [p for p in pairs if p.excess is not None and acknowledged(acks, p.cell, p.metric) is None]
    if tolerance is None:
        tolerance = pairs[0].tolerance if pairs else 0.0
    if not usable:
        return SuiteVerdict(metric, 0, None, tolerance, None, "no data")
    k = len(usable)
    t = threshold(fig, tolerance)
    corrected = sum(q.drift is not None for q in usable)
    if math.isinf(t):  # a tolerated drop of 100 % or more: nothing can be worse (excess + t would be nan)
        logs = [w for q in usable if (w := worse_log_ratio(fig, q.baseline, q.current)) is not None]
        ratio = math.exp(-math.fsum(logs) / len(logs)) if logs else None
        return SuiteVerdict(metric, k, ratio, tolerance, 1.0, "passed", corrected=corrected)
    worse = [p.excess + t for p in usable if p.excess is not None]
    mean = math.fsum(worse) / k
    ratio = math.exp(-mean if fig.higher_is_better else mean)
    within = math.sqrt(math.fsum((p.se or 0.0) ** 2 for p in usable)) / k
    spread = math.sqrt(math.fsum((w - mean) ** 2 for w in worse) / (k - 1) / k) if k > 1 else 0.0
    se = max(within, spread)
    p = p_beyond(mean - t, se)
    # The suite judges these cells (a fixed set), so its noise is their own intervals'; the spread between cells
    # only guards against intervals that understate it, and is not a sample of cells to widen by Student's t.
    z = Z95
    # A noisy figure without an interval says nothing about its own noise: the suite cannot pass on it.
    blind = fig.noisy and any(p.se is None for p in usable)
    if mean + z * se <= t and not blind:
        return SuiteVerdict(metric, k, ratio, tolerance, p, "passed", corrected=corrected)
    if mean <= t or p > SUITE_ALPHA:
        reach = math.expm1(z * se)
        if blind:
            return SuiteVerdict(metric, k, ratio, tolerance, p, "inconclusive",
                                "a cell's figure has no interval (too few samples)", corrected)
        return SuiteVerdict(metric, k, ratio, tolerance, p, "inconclusive",
                            f"its 95% interval (about ±{reach:.1%}) reaches beyond the tolerance", corrected)
    ack = acknowledged(acks, SUITE_ID, metric)
    return SuiteVerdict(metric, k, ratio, tolerance, p, "acknowledged" if ack else "failed",
                        ack.reason if ack else None, corrected)


def suite_verdicts(pairs: Sequence[Pair], figures: Mapping[str, Figure], acks: Sequence[Ack],
                   tolerances: Mapping[str, float] | None = None) -> tuple[SuiteVerdict, ...]:
    """The suite rule for every metric in ``figures`` (in its order), at ``tolerances`` (the rules')."""
    return tuple(suite_verdict(name, fig, [p for p in pairs if p.metric == name], acks, (tolerances or {}).get(name))
                 for name, fig in figures.items())


def terminal_lines(verdict: RunVerdict, limit: int = 20) -> list[str]:
    """The run-level gate for the terminal: suite per metric, then FDR regressions and acknowledgements."""
    if verdict.refused is not None:
        return [f"longeff gate: refused: {verdict.refused}"]
    unresolved = [v for v in verdict.fdr if v.pair.check_status == "inconclusive"]
    head = "FAILED" if verdict.fails() else "INCONCLUSIVE" if verdict.inconclusive or unresolved else "passed"
    lines = [(f"longeff gate over the run: {head} (FDR q={verdict.q_level:g} over {len(verdict.fdr)} "
              f"(cell, metric) pairs; suite rule: geometric mean per metric, alpha={SUITE_ALPHA:g})")]
    if unresolved and not verdict.fails():
        shown = ", ".join(f"{v.pair.cell} {v.pair.metric}" for v in unresolved[:5])
        lines.append(f"  inconclusive: {len(unresolved)} (cell, metric) check(s) could not resolve the tolerance "
                     f"({shown}{' ...' if len(unresolved) > 5 else ''}); decide with `pytest-longeff ab`")
    for s in verdict.suite:
        change = "n/a" if s.ratio is None else f"{s.ratio - 1:+.1%}"
        why = f" ({s.reason})" if s.reason else ""
        fixed = f", drift-corrected in {s.corrected}" if s.corrected else ""
        lines.append(f"  suite {s.metric}: {s.verdict}, geometric mean change {change} over {s.cells} cells"
                     f"{fixed}, tolerance {s.tolerance:.0%}{why}")
    flagged = [v for v in verdict.fdr if v.verdict != "ok"]
    for v in flagged[:limit]:
        d = v.to_dict()
        change = "n/a" if d["change"] is None else f"{d['change']:+.1%}"
        why = f": {v.reason}" if v.reason else ""
        lines.append(f"  {v.verdict} {v.pair.cell} {v.pair.metric}: baseline {v.pair.baseline:.4g}, current "
                     f"{v.pair.current:.4g}, change {change}, q={v.q:.3g}{why}")
    if len(flagged) > limit:
        lines.append(f"  ... and {len(flagged) - limit} more (the JSON report's session.gate.fdr has them all)")
    lines.extend(f"  note: {n}" for n in verdict.notes)
    return lines

"""The regression gate: compare a record with the same record in a baseline report.

``--longeff-fail-on "inference_j_per_sample:10%,train_samples_per_s:10%"`` names figures of :data:`record.GATED`
(or of a measured window, ``window_<name>_time_s``; see :mod:`pytest_longeff.measure.recorder`) and the change each
may make for the worse; the direction of "worse" comes from the figure. Three verdicts: a check **fails** when the
change is beyond the tolerance and both sides' 95 % intervals are apart (energy: its error bar; exact figures such
as memory, the score and the work counters: by value); it **passes** only when the worst change its intervals
allow is within the tolerance; otherwise it is **inconclusive** (a noisy figure without an interval is too): a gate
that cannot resolve its tolerance must not say "no regression".

The plugin parses the option once (:meth:`Gate.load`), judges each measurement once (its ``gate`` section) and
enforces the verdict after each test body ran, so the gate holds for every benchmark that uses the fixtures, also
under ``python -O``. Over the whole run, :class:`pytest_longeff.gate.plugin.GateRun` applies the FDR correction and
the suite rule of :mod:`pytest_longeff.gate.suite` once all records are in, from the checks in their gate sections
(:meth:`Gate.judge_run`), and fails the session pytest-cov style. Regressions in ``--longeff-acknowledged`` are
reported ``acknowledged``, not failed.
Time-based figures of records that both carry a machine-speed reference are compared drift-corrected
(:func:`pytest_longeff.gate.suite.drift`); energy and memory never are.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_longeff.gate.acknowledge import Ack, acknowledged, load_acknowledged
from pytest_longeff.gate.remeasure import as_judged, run_note
from pytest_longeff.gate.suite import (
    Z95,
    Pair,
    RunVerdict,
    drift,
    fdr_verdicts,
    log_se,
    p_beyond,
    suite_verdicts,
    threshold,
    torch_settings_differ,
    worse_log_ratio,
)
from pytest_longeff.measure.machine import mismatch
from pytest_longeff.record.figures import GATED, Figure, figure
from pytest_longeff.record.sections import is_cell, lookup
from pytest_longeff.text import for_terminal

MIN_INTERVAL_SAMPLES = 3  # fewer samples give no interval worth trusting: a noisy figure is then inconclusive
COMPARABLE_SETTINGS = ("profile", "train_budget", "memory_budget_bytes", "max_batch", "batch_size",
                       "effective_batch", "lr", "eval_samples", "repeats", "warmup_steps", "precision",
                       "early_stop_metric", "tiny_weights")


@dataclass(frozen=True)
class Rule:
    """One ``metric:tolerance`` item of ``--longeff-fail-on``; ``tolerance`` is a fraction (10% -> 0.1)."""

    metric: Figure
    tolerance: float

    def applies(self, record: Mapping[str, Any]) -> bool:
        """Window rules apply to records measuring that window; cell rules to cell records."""
        if self.metric.path[0] == "windows":
            return lookup(record, *self.metric.path[:2]) is not None
        return is_cell(record)


def parse_fail_on(text: str) -> tuple[Rule, ...]:
    """Parse ``metric:10%[,metric:5%...]``; errors list the accepted metrics."""
    rules: list[Rule] = []
    accepted = ", ".join([*GATED, "work"]) + ", window_<name>_{time_s,energy_j,energy_net_j,peak_memory_bytes}"
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, tol = part.partition(":")
        fig = figure(name)
        if fig is None:
            raise ValueError(f"unknown metric {name!r}; accepted: {accepted}")
        if not sep or not tol.endswith("%"):
            raise ValueError(f"expected metric:N% (e.g. {name}:10%), got {part!r}")
        try:
            value = float(tol[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected metric:N% (e.g. {name}:10%), got {part!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"tolerance must be a percentage >= 0, got {tol!r}")
        rules.append(Rule(fig, value))
    if not rules:
        raise ValueError(f"expected metric:N% items separated by commas; metrics: {accepted}")
    return tuple(rules)


@dataclass(frozen=True)
class Check:
    """The comparison of one metric of one record with its baseline."""

    metric: str
    status: str  # "passed" | "failed" | "inconclusive" | "unmeasured" | "not_gated" | "acknowledged"
    baseline: float | None
    current: float | None
    change: float | None  # relative, signed: (current - baseline) / baseline
    tolerance: float
    note: str

    def fails(self) -> bool:
        """Whether this check fails its test (acknowledged regressions do not)."""
        return self.status == "failed"

    def message(self) -> str:
        """Baseline, current, change and tolerance in one line."""

        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4g}"

        change = "n/a" if self.change is None else f"{self.change:+.1%}"
        return (f"{self.metric}: baseline {fmt(self.baseline)}, current {fmt(self.current)}, change {change}, "
                f"tolerance {self.tolerance:.0%} for the worse ({self.status}; {self.note})")

    def to_dict(self) -> dict[str, Any]:
        """The check as the record's ``gate.checks`` item."""
        return {"metric": self.metric, "status": self.status, "baseline": self.baseline, "current": self.current,
                "change": self.change, "tolerance": self.tolerance, "note": self.note}


def _interval(record: Mapping[str, Any], fig: Figure) -> tuple[float, float] | None:
    """The figure's 95 % CI, when it comes from at least ``MIN_INTERVAL_SAMPLES`` samples."""
    if fig.ci_path is None:
        return None
    ci = lookup(record, *fig.ci_path)
    n = lookup(record, *fig.ci_path[:-1], "n")
    if (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci)
            and isinstance(n, int) and n >= MIN_INTERVAL_SAMPLES):
        return float(ci[0]), float(ci[1])
    return None


def _energy_method(record: Mapping[str, Any], fig: Figure) -> Any:
    # A window's energy method sits beside its figures (energy_part "windows.<name>"), a cell's in its section.
    return lookup(record, *(fig.energy_part or "").split("."), "energy_method")


def _intervals_apart(fig: Figure, tolerance: float, base_ci: tuple[float, float],
                     cur_ci: tuple[float, float]) -> bool:
    """Whether the current interval's best case is worse than the baseline's worst case by more than the
    tolerance: for higher-is-better figures the current upper end against the baseline's lower end, for
    lower-is-better ones the current lower end against the baseline's upper end."""
    if fig.higher_is_better:
        return cur_ci[1] < base_ci[0] * (1 - tolerance)
    return cur_ci[0] > base_ci[1] * (1 + tolerance)


#: Recipe choices recorded in ``model_config`` (:data:`~pytest_longeff.models.common.RECIPE_DEFAULTS`) that a gate
#: compares across (a change may be one of them), in words. A check whose two sides differ in one says so.
RECIPE_WORDS: dict[str, str] = {"gradient_checkpointing": "gradient checkpointing",
                                "attn_implementation": "attention implementation"}


def recipe_differs(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """Which recorded recipe choices the two records ran with differently, in words (None: the same)."""
    from pytest_longeff.models.common import RECIPE_DEFAULTS

    def value(record: Mapping[str, Any], key: str) -> Any:
        config = record.get("model_config")
        return (config if isinstance(config, Mapping) else {}).get(key, RECIPE_DEFAULTS[key])

    differ = [f"{words} {value(baseline, key)!r} vs {value(current, key)!r}" for key, words in RECIPE_WORDS.items()
              if value(baseline, key) != value(current, key)]
    return "; ".join(differ) or None


def with_recipe_note(c: Check, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Check:
    """``c`` with a note naming the recipe choices its two sides differ in, if any."""
    differ = recipe_differs(baseline, current)
    return c if differ is None else dataclasses.replace(c, note=f"{c.note}; the two sides ran another recipe "
                                                                f"({differ})")


def check(rule: Rule, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Check:
    """:func:`compare_figure`, with a note when the two sides ran another recipe (:func:`recipe_differs`)."""
    return with_recipe_note(compare_figure(rule, baseline, current), baseline, current)


def compare_figure(rule: Rule, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Check:
    """Compare one figure; unmeasured or estimated figures are reported, never gated.

    With intervals on both sides, a regression needs the intervals themselves to be apart by more than the
    tolerance (current best case worse than the baseline's worst case, scaled), and "passed" needs the worst case
    within it; a noisy figure without intervals is inconclusive, an exact one compared by value. Inference
    figures of a record whose generation was timed otherwise (a fixed number of new tokens vs until the end token)
    are not gated. Time-based figures of two records that both carry a machine-speed reference are compared
    drift-corrected (:func:`pytest_longeff.gate.suite.drift`): the current value and interval are scaled by the
    reference's factor, which the note states."""
    m = rule.metric
    base, cur = m.value(baseline), m.value(current)
    if m.energy_part is not None:
        methods = {_energy_method(r, m) for r in (baseline, current)}
        if "estimate" in methods:
            return Check(m.name, "not_gated", base, cur, None, rule.tolerance,
                         "energy from the 'estimate' model is never gated")
        if len(methods) > 1:
            return Check(m.name, "not_gated", base, cur, None, rule.tolerance,
                         f"energy methods differ ({', '.join(sorted(map(str, methods)))})")
        if any(lookup(r, *(m.energy_part or "").split("."), "energy_coarse") for r in (baseline, current)):
            return Check(m.name, "not_gated", base, cur, None, rule.tolerance,
                         "coarse energy reading (window shorter than 10 counter update periods) is never gated")
        invalid = _invalid_now(m, baseline, current)
        if invalid is not None:
            return Check(m.name, "failed", base, None, None, rule.tolerance, invalid)
        wide = _bar_too_wide(m, rule.tolerance, baseline, current)
        if wide is not None:
            return Check(m.name, "not_gated", base, cur, None, rule.tolerance, wide)
    if m.name != "score" and _batch(baseline) != _batch(current):
        return Check(m.name, "not_gated", base, cur, None, rule.tolerance,
                     f"batch sizes differ ({_batch(baseline)} vs {_batch(current)}): efficiency is not comparable")
    if m.name == "work":
        return work_check(rule, baseline, current)
    if m.path[0] == "inference" and m.noisy and \
            lookup(baseline, "inference", "new_tokens") != lookup(current, "inference", "new_tokens"):
        return Check(m.name, "not_gated", base, cur, None, rule.tolerance,
                     "inference was timed otherwise in the baseline (until the end token, not a fixed number of new "
                     "tokens): not comparable; refresh the baseline")
    if base is None or cur is None:
        return Check(m.name, "unmeasured", base, cur, None, rule.tolerance,
                     "not measured on one side: nothing to compare")
    d = drift(m, baseline, current)
    base_ci, cur_ci = _interval(baseline, m), _interval(current, m)
    if m.energy_part is not None:  # energy carries an error bar, not a CI: compared bar to bar
        base_ci, cur_ci = _energy_bar(baseline, m), _energy_bar(current, m)
    if d is not None:  # the reference's own uncertainty widens the corrected interval
        cur, w = cur * d.factor, math.exp(Z95 * (d.se or 0.0))
        cur_ci = None if cur_ci is None else (cur_ci[0] * d.factor / w, cur_ci[1] * d.factor * w)
    c = _compare(rule, base, cur, base_ci, cur_ci)
    if d is None and m.time_based and (settings := torch_settings_differ(baseline, current)):
        return dataclasses.replace(c, note=f"{c.note}; not drift-corrected: process-wide torch settings differ "
                                           f"({settings})")
    return c if d is None else dataclasses.replace(c, note=f"{c.note}; {d.note()}")


def _compare(rule: Rule, base: float, cur: float, base_ci: tuple[float, float] | None,
             cur_ci: tuple[float, float] | None) -> Check:
    """The verdict on two measured values and their intervals: ``failed`` when the intervals are apart by more than
    the tolerance (or, for a figure that does not vary between measurements, when the values are); ``passed`` only
    when the change's interval stays within the tolerance; ``inconclusive`` when the measurements cannot tell."""
    m = rule.metric
    if base == 0:
        worse = cur < 0 if m.higher_is_better else cur > 0
        return Check(m.name, "failed" if worse else "passed", base, cur, None, rule.tolerance,
                     "baseline is 0: compared by value")
    change = (cur - base) / abs(base)
    worse_by = -change if m.higher_is_better else change
    if base_ci is None or cur_ci is None:
        if not m.noisy:  # scores, peak memory: the same every measurement, so a single value is the answer
            status = "passed" if worse_by <= rule.tolerance else "failed"
            return Check(m.name, status, base, cur, change, rule.tolerance, "compared by value (not a noisy figure)")
        return Check(m.name, "inconclusive", base, cur, change, rule.tolerance,
                     f"no interval from >= {MIN_INTERVAL_SAMPLES} samples on both sides: a change cannot be told "
                     "from noise (measure more repeats, or compare side by side with `pytest-longeff ab`)")
    detail = f"current 95% CI [{cur_ci[0]:.4g}, {cur_ci[1]:.4g}] vs baseline [{base_ci[0]:.4g}, {base_ci[1]:.4g}]"
    if _intervals_apart(m, rule.tolerance, base_ci, cur_ci):
        return Check(m.name, "failed", base, cur, change, rule.tolerance, f"intervals apart: {detail}")
    high = _worst_change(m, base, cur, base_ci, cur_ci)
    if high is not None and high <= threshold(m, rule.tolerance):
        return Check(m.name, "passed", base, cur, change, rule.tolerance, f"within tolerance at 95% ({detail})")
    resolves = "n/a" if high is None else f"{math.expm1(high - (worse_log_ratio(m, base, cur) or 0.0)):.1%}"
    return Check(m.name, "inconclusive", base, cur, change, rule.tolerance,
                 f"the intervals cannot resolve the tolerance (they resolve changes of about {resolves}): {detail}")


def _worst_change(fig: Figure, base: float, cur: float, base_ci: tuple[float, float],
                  cur_ci: tuple[float, float]) -> float | None:
    """The upper end of the change's 95 % interval as a "worse" log ratio (both sides' standard errors combined)."""
    w = worse_log_ratio(fig, base, cur)
    ses = log_se(base_ci), log_se(cur_ci)
    if w is None or ses[0] is None or ses[1] is None:
        return None
    return w + Z95 * math.hypot(ses[0], ses[1])


def _energy_bar(record: Mapping[str, Any], fig: Figure) -> tuple[float, float] | None:
    """The energy figure's error bar as an interval: the reading's own bound, scaled to the figure."""
    value = fig.value(record)
    section = lookup(record, *(fig.energy_part or "").split("."))
    if value is None or not isinstance(section, Mapping):
        return None
    energy, bound = section.get("energy_j"), section.get("energy_uncertainty_j")
    if not isinstance(energy, (int, float)) or not isinstance(bound, (int, float)) or energy <= 0:
        return None
    rel = min(bound / energy, 0.999)
    return (value * (1 - rel), value * (1 + rel)) if value > 0 else None


def _bar_too_wide(fig: Figure, tolerance: float, baseline: Mapping[str, Any],
                  current: Mapping[str, Any]) -> str | None:
    """Why an energy figure is not gated: its error bar on either side exceeds the tolerance."""
    for name, record in (("baseline", baseline), ("current", current)):
        bar = _energy_bar(record, fig)
        value = fig.value(record)
        if bar is not None and value and (bar[1] - value) / value > tolerance:
            return (f"the {name}'s energy error bar (±{(bar[1] - value) / value:.1%}) exceeds the tolerance: "
                    "measure a longer window")
    return None


def _invalid_now(fig: Figure, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """A failure when the baseline's energy reading was valid and this one is not: throttling or another process
    on the device (what a power regression can cause) must not pass as "unmeasured"."""
    part = (fig.energy_part or "").split(".")
    if fig.value(baseline) is None or lookup(current, *part, "energy_valid") is not False:
        return None
    if lookup(current, *part, "energy_method") in (None, "none"):
        return None
    note = lookup(current, *part, "energy_note") or "no reason given"
    return (f"the energy reading is invalid now ({note}) and was valid in the baseline: acknowledge it if the "
            "device was shared on purpose")


def work_check(rule: Rule, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Check:
    """The work counters, exactly: ``failed`` when any total per step or per token (operator calls, FLOPs, output
    bytes) grew beyond the tolerance, with the operators that changed (as a profiler diff reads); the figures shown
    are the FLOPs of a training step."""
    from pytest_longeff.measure.work import totals_per_unit, work_diff

    a, b = baseline.get("work"), current.get("work")
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        return Check("work", "unmeasured", None, None, None, rule.tolerance,
                     "no work counters on one side (a report from before they were recorded)")
    grew, diff = [], []
    for kind in ("train", "inference"):
        if not isinstance(a.get(kind), Mapping) or not isinstance(b.get(kind), Mapping):
            continue
        x, y = totals_per_unit(a[kind]), totals_per_unit(b[kind])
        grew += [f"{kind} {k} per {a[kind].get('unit')} {x[k]:.6g} -> {y[k]:.6g}" for k in x
                 if (x[k] > 0 and y[k] > x[k] * (1 + rule.tolerance)) or x[k] == 0 < y[k]]
        diff += [f"{kind}: {c.line()}" for c in work_diff(a[kind], b[kind])[:5]]
    flops = [totals_per_unit(r["train"])["flops"] if isinstance(r.get("train"), Mapping) else None for r in (a, b)]
    change = (flops[1] / flops[0] - 1) if flops[0] and flops[1] is not None else None
    if grew:
        return Check("work", "failed", flops[0], flops[1], change, rule.tolerance,
                     "more work: " + "; ".join(grew) + (" | operators: " + "; ".join(diff) if diff else ""))
    note = "the same work" if not diff else "no total grew; operators changed: " + "; ".join(diff)
    return Check("work", "passed", flops[0], flops[1], change, rule.tolerance, note)


def _batch(record: Mapping[str, Any]) -> Any:
    return record.get("batch_size")


def batch_regression(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Check | None:
    """A memory regression: under the same budget the batch-size search now finds a smaller batch than the
    baseline ran at, or the cell ran out of memory at a batch no larger than the baseline's and was measured at a
    smaller one (the cell then cannot run at the baseline's batch)."""
    base = baseline.get("batch_size")
    oom = lookup(current, "batch_search", "out_of_memory")
    failed = oom.get("batch_size") if isinstance(oom, Mapping) else None
    ran = current.get("batch_size")
    if isinstance(base, int) and isinstance(failed, int) and isinstance(ran, int) and 0 < failed <= base:
        return Check("batch_size", "failed", base, ran, (ran - base) / base, 0.0,
                     f"ran out of memory at batch {failed}, not above the baseline's {base}, and was "
                     f"measured again at batch {ran}: a memory regression")
    found = lookup(current, "batch_search", "searched_batch_size")
    if not isinstance(base, int) or not isinstance(found, int) or found >= base:
        return None
    return Check("batch_size", "failed", base, found, (found - base) / base, 0.0,
                 "the batch-size search now finds a smaller batch under the same memory budget: a memory regression")


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


def refusal(baseline_doc: Mapping[str, Any], current_machine: Mapping[str, Any] | None,
            current_settings: Mapping[str, Any] | None) -> str | None:
    """Why the baseline cannot be compared with this run (other machine or software, other settings), or None."""
    if current_machine is not None:
        machines = mismatch(baseline_doc.get("machine") or {}, current_machine)
        if machines is not None:
            return f"the baseline comes from another machine or software stack ({machines})"
    if current_settings is not None:
        differ = settings_mismatch(baseline_doc.get("settings") or {}, current_settings)
        if differ is not None:
            return f"the baseline was measured under other settings ({differ})"
    return None


def acknowledge(checks: Sequence[Check], cell_id: str, acks: Sequence[Ack]) -> list[Check]:
    """``checks`` with every failure that an entry of ``acks`` covers turned ``acknowledged`` (reason in the note)."""
    out = []
    for c in checks:
        ack = acknowledged(acks, cell_id, c.metric) if c.fails() else None
        out.append(c if ack is None else dataclasses.replace(c, status="acknowledged",
                                                             note=f"{c.note}; acknowledged: {ack.reason}"))
    return out


def gate_record(rules: Sequence[Rule], baseline_doc: Mapping[str, Any], current: Mapping[str, Any],
                current_machine: Mapping[str, Any], baseline_path: str,
                current_settings: Mapping[str, Any] | None = None, acks: Sequence[Ack] = ()) -> dict[str, Any]:
    """The ``gate`` section of a record: every check, or why the record could not be compared."""
    out: dict[str, Any] = {"baseline": baseline_path, "checks": [], "refused": None}
    out["refused"] = refusal(baseline_doc, current_machine, current_settings)
    if out["refused"] is not None:
        return out
    base = baseline_record(baseline_doc, str(current.get("id")))
    if base is None or base.get("status") != "passed":
        out["note"] = "no passed record of this id in the baseline: nothing to compare"
        return out
    base, current = as_judged(base), as_judged(current)
    checks = [check(rule, base, current) for rule in rules if rule.applies(current)]
    memory = batch_regression(base, current)
    memory = None if memory is None else with_recipe_note(memory, base, current)
    judged = acknowledge(([memory] if memory is not None else []) + checks, str(current.get("id")), acks)
    out["checks"] = [c.to_dict() for c in judged]
    return out


def gate_failures(gate: Mapping[str, Any] | None) -> list[str]:
    """Messages for everything in a record's gate section that must fail its test, one line each (through
    :func:`text.for_terminal`: notes and reasons come from the baseline report and the acknowledged file)."""
    if not gate:
        return []
    if gate.get("refused"):
        return [for_terminal(f"gate refused: {gate['refused']}; record a baseline on this machine with these "
                             "settings")]
    return [for_terminal(Check(**c).message()) for c in gate.get("checks", []) if c.get("status") == "failed"]


def baseline_record(baseline_doc: Mapping[str, Any], record_id: str) -> Mapping[str, Any] | None:
    """The baseline's record with ``record_id``, or None."""
    return next((r for r in baseline_doc.get("records", []) if r.get("id") == record_id), None)


# -- the whole run -------------------------------------------------------------------------------------------------
def pair(rule: Rule, base: Mapping[str, Any], current: Mapping[str, Any], c: Check) -> Pair | None:
    """The FDR evidence of one measured check: its excess over the tolerance, standard error and p-value."""
    fig = rule.metric
    if fig.name == "work":  # exact, with its own operator diff: a failed check fails the cell, not a discovery
        return None
    if c.baseline is None or c.current is None or c.status not in ("passed", "failed", "inconclusive"):
        return None
    worse = worse_log_ratio(fig, c.baseline, c.current)
    excess = None if worse is None else worse - threshold(fig, rule.tolerance)
    bar = _energy_bar if fig.energy_part is not None else _interval
    ses = [log_se(bar(r, fig)) for r in (base, current)]
    se = math.hypot(ses[0], ses[1]) if ses[0] is not None and ses[1] is not None else None
    d = drift(fig, base, current)  # c.current is already corrected; the reference's own noise adds to the SE
    if d is not None and se is not None:
        se = math.hypot(se, d.se or 0.0)
    if excess is None:
        p = 0.0 if c.fails() else 1.0
    elif se is None and fig.noisy:  # a noisy figure without intervals is no evidence either way
        p = 1.0
    else:
        p = p_beyond(excess, se)
    return Pair(str(current.get("id")), c.metric, c.baseline, c.current, excess, se, p, rule.tolerance, c.status,
                None if d is None else d.factor)


def lost_cells(baseline_doc: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Cells that passed in the baseline and are now skipped or errored (a regression hiding as a skip)."""
    return [str(r.get("id")) for r in records if r.get("status") in ("skipped", "error")
            and (b := baseline_record(baseline_doc, str(r.get("id")))) is not None and b.get("status") == "passed"]


def judged_checks(record: Mapping[str, Any]) -> dict[str, list[Check]] | None:
    """The checks of the per-cell gate's judgement in ``record``'s gate section, by metric in their order, as
    :func:`check` made them: an ``acknowledged`` check was a failure (the run level applies the acknowledgements
    itself). None when the record holds no judgement of this run's gate: no section or no ``checks`` in it, or a
    record carried over from an earlier run (judged there, maybe against another baseline)."""
    section = record.get("gate")
    if record.get("carried_over") or not isinstance(section, Mapping) or not isinstance(section.get("checks"), list):
        return None
    out: dict[str, list[Check]] = {}
    for c in section["checks"]:
        made = Check(**{f.name: c.get(f.name) for f in dataclasses.fields(Check)})
        if made.status == "acknowledged":
            made = dataclasses.replace(made, status="failed")
        out.setdefault(made.metric, []).append(made)
    return out


def rule_checks(rules: Sequence[Rule], base: Mapping[str, Any], current: Mapping[str, Any],
                reuse: bool = False) -> list[tuple[Rule, Check]]:
    """The check of every rule that applies to ``current``, in the rules' order: with ``reuse``, the one its gate
    section already holds (:func:`judged_checks`; the record is not judged again), else :func:`check` made now."""
    judged = judged_checks(current) if reuse else None
    out = []
    for rule in (r for r in rules if r.applies(current)):
        held = judged.get(rule.metric.name) if judged is not None else None
        out.append((rule, held.pop(0) if held else check(rule, base, current)))
    return out


def judge_run(rules: Sequence[Rule], baseline_doc: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
              acks: Sequence[Ack] = (), current_machine: Mapping[str, Any] | None = None,
              current_settings: Mapping[str, Any] | None = None, reuse: bool = False) -> RunVerdict:
    """The gate over a run's records once all are in: FDR over every gated (cell, metric) pair and the suite rule per
    metric (machine and settings are checked when given; the per-cell gate already checked them in pytest). With
    ``reuse`` (in pytest, where this run's gate judged each record), the checks in the records' gate sections are
    taken as they are (:func:`rule_checks`); reports read from files are judged afresh."""
    why = refusal(baseline_doc, current_machine, current_settings)
    if why is not None:
        return RunVerdict(refused=why)
    latest = {str(r.get("id")): r for r in records}  # a resumed or re-run cell counts once: its last record
    pairs: list[Pair] = []
    for rec in latest.values():
        base = baseline_record(baseline_doc, str(rec.get("id")))
        if base is None or base.get("status") != "passed" or rec.get("status") not in ("passed", "failed"):
            continue
        base, rec = as_judged(base), as_judged(rec)
        found = (pair(rule, base, rec, c) for rule, c in rule_checks(rules, base, rec, reuse))
        pairs.extend(p for p in found if p is not None)
    lost = lost_cells(baseline_doc, list(latest.values()))
    missing = [str(b.get("id")) for b in baseline_doc.get("records", [])
               if b.get("status") == "passed" and str(b.get("id")) not in latest]
    notes = [f"passed in the baseline, now skipped or errored: {', '.join(lost)}"] if lost else []
    if missing:
        notes.append(f"{len(missing)} cells of the baseline were not run (e.g. {missing[0]})")
    notes.extend(n for n in [run_note(latest.values())] if n)
    figures = {r.metric.name: r.metric for r in rules if r.metric.name != "work"}  # work is exact: no suite mean
    tolerances = {r.metric.name: r.tolerance for r in rules}
    return RunVerdict(fdr_verdicts(pairs, acks), suite_verdicts(pairs, figures, acks, tolerances), notes=tuple(notes),
                      lost=tuple(lost))


@dataclass(frozen=True)
class Gate:
    """A baseline, the rules and the acknowledged regressions, loaded once per session from the settings."""

    rules: tuple[Rule, ...]
    baseline: Mapping[str, Any]
    baseline_path: str
    settings: Mapping[str, Any]
    acks: tuple[Ack, ...] = ()

    @classmethod
    def load(cls, baseline_path: str, fail_on: str, settings: Mapping[str, Any], cwd: Path) -> Gate:
        """Read the baseline report, parse ``fail_on`` and read ``settings["acknowledged"]`` (if set); ValueError
        names the option that is wrong (``--longeff-baseline``, ``--longeff-fail-on``, ``--longeff-acknowledged``)
        and why. The baseline is read as every report from elsewhere (:func:`pytest_longeff.record.io.load_report`:
        reading limits, schema, cross-references), so an absurd figure is refused here, before any cell runs."""
        from pytest_longeff.record.io import load_report

        path, ack_path = Path(baseline_path), settings.get("acknowledged")

        def read(option: str, load: Callable[[], Any]) -> Any:
            try:
                return load()
            except ValueError as exc:
                raise ValueError(f"{option}: {exc}") from None

        doc = read("--longeff-baseline", lambda: load_report(path if path.is_absolute() else cwd / path))
        rules = read("--longeff-fail-on", lambda: parse_fail_on(fail_on))
        acks = read("--longeff-acknowledged", lambda: load_acknowledged(cwd / str(ack_path)) if ack_path else ())
        return cls(rules, doc, baseline_path, settings, acks)

    def judge(self, record: Mapping[str, Any], machine: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The record's gate section and the messages that must fail its test."""
        section = gate_record(self.rules, self.baseline, record, machine, self.baseline_path, self.settings,
                              self.acks)
        return section, gate_failures(section)

    def judge_run(self, records: Sequence[Mapping[str, Any]]) -> RunVerdict:
        """The run-level verdict over ``records`` (a refusal any record's gate section reports stands for the run),
        from the checks the per-cell judgements left in their gate sections (a record without one is checked now)."""
        refused = next((g["refused"] for r in records if isinstance(g := r.get("gate"), Mapping) and g.get("refused")),
                       None)
        if refused is not None:
            return RunVerdict(refused=str(refused))
        return judge_run(self.rules, self.baseline, records, self.acks, reuse=True)

    def baseline_batch(self, record_id: str) -> int | None:
        """The batch size the baseline's passed record ran at, so efficiency is compared at the same batch."""
        base = baseline_record(self.baseline, record_id)
        batch = base.get("batch_size") if base is not None and base.get("status") == "passed" else None
        return batch if isinstance(batch, int) and batch > 0 else None

    def skip_regression(self, record_id: str, reason: str) -> str | None:
        """Why a record skipped now fails: it passed in the baseline (e.g. it no longer fits the memory budget)."""
        base = baseline_record(self.baseline, record_id)
        if base is None or base.get("status") != "passed":
            return None
        return f"{record_id}: regression against the baseline: it passed there, but now {reason}"

"""Measure a suspect cell again before the gate judges it (``--longeff-remeasure N``, default 1 with a baseline).

On a shared machine a cell is sometimes slowed for a few seconds by something outside the run (another tenant,
a page-cache flush); the machine-speed reference measured around the cell tracks most drift but not every burst.
So a cell whose time, throughput or energy figure is worse than its tolerance by the point values (a per-cell
``failed`` check, or an ``inconclusive`` one beyond the tolerance) is measured again, at the same batch size, up to
``limit`` times or until a measurement is no longer suspect.

**Every measurement counts.** Nothing is chosen among the measurements: the record keeps its *first* measurement's
figures (the value a later baseline copied from the report holds was never selected), and the gate judges the cell
on the **pooled** figures (:func:`pool`): per noisy figure the geometric mean over every measurement, with an
interval that takes both each measurement's own interval and the spread between measurements. The later
measurements stay in the record's ``remeasured`` section. Keeping the least suspect measurement instead (what this
module did before) fed a minimum to the FDR and the suite rule and biased every run toward passing.
``benchmarks/gate_replay.py`` measures what re-measurement does to false alarms and detection, with the same
:func:`settle` the plugin uses.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pytest_longeff.record.figures import GATED, figure
from pytest_longeff.record.sections import lookup

T = TypeVar("T")

#: Per-cell check states that make a cell suspect when the point values are worse than the tolerance.
SUSPECT = ("failed", "inconclusive")
Z95 = 1.959963984540054
#: The sections of a measurement that does not stand, kept in the record's ``remeasured`` section.
KEPT = ("train", "inference", "reference", "cell_wall_s", "batch_size", "batch_search", "work")


def noisy(metric: str) -> bool:
    """Whether a gated figure varies from one measurement to the next, so that measuring again can tell a burst
    from a regression: times, throughputs and energies. Scores, peak memory and the batch-size search come out the
    same every time (a memory regression is found as surely by one measurement as by three)."""
    fig = figure(metric)
    return fig is not None and fig.noisy


def _suspect_checks(gate_section: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not gate_section or gate_section.get("refused"):
        return []
    return [c for c in gate_section.get("checks", []) if c.get("status") in SUSPECT and noisy(str(c.get("metric")))
            and (c.get("status") == "failed" or _beyond(c))]


def _beyond(check: Mapping[str, Any]) -> bool:
    fig, change = figure(str(check.get("metric"))), check.get("change")
    if fig is None or not isinstance(change, (int, float)):
        return False
    return (-change if fig.higher_is_better else change) > float(check.get("tolerance") or 0.0)


def suspects(gate_section: Mapping[str, Any] | None) -> list[str]:
    """What makes a record suspect, one line per noisy figure (:func:`noisy`) worse than its tolerance (empty: not
    suspect)."""
    out = []
    for c in _suspect_checks(gate_section):
        change = c.get("change")
        text = "n/a" if not isinstance(change, (int, float)) else f"{change:+.1%}"
        out.append(f"{c.get('metric')} {text} (tolerance {c.get('tolerance', 0):.0%}, {c.get('status')})")
    return out


def earlier(record: Mapping[str, Any], number: int, why: list[str]) -> dict[str, Any]:
    """The entry of a ``remeasured`` section for a measurement that does not stand: which it was (1 = the first),
    its measured sections, and why it was suspect."""
    return {"measurement": number, "why": why, **{k: record[k] for k in KEPT if k in record}}


@dataclass(frozen=True)
class Settled(Generic[T]):
    """What :func:`settle_judged` settles on: the measurement that stands (always the first), the gate section of
    the judgement that counts (of the pooled figures when measured more than once) and the record's ``remeasured``
    section (None: measured once)."""

    record: T
    gate: Mapping[str, Any] | None
    remeasured: dict[str, Any] | None


def settle_judged(first: T, judge: Callable[[T], tuple[Mapping[str, Any], Mapping[str, Any] | None]],
                  again: Callable[[], T], limit: int,
                  judge_pooled: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] | None = None) -> Settled[T]:
    """Measure ``limit`` more times when the gate finds the first measurement suspect. ``judge`` gives a
    measurement's dict form and its gate section (called once per measurement). With more than one measurement the
    first still stands, and ``judge_pooled`` judges :func:`pool` of them all (without it, the last judgement of
    the pooled figures is the first measurement's). The ``remeasured`` section says how many measurements, the
    pooled figures, the later measurements as :func:`earlier` entries, and why measuring again stopped early (an
    error of ``again``: the measurements made so far count)."""
    measured = [(first, *judge(first))]
    stopped = None
    # Once the first measurement is suspect, exactly ``limit`` more are made: stopping at the first one that looks
    # fine would make the pool end on a good value by construction, a bias toward passing.
    while len(measured) <= max(limit, 0) and suspects(measured[0][2]):
        try:
            nxt = again()
        except Exception as exc:  # noqa: BLE001 - whatever failed, a complete measurement is not thrown away
            stopped = f"measuring again failed: {type(exc).__name__}: {exc}"
            break
        measured.append((nxt, *judge(nxt)))
    if len(measured) == 1 and stopped is None:
        return Settled(first, measured[0][2], None)
    dicts = [d for _, d, _ in measured]
    pooled_record, pooled = pool(dicts)
    gate = judge_pooled(pooled_record) if judge_pooled is not None and len(dicts) > 1 else measured[0][2]
    others = [earlier(d, k + 1, suspects(g)) for k, (_, d, g) in enumerate(measured) if k > 0]
    section: dict[str, Any] = {"measurements": len(measured), "kept": 1, "pooled": pooled, "others": others,
                               "first_why": suspects(measured[0][2])}
    if stopped is not None:
        section["stopped"] = stopped
    return Settled(first, gate, section)


def as_judged(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record as the gate judges it: with its figures pooled over every measurement its ``remeasured`` section
    holds (the record itself when measured once), so a report read from a file is judged as the run judged it."""
    section = record.get("remeasured")
    others = section.get("others") if isinstance(section, Mapping) else None
    if not isinstance(others, list) or not others:
        return record
    return pool([record, *(o for o in others if isinstance(o, Mapping))])[0]


def _set(record: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = record
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def pool(measurements: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first measurement with every noisy gated figure (and the machine-speed reference) replaced by its
    geometric mean over all measurements (measured in each), its interval from each measurement's own interval and
    the spread between them; and what was pooled, figure by figure."""
    out = copy.deepcopy(dict(measurements[0]))
    pooled: dict[str, Any] = {}
    paths = [(f.name, f.path, f.ci_path) for f in GATED.values() if f.noisy]
    # The machine-speed reference of each measurement, pooled alike, so the pooled time figures are corrected by
    # the machine speed of all the measurements, not of the first alone.
    paths.append(("reference", ("reference", "ops_per_s"), ("reference", "stats", "ci95")))
    for name, path, ci_path in paths:
        values = [lookup(m, *path) for m in measurements]
        if len(values) < 2 or any(not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0
                                  for v in values):
            continue
        logs = [math.log(v) for v in values]
        mean = math.fsum(logs) / len(logs)
        spread = math.sqrt(math.fsum((x - mean) ** 2 for x in logs) / (len(logs) - 1) / len(logs))
        ses = [_log_se(lookup(m, *ci_path)) for m in measurements] if ci_path else []
        within = math.sqrt(math.fsum(s * s for s in ses if s is not None)) / len(logs) if ses else 0.0
        se = max(spread, within)
        # The normal quantile, not Student's t at k - 1 degrees of freedom: with the default of two measurements
        # t(1) = 12.7 would make every re-measured cell inconclusive; each measurement's own interval already
        # carries its noise, and the spread between them only guards against intervals that understate it.
        z = Z95
        _set(out, path, math.exp(mean))
        if ci_path is not None and all(s is not None for s in ses):
            _set(out, ci_path, [math.exp(mean - z * se), math.exp(mean + z * se)])
            _set(out, (*ci_path[:-1], "n"), min(int(lookup(m, *ci_path[:-1], "n") or 0) for m in measurements))
        elif ci_path is not None:  # a measurement without an interval: the pooled figure has none either
            _set(out, ci_path, None)
        pooled[name] = {"values": values, "geometric_mean": math.exp(mean), "log_se": se}
    return out, pooled


def _log_se(ci: Any) -> float | None:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(isinstance(v, (int, float)) for v in ci):
        return None
    if ci[0] <= 0 or ci[1] < ci[0]:
        return None
    return (math.log(ci[1]) - math.log(ci[0])) / (2 * Z95)


def settle(first: T, judge: Callable[[T], Mapping[str, Any] | None], again: Callable[[], T], limit: int,
           as_dict: Callable[[T], Mapping[str, Any]]) -> tuple[T, dict[str, Any] | None]:
    """:func:`settle_judged` for a ``judge`` that gives a measurement's gate section alone (``as_dict`` gives its dict
    form; the pooled record is judged by ``judge`` too): the measurement that stands and the record's
    ``remeasured`` section (None: measured once)."""
    settled = settle_judged(first, lambda m: (as_dict(m), judge(m)), again, limit, judge)  # type: ignore[arg-type]
    return settled.record, settled.remeasured


def run_note(records: Iterable[Mapping[str, Any]]) -> str | None:
    """The run-level gate's note on the cells this run measured more than once (None: none; records carried over
    from an earlier run by ``--longeff-resume`` are not counted)."""
    again = [r for r in records if r.get("remeasured") and not r.get("carried_over")]
    if not again:
        return None
    cells = "1 cell was" if len(again) == 1 else f"{len(again)} cells were"
    return (f"{cells} measured again after a suspect measurement (--longeff-remeasure; the gate judged the "
            f"figures pooled over every measurement): {', '.join(str(r.get('id')) for r in again[:5])}"
            + (" ..." if len(again) > 5 else ""))

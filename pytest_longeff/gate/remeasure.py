"""Measure a suspect cell again before the gate judges it (``--longeff-remeasure N``, default 1 with a baseline).

On a shared machine a cell is sometimes slowed for a few seconds by something outside the run (another tenant,
a page-cache flush); the machine-speed reference measured around the cell tracks most drift but not every burst.
A code regression shows in every measurement of the cell; a burst rarely strikes the same cell twice. So a cell
whose time, throughput or energy figure is worse than its tolerance (a per-cell ``failed`` or ``within_noise``
check, drift-corrected) is measured again, at the same batch size, up to ``limit`` times or until a measurement is
no longer suspect, and the least suspect measurement stands (:func:`badness`): a regression must show in every
measurement to be judged one. The others stay in the record's ``remeasured`` section with why they were repeated.

The rule picks among whole measurements and never edits one: every figure in a record comes from one complete
measurement of the cell. ``benchmarks/gate_replay.py`` measures what it does to false alarms and detection, with
the same :func:`settle` the plugin uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pytest_longeff.record.figures import figure

T = TypeVar("T")

#: Per-cell check states that make a cell suspect: worse than the tolerance by the point values.
SUSPECT = ("failed", "within_noise")
#: The sections of a measurement that does not stand, kept in the record's ``remeasured`` section.
KEPT = ("train", "inference", "reference", "cell_wall_s", "batch_size", "batch_search")


def noisy(metric: str) -> bool:
    """Whether a gated figure varies from one measurement to the next, so that measuring again can tell a burst
    from a regression: times, throughputs and energies. Scores, peak memory and the batch-size search come out the
    same every time (a memory regression is found as surely by one measurement as by three)."""
    fig = figure(metric)
    return fig is not None and fig.noisy


def _suspect_checks(gate_section: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not gate_section or gate_section.get("refused"):
        return []
    return [c for c in gate_section.get("checks", []) if c.get("status") in SUSPECT and noisy(str(c.get("metric")))]


def suspects(gate_section: Mapping[str, Any] | None) -> list[str]:
    """What makes a record suspect, one line per noisy figure (:func:`noisy`) worse than its tolerance (empty: not
    suspect)."""
    out = []
    for c in _suspect_checks(gate_section):
        change = c.get("change")
        text = "n/a" if not isinstance(change, (int, float)) else f"{change:+.1%}"
        out.append(f"{c.get('metric')} {text} (tolerance {c.get('tolerance', 0):.0%}, {c.get('status')})")
    return out


def badness(gate_section: Mapping[str, Any] | None) -> tuple[int, float]:
    """How suspect a measurement is: the number of its noisy figures that fail the per-cell check, then the summed
    excess of all its suspect figures over their tolerance (relative change for the worse minus the tolerance);
    (0, 0.0) when it is not suspect. A measurement that would pass the per-cell check ranks before one that would
    fail it, however many figures are near the line."""
    failed, excess = 0, 0.0
    for c in _suspect_checks(gate_section):
        failed += c.get("status") == "failed"
        fig, change = figure(str(c.get("metric"))), c.get("change")
        if fig is not None and isinstance(change, (int, float)):
            excess += (-change if fig.higher_is_better else change) - float(c.get("tolerance") or 0.0)
    return failed, excess


def earlier(record: Mapping[str, Any], number: int, why: list[str]) -> dict[str, Any]:
    """The entry of a ``remeasured`` section for a measurement that does not stand: which it was (1 = the first),
    its measured sections, and why it was suspect."""
    return {"measurement": number, "why": why, **{k: record[k] for k in KEPT if k in record}}


@dataclass(frozen=True)
class Settled(Generic[T]):
    """What :func:`settle_judged` settles on: the measurement that stands, the gate section of its judgement (the
    one judgement of that measurement) and the record's ``remeasured`` section (None: measured once)."""

    record: T
    gate: Mapping[str, Any] | None
    remeasured: dict[str, Any] | None


def settle_judged(first: T, judge: Callable[[T], tuple[Mapping[str, Any], Mapping[str, Any] | None]],
                  again: Callable[[], T], limit: int) -> Settled[T]:
    """Measure again while the gate finds the latest measurement suspect, at most ``limit`` times. ``judge`` gives a
    measurement's dict form and its gate section; it is called once per measurement, and both are kept: the section
    of the measurement that stands is returned, the dict forms of the others go into the ``remeasured`` section.

    The measurement that stands is the least suspect by :func:`badness` (the earliest of equals). With more than one
    measurement, or a try that failed, the ``remeasured`` section says how many measurements, which one was kept
    (1 = ``first``), the others as :func:`earlier` entries, and why measuring again stopped early (an error of
    ``again``: the measurements made so far stand)."""
    measured = [(first, *judge(first))]
    stopped = None
    while len(measured) <= max(limit, 0) and suspects(measured[-1][2]):
        try:
            nxt = again()
        except Exception as exc:  # noqa: BLE001 - whatever failed, a complete measurement is not thrown away
            stopped = f"measuring again failed: {type(exc).__name__}: {exc}"
            break
        measured.append((nxt, *judge(nxt)))
    if len(measured) == 1 and stopped is None:
        return Settled(first, measured[0][2], None)
    best = min(range(len(measured)), key=lambda k: (badness(measured[k][2]), k))
    others = [earlier(d, k + 1, suspects(g)) for k, (_, d, g) in enumerate(measured) if k != best]
    section: dict[str, Any] = {"measurements": len(measured), "kept": best + 1, "others": others}
    if stopped is not None:
        section["stopped"] = stopped
    return Settled(measured[best][0], measured[best][2], section)


def settle(first: T, judge: Callable[[T], Mapping[str, Any] | None], again: Callable[[], T], limit: int,
           as_dict: Callable[[T], Mapping[str, Any]]) -> tuple[T, dict[str, Any] | None]:
    """:func:`settle_judged` for a ``judge`` that gives a measurement's gate section alone (``as_dict`` gives its dict
    form): the measurement that stands and the record's ``remeasured`` section (None: measured once)."""
    settled = settle_judged(first, lambda m: (as_dict(m), judge(m)), again, limit)
    return settled.record, settled.remeasured


def run_note(records: Iterable[Mapping[str, Any]]) -> str | None:
    """The run-level gate's note on the cells this run measured more than once (None: none; records carried over
    from an earlier run by ``--longeff-resume`` are not counted)."""
    again = [r for r in records if r.get("remeasured") and not r.get("carried_over")]
    if not again:
        return None
    cells = "1 cell was" if len(again) == 1 else f"{len(again)} cells were"
    return (f"{cells} measured again after a suspect measurement (--longeff-remeasure; the least suspect "
            f"measurement stands): {', '.join(str(r.get('id')) for r in again[:5])}"
            + (" ..." if len(again) > 5 else ""))

"""The accuracy-cost Pareto front: which cells no other cell beats on both score and cost.

A cell *dominates* another when its score is at least as high and its cost at least as low, and it is strictly
better on one of the two. The front is every cell that no cell dominates; two cells with the same score and cost
are both on it (ties are kept, never broken by order). Training and inference costs are separate fronts: their
energies are not one cost. A cell whose score or cost was not measured is left out of that front and named in its
note; it is never treated as free.

Costs are compared only on one machine: in a report merged from several machines (records with a
``machine_index`` into ``machines``, or their own ``machine``) each machine gets its own fronts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_longeff.record.figures import FIGURES_BY_NAME, Figure
from pytest_longeff.record.sections import is_cell

COSTS: tuple[str, ...] = ("inference_j_per_sample", "inference_latency_p50_s", "train_energy_j", "train_time_s")
"""The costs a front is computed for: energy, and wall time for where energy was not measured."""
SCORE: Figure = FIGURES_BY_NAME["score"]
OBJECTIVE = ("higher score, lower cost; a cell is on the front when no cell has a higher-or-equal score at a "
             "lower-or-equal cost with one of them strictly better (ties stay on the front)")


@dataclass(frozen=True)
class Point:
    """One cell in score-cost space."""

    id: str
    score: float
    cost: float


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is at least as good as ``b`` on both axes and strictly better on one."""
    return a.score >= b.score and a.cost <= b.cost and (a.score > b.score or a.cost < b.cost)


def front_ids(points: Sequence[Point]) -> list[str]:
    """The ids of the points no point dominates, ordered by cost (then score, descending; then id).

    In that order every dominator of a point comes before it, and a dominated point has a dominator on the
    front (domination is transitive), so comparing each point with the front kept so far is enough."""
    ordered = sorted(points, key=lambda p: (p.cost, -p.score, p.id))
    kept: list[Point] = []
    for p in ordered:
        if not any(dominates(q, p) for q in kept):
            kept.append(p)
    return [p.id for p in kept]


def machine_label(record: Mapping[str, Any]) -> str | None:
    """A short name for the machine of a record from a report merged from several machines, or None.

    Merged reports (``pytest-longeff merge``) give each record a ``machine_index`` into the report's ``machines``
    (``m1``, ``m2``...; :func:`cells` puts the facts beside it); a record may also carry its own ``machine``, a name
    or a facts mapping (its ``name`` or ``host`` when present, else a digest of the facts)."""
    machine = record.get("machine")
    if isinstance(machine, str):
        return machine
    if isinstance(machine, Mapping):
        name = machine.get("name") or machine.get("host")
        if name:
            return str(name)
        return "machine-" + hashlib.sha256(json.dumps(machine, sort_keys=True, default=str).encode()).hexdigest()[:8]
    index = record.get("machine_index")
    return f"m{index + 1}" if isinstance(index, int) and not isinstance(index, bool) else None


def cells(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's matrix cells (window records left out). In a report merged from several machines each gets
    ``machine``: its machine's facts from ``machines``, named ``m<index + 1>``."""
    machines = doc.get("machines") or []
    out = []
    for r in doc.get("records") or []:
        if not _is_cell(r):
            continue
        i = r.get("machine_index")
        if len(machines) > 1 and "machine" not in r and isinstance(i, int) and 0 <= i < len(machines):
            r = {**r, "machine": {**machines[i], "name": f"m{i + 1}"}}
        out.append(r)
    return out


def merged(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``records`` come from more than one machine."""
    return len({machine_label(r) for r in records} - {None}) > 1


def _is_cell(record: Mapping[str, Any]) -> bool:
    return is_cell(record) and "task" in record


def one_front(records: Sequence[Mapping[str, Any]], cost: Figure) -> dict[str, Any]:
    """The front of ``records`` (one task, one machine) for ``cost``, with the cells left out and why."""
    points: list[Point] = []
    no_score: list[str] = []
    no_cost: list[str] = []
    for r in records:
        rid = str(r.get("id"))
        score, value = SCORE.value(r), cost.value(r)
        if score is None:
            no_score.append(rid)
        elif value is None:
            no_cost.append(rid)
        else:
            points.append(Point(rid, score, value))
    notes = []
    if no_cost:
        notes.append(f"{cost.name} not measured, left out: {', '.join(no_cost)}")
    if no_score:
        notes.append(f"no score (skipped, failed early or unscored), left out: {', '.join(no_score)}")
    return {"cost": cost.name, "unit": cost.unit, "front": front_ids(points), "points": len(points),
            "unmeasured": no_cost, "unscored": no_score, "note": "; ".join(notes) or None}


def fronts(records: Sequence[Mapping[str, Any]], costs: Sequence[str] = COSTS) -> list[dict[str, Any]]:
    """Every front of the matrix cells in ``records``: one per (task, machine, cost)."""
    groups: dict[tuple[str, str | None], list[Mapping[str, Any]]] = {}
    several = merged(records)
    for r in records:
        if _is_cell(r):
            groups.setdefault((str(r["task"]), machine_label(r) if several else None), []).append(r)
    out = []
    for (task, machine), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        for name in costs:
            out.append({"task": task, "machine": machine, **one_front(members, FIGURES_BY_NAME[name])})
    return out


def front(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The report's ``session.pareto``: the objective and every front of the report's records."""
    return {"objective": OBJECTIVE, "costs": list(COSTS), "fronts": fronts(cells(doc))}


def find(pareto: Mapping[str, Any], task: str, cost: str, machine: str | None = None) -> dict[str, Any] | None:
    """The front for ``task``, ``cost`` and ``machine`` in a ``session.pareto`` mapping, or None."""
    for f in pareto.get("fronts") or []:
        if f.get("task") == task and f.get("cost") == cost and f.get("machine") == machine:
            return dict(f)
    return None

"""From the rounds to the verdicts: per cell and figure, the suite per figure, the work counters and the batch.

Works on the report's plain data (``cells[id]["rounds"]``), so ``pytest-longeff show`` and a later judgement at
other tolerances read a saved report exactly as the live run judged it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_longeff.ab.stats import (
    FDR_Q,
    INCONCLUSIVE,
    NO_REGRESSION,
    REGRESSION,
    Estimate,
    estimate,
    verdict,
)
from pytest_longeff.gate.suite import benjamini_hochberg
from pytest_longeff.measure.work import TOTALS, totals_per_unit, work_diff

WORK = "work"


@dataclass(frozen=True)
class AbFigure:
    """A figure an A/B job compares: which window it comes from, what cost of it is compared (seconds, joules or
    bytes per unit of work), and how the figure reads (a rate is units per second)."""

    name: str
    window: str  # "train" | "inference"
    quantity: str  # "time" | "energy" | "memory"
    higher_is_better: bool
    unit: str
    method: str

    def cost(self, answer: Mapping[str, Any]) -> float | None:
        """The cost this figure compares in one window's answer (None where not measured)."""
        units = answer.get("units") or 0
        if self.quantity == "time":
            t = answer.get("time_s")
            return t / units if isinstance(t, (int, float)) and t > 0 and units else None
        if self.quantity == "energy":
            e = answer.get("energy") or {}
            j = e.get("energy_j")
            return j / units if e.get("energy_valid") and isinstance(j, (int, float)) and j > 0 and units else None
        m = answer.get("peak_memory_bytes")
        return float(m) if isinstance(m, (int, float)) and m > 0 else None

    def tau(self, tolerance: float) -> float:
        """The tolerance as a log ratio of the cost: a rate may drop by ``tolerance``, a cost grow by it."""
        if self.higher_is_better:
            return math.inf if tolerance >= 1 else -math.log1p(-tolerance)
        return math.log1p(tolerance)

    def shown(self, log_cost_ratio: float) -> float:
        """A log ratio of the cost as the relative change of the figure itself (a rate's change for rates)."""
        return math.expm1(-log_cost_ratio if self.higher_is_better else log_cost_ratio)


_PAIRED = "paired windows of both sides, interleaved (or at once in duet); Student's t over process pairs"
FIGURES: Mapping[str, AbFigure] = {f.name: f for f in (
    AbFigure("train_samples_per_s", "train", "time", True, "samples/s", f"training steps at a fixed batch; {_PAIRED}"),
    AbFigure("inference_tokens_per_s", "inference", "time", True, "tokens/s",
             f"greedy generation of a fixed number of new tokens; {_PAIRED}"),
    AbFigure("train_j_per_sample", "train", "energy", False, "J/sample", f"energy meter over the window; {_PAIRED}"),
    AbFigure("inference_j_per_token", "inference", "energy", False, "J/token",
             f"energy meter over the window; {_PAIRED}"),
    AbFigure("train_peak_memory_bytes", "train", "memory", False, "B", f"peak memory of the window; {_PAIRED}"),
    AbFigure("inference_peak_memory_bytes", "inference", "memory", False, "B", f"peak memory of the window; {_PAIRED}"),
)}
DEFAULT_FAIL_ON = ("train_samples_per_s:10%,inference_tokens_per_s:10%,train_j_per_sample:10%,"
                   "inference_j_per_token:10%,work:0%")


def gated_under(schedule: str, rules: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """The rules a schedule can gate, and the energy figures it cannot: in duet both sides run at once under a
    device-wide meter, so each reading holds both sides."""
    dropped = [n for n in rules if schedule == "duet" and n in FIGURES and FIGURES[n].quantity == "energy"]
    return {n: t for n, t in rules.items() if n not in dropped}, dropped


def parse_rules(text: str) -> dict[str, float]:
    """``figure:N%`` items; ValueError names the wrong item and the accepted figures."""
    rules: dict[str, float] = {}
    accepted = ", ".join([*FIGURES, WORK])
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, tol = part.partition(":")
        if name not in FIGURES and name != WORK:
            raise ValueError(f"--fail-on: unknown figure {name!r}; accepted: {accepted}")
        try:
            value = float(tol.removesuffix("%")) / 100 if tol.endswith("%") else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--fail-on: expected {name}:N% with N >= 0 (e.g. {name}:10%), got {part!r}")
        rules[name] = value
    if not rules:
        raise ValueError(f"--fail-on: expected figure:N% items separated by commas; figures: {accepted}")
    return rules


def pair_values(fig: AbFigure, rounds: Sequence[Mapping[str, Any]]) -> dict[int, list[float]]:
    """The log cost ratios head/base of every round, by process pair (rounds a side could not measure left out)."""
    out: dict[int, list[float]] = {}
    for r in rounds:
        if r.get("window") != fig.window:
            continue
        b, h = fig.cost(r.get("base") or {}), fig.cost(r.get("head") or {})
        if b is not None and h is not None:
            out.setdefault(int(r["pair"]), []).append(math.log(h / b))
    return out


def _means(values: Mapping[int, list[float]]) -> list[float]:
    return [sum(v) / len(v) for _, v in sorted(values.items()) if v]


def judge_figure(fig: AbFigure, tolerance: float, rounds: Sequence[Mapping[str, Any]], final: bool
                 ) -> dict[str, Any] | None:
    """One cell's figure: estimate over process pairs and verdict; None where no round measured it."""
    values = pair_values(fig, rounds)
    if not values:
        return None
    e = estimate(_means(values))
    return _judged(fig, tolerance, e, final, sum(map(len, values.values())))


def _judged(fig: AbFigure, tolerance: float, e: Estimate, final: bool, rounds: int) -> dict[str, Any]:
    lo, hi = sorted((fig.shown(e.low), fig.shown(e.high)))
    return {"figure": fig.name, "verdict": verdict(e, fig.tau(tolerance), final), "tolerance": tolerance,
            "change": fig.shown(e.mean), "low": lo if math.isfinite(lo) else None,
            "high": hi if math.isfinite(hi) else None, "pairs": e.n, "rounds": rounds, "p_worse": e.p_worse,
            "resolvable": e.resolvable if math.isfinite(e.resolvable) else None}


@dataclass(frozen=True)
class Throttled:
    """An energy figure's rounds where one side's reading was invalid under clock throttling while the other
    side's was valid, by process pair: what :func:`pair_values` leaves out (such rounds give no ratio)."""

    by_pair: Mapping[int, tuple[int, int]]
    """Pair -> (rounds throttled on the head only, on the base only)."""
    rounds: int
    """Rounds of the figure's window in which both sides' meters ran."""
    reasons: tuple[str, ...]
    """The head's throttle reasons in its head-only rounds, as the meter named them."""

    @property
    def head_only(self) -> int:
        """Rounds throttled on the head only."""
        return sum(h for h, _ in self.by_pair.values())

    @property
    def base_only(self) -> int:
        """Rounds throttled on the base only."""
        return sum(b for _, b in self.by_pair.values())

    @property
    def excess(self) -> float:
        """The share of the window's rounds lost to the head's throttling beyond the base's."""
        return (self.head_only - self.base_only) / self.rounds if self.rounds else 0.0

    def sign_test(self) -> tuple[int, int, float]:
        """Process pairs leaning towards the head, pairs leaning either way, and the one-sided sign test's p."""
        head = sum(h > b for h, b in self.by_pair.values())
        either = head + sum(b > h for h, b in self.by_pair.values())
        return head, either, sign_test(head, either)


def throttled_rounds(fig: AbFigure, rounds: Sequence[Mapping[str, Any]]) -> Throttled:
    """The rounds of an energy figure's window that one side's meter called invalid under clock throttling (a
    power regression causes it; ``energy_throttle_reasons`` non-empty) while the other side's reading was valid.
    Readings invalid for other reasons (a window shorter than the meter's update period, a read error, another
    process on the device) are not counted: they say nothing about the head's power."""
    by_pair: dict[int, tuple[int, int]] = {}
    metered = 0
    reasons: list[str] = []
    for r in rounds:
        if r.get("window") != fig.window:
            continue
        b, h = r.get("base") or {}, r.get("head") or {}
        if not (_metered(b) and _metered(h)):
            continue
        metered += 1
        head_only, base_only = by_pair.get(int(r["pair"]), (0, 0))
        if _throttled(h) and fig.cost(b) is not None:
            head_only += 1
            reasons.extend(str(x) for x in h["energy"].get("energy_throttle_reasons") or [])
        elif _throttled(b) and fig.cost(h) is not None:
            base_only += 1
        by_pair[int(r["pair"])] = (head_only, base_only)
    return Throttled(by_pair, metered, tuple(dict.fromkeys(reasons)))


def _metered(answer: Mapping[str, Any]) -> bool:
    e = answer.get("energy")
    return isinstance(e, Mapping) and e.get("energy_method") not in (None, "none")


def _throttled(answer: Mapping[str, Any]) -> bool:
    e = answer.get("energy") or {}
    return e.get("energy_valid") is False and bool(e.get("energy_throttle_reasons"))


def sign_test(k: int, n: int) -> float:
    """One-sided sign test: the chance of ``k`` or more of ``n`` fair coin flips landing one way."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0


#: The sign test's level for throttled readings (one-sided: at least 5 of 5 process pairs, 6 of 6, 7 of 7, 7 of 8,
#: 8 of 9 or 9 of 10 must lean towards the head).
SIGN_LEVEL = 0.05


def _with_throttling(fig: AbFigure, tolerance: float, rounds: Sequence[Mapping[str, Any]],
                     judged: dict[str, Any] | None) -> dict[str, Any] | None:
    """An energy figure's verdict, given the rounds where only the head's reading was invalid under throttling.

    Nothing changes while those rounds, less the base's own, are at most the tolerance's share of the window's
    rounds: the ratios of the other rounds measured the figure. Beyond it, the figure is never "no regression"
    (inconclusive: the job measures more pairs), and a regression when the process pairs (the independent units,
    as for the ratios) lean towards the head beyond chance (sign test, p < 0.05; then through the FDR like the
    timed verdicts)."""
    t = throttled_rounds(fig, rounds)
    if t.head_only <= t.base_only or t.excess <= tolerance:
        return judged
    head, either, p = t.sign_test()
    why = f" ({', '.join(t.reasons)})" if t.reasons else ""
    note = (f"the head's energy reading was invalid under throttling{why} in {t.head_only} of {t.rounds} rounds "
            f"where the base's was valid (the base's in {t.base_only}); {head} of {either} process pairs lean "
            f"towards the head, sign test p {p:.3g}")
    out: dict[str, Any] = dict(judged) if judged else {
        "figure": fig.name, "tolerance": tolerance, "change": None, "low": None, "high": None, "pairs": 0,
        "rounds": 0, "resolvable": None}
    out["throttled"] = {"head_only": t.head_only, "base_only": t.base_only, "rounds": t.rounds,
                        "pairs_towards_head": head, "pairs_leaning": either, "p": p}
    if p < SIGN_LEVEL:
        if out.get("verdict") != REGRESSION:  # a regression the ratios found keeps its own (stronger) evidence
            out["p_worse"] = p
        out["verdict"] = REGRESSION
    elif out.get("verdict") in (None, NO_REGRESSION):
        out["verdict"] = INCONCLUSIVE
    out["note"] = note
    return out


def judge_suite(fig: AbFigure, tolerance: float, cells: Mapping[str, Mapping[str, Any]], final: bool
                ) -> dict[str, Any] | None:
    """The figure over all cells: per process pair the mean of the cells' log ratios, then the same test."""
    by_pair: dict[int, list[float]] = {}
    for cell in cells.values():
        for pair, values in pair_values(fig, cell.get("rounds") or []).items():
            by_pair.setdefault(pair, []).append(sum(values) / len(values))
    if not by_pair:
        return None
    e = estimate(_means(by_pair))
    return _judged(fig, tolerance, e, final, sum(map(len, by_pair.values())))


def _judge_one(fig: AbFigure, tolerance: float, rounds: Sequence[Mapping[str, Any]], final: bool
               ) -> dict[str, Any] | None:
    judged = judge_figure(fig, tolerance, rounds, final)
    return _with_throttling(fig, tolerance, rounds, judged) if fig.quantity == "energy" else judged


def judge_work(tolerance: float, work: Mapping[str, Any]) -> dict[str, Any] | None:
    """The work counters of both sides per window kind: a regression when any total per unit grows beyond the
    tolerance, with the operators that changed."""
    base, head = work.get("base") or {}, work.get("head") or {}
    kinds = [k for k in ("train", "inference") if isinstance(base.get(k), Mapping) and isinstance(head.get(k), Mapping)]
    if not kinds:
        return None
    grew, lines = [], []
    for kind in kinds:
        a, b = totals_per_unit(base[kind]), totals_per_unit(head[kind])
        for key in TOTALS:
            if a[key] > 0 and b[key] > a[key] * (1 + tolerance) or a[key] == 0 < b[key]:
                grew.append(f"{kind} {key} per {base[kind].get('unit')} {a[key]:.6g} -> {b[key]:.6g}")
        lines.extend(f"{kind}: {c.line()}" for c in work_diff(base[kind], head[kind]))
    return {"figure": WORK, "verdict": REGRESSION if grew else NO_REGRESSION, "tolerance": tolerance,
            "grew": grew, "diff": lines[:40], "exact": True}


def judge_cells(rules: Mapping[str, float], cells: Mapping[str, dict[str, Any]], final: bool) -> dict[str, Any]:
    """Every cell's verdicts (written into ``cells[id]["verdicts"]``), the suite's, the FDR, and the run's."""
    timed = [(n, t) for n, t in rules.items() if n != WORK]
    for cell in cells.values():
        rounds = cell.get("rounds") or []
        judged = [j for n, t in timed if (j := _judge_one(FIGURES[n], t, rounds, final))]
        if WORK in rules and (w := judge_work(rules[WORK], cell.get("work") or {})):
            judged.append(w)
        if cell.get("memory_regression"):
            judged.append({"figure": "batch_size", "verdict": REGRESSION, "note": cell["memory_regression"]})
        if cell.get("head_error"):
            judged.append({"figure": "runs", "verdict": REGRESSION,
                           "note": f"the head fails where the base runs: {cell['head_error']}"})
        cell["verdicts"] = judged
    _fdr([j for c in cells.values() for j in c["verdicts"] if "p_worse" in j])
    live = {k: c for k, c in cells.items() if not c.get("error")}
    suite = [j for n, t in timed if (j := judge_suite(FIGURES[n], t, live, final))] if live else []
    every = [j["verdict"] for c in cells.values() for j in c["verdicts"]] + [j["verdict"] for j in suite]
    errors = [k for k, c in cells.items() if c.get("error")]
    run = REGRESSION if REGRESSION in every else INCONCLUSIVE if INCONCLUSIVE in every or errors or not every \
        else NO_REGRESSION
    exact = any(j["verdict"] == REGRESSION and j["figure"] in (WORK, "batch_size", "runs") for c in cells.values()
                for j in c["verdicts"])
    return {"suite": suite, "verdict": run, "undecided": every.count(INCONCLUSIVE), "errors": errors,
            "exact_regression": exact}


def _fdr(judged: list[dict[str, Any]]) -> None:
    """Benjamini-Hochberg over the timed verdicts' one-sided p-values: a regression whose q exceeds the level is
    not a discovery and reads inconclusive."""
    if not judged:
        return
    for j, q in zip(judged, benjamini_hochberg([float(j["p_worse"]) for j in judged]), strict=True):
        j["q"] = q
        if j["verdict"] == REGRESSION and q > FDR_Q:
            j["verdict"] = INCONCLUSIVE
            fdr = f"significant alone but not after the FDR correction (q {q:.3g})"
            j["note"] = f"{j['note']}; {fdr}" if j.get("note") else fdr

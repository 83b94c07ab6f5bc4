"""Whether the seed study's findings hold in a measured matrix.

The study (Ang, Dhingra & Wu Wills 2022) found: LED beats Big Bird on accuracy at lower energy; for summarization a
bigger model is a more energy-efficient route to accuracy than a longer input, but inference gets much slower; for
QA the smaller model wins on both, helped by the bigger batches a fixed memory budget allows.

Rules, so that a verdict does not mislead:

* **Accuracy means something only with trained weights.** A record's ``accuracy_meaningful`` (a bool) decides
  when present; otherwise its ``profile`` does: ``paper`` (pretrained checkpoints) is meaningful, ``tiny`` and
  ``dims`` (random init) are not. The tiny profile's records on its shipped pretrained checkpoints carry the flag
  set, and a claim judged on them says it is the study's trade-off in miniature, not its numbers. A future
  profile with its own pretrained checkpoints opts in by adding its name
  to :data:`MEANINGFUL_PROFILES` or by writing ``"accuracy_meaningful": true`` into its records. A claim that
  ranks by accuracy is "not judged" unless every compared cell is meaningful.
* **A difference must exceed the noise.** Inference throughput is compared by its 95 % intervals where both cells
  have one (overlap = tie); every other figure carries no interval in the record, so a stated minimum effect
  decides (:data:`MIN_SCORE_POINTS`, :data:`MIN_REL_COST`). A pair with every compared figure tied is a tie; a
  claim with only ties is "cannot tell".
* **Like with like.** Training and inference costs are compared separately, never summed. Each uses energy (J)
  when every compared cell has a valid reading for that window, else wall time (s), and the finding says which.
* **Scope as the study stated it.** The inference-speed claim is about summarization; the QA claim about QA tasks.

Verdicts: "holds" (some pairs support it, none goes against), "does not hold" (some go against, none supports),
"mixed" (both, or a pair whose figures disagree), "cannot tell" (no pairs, or only ties), "not judged" (the claim
needs accuracy and the weights are random).

Where they are shown: the terminal gets one line per claim, its verdict and counts (:func:`terminal_lines`); the
evidence, the costs compared, the scope and the thresholds go to the JSON's ``session.findings`` and the page.
What the scores mean, in the records' own words about their weights (:func:`accuracy_words`), labels the page's
banner and the figures of accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_longeff.record.sections import is_cell

SUMMARIZATION_TASKS = ("gov_report", "summ_screen_fd", "qmsum")
SUMMARIZATION_KINDS = SUMMARIZATION_TASKS  # the older name, kept for importers
QA_TASKS = ("qasper", "narrative_qa")
MEANINGFUL_PROFILES = frozenset({"paper"})
"""Profiles whose weights are pretrained, so accuracy ranks models (records may override, see the module doc)."""
MIN_SCORE_POINTS = 1.0
"""Smallest score difference (SCROLLS points x100) counted as real: scores carry no interval, and a fine-tuned
model's generation score moves by about a point between seeds and validation subsets."""
MIN_REL_COST = 0.05
"""Smallest relative difference in energy, time or throughput counted as real where the record has no interval:
repeated windows on one machine spread by a few per cent (clocks, thermals, allocator)."""
MINIATURE_WORDS = ("accuracy of the tiny profile's pretrained checkpoints on generated data: the study's trade-off in "
                   "miniature, not a reproduction of its numbers")
RANDOM_INIT_REASON = "random-init weights: accuracy measures the pipeline, not the model"
WINDOWS = ("train", "inference")
VERDICTS = ("holds", "does not hold", "mixed", "cannot tell", "not judged")
LED_CLAIM = "LED beats Big Bird on accuracy at lower energy"
ROUTE_CLAIM = "for summarization a bigger model is a more energy-efficient route to accuracy than a longer input"
SPEED_CLAIM = "a bigger model makes inference much slower"
QA_CLAIM = "for QA the smaller model wins on accuracy and cost (bigger batches in the same memory)"
CLAIM_LABELS: Mapping[str, str] = {
    LED_CLAIM: "LED beats Big Bird on accuracy at lower energy",
    ROUTE_CLAIM: "summarization: a bigger model is a cheaper route to accuracy than a longer input",
    SPEED_CLAIM: "a bigger model makes inference much slower",
    QA_CLAIM: "QA: the smaller model wins on accuracy and cost",
}
"""Each claim in a few words, for one terminal line (the JSON and the page keep the claim whole)."""
DETAIL_WHERE = "evidence in the JSON's session.findings and on the HTML page"

Key = tuple[str, str, int, str]
Cells = dict[Key, dict[str, Any]]


@dataclass(frozen=True)
class Finding:
    """One claim of the study and what this matrix says about it."""

    claim: str
    verdict: str  # one of VERDICTS
    evidence: str
    cost: str = ""
    """The figures compared, e.g. "training: energy (J); inference: wall time (s) ...", or "accuracy only"."""
    pairs: int = 0
    """Comparisons made (pairs of cells, or triples for the route claim)."""
    ties: int = 0
    """Comparisons in which every figure was within the noise."""
    support: int = 0
    """Comparisons that support the claim."""
    against: int = 0
    """Comparisons that go against it."""
    scope: str = ""
    """Which cells the claim is about."""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """The minimum effects used where a figure has no interval."""

    @property
    def decided(self) -> bool:
        """Whether the matrix says something about the claim (holds, does not hold or mixed)."""
        return self.verdict in ("holds", "does not hold", "mixed")

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the report's ``session.findings``."""
        return {"claim": self.claim, "verdict": self.verdict, "evidence": self.evidence, "cost": self.cost,
                "pairs": self.pairs, "ties": self.ties, "support": self.support, "against": self.against,
                "scope": self.scope, "thresholds": dict(self.thresholds)}


THRESHOLDS: Mapping[str, float] = {"score_points": MIN_SCORE_POINTS, "relative_cost": MIN_REL_COST}
NOISE_WORDS = (f"ties: scores within {MIN_SCORE_POINTS:g} point, costs within {MIN_REL_COST:.0%} relative, "
               "throughput by overlapping 95% intervals where both cells have one")


def accuracy_meaningful(record: Mapping[str, Any]) -> bool:
    """Whether ``record``'s accuracy ranks models: its ``accuracy_meaningful`` flag, else its profile."""
    flag = record.get("accuracy_meaningful")
    if isinstance(flag, bool):
        return flag
    return record.get("profile") in MEANINGFUL_PROFILES


# -- what the scores mean, in the records' own words (the page's banner, the figures' titles and captions) ---------
PIPELINE_WORDS = "accuracy measures the pipeline, not the study's models"
UNSTATED = "what the score means is not recorded"


def cell_meaning(record: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether ``record``'s score ranks models, and what it means in words: the record's ``accuracy_meaning``
    (written by the cell from its profile and, in the tiny profile, whether its model is a shipped pretrained
    checkpoint), else its profile's words (older records)."""
    from pytest_longeff.profiles import PROFILES

    words = record.get("accuracy_meaning")
    if not isinstance(words, str) or not words:
        profile = PROFILES.get(str(record.get("profile")))
        words = profile.accuracy_meaning if profile is not None else UNSTATED
    return accuracy_meaningful(record), words


def _meaning_sentence(profile: str, meaningful: bool, words: str) -> str:
    return f"{profile} profile: {words}" if meaningful else f"{profile} profile: {PIPELINE_WORDS} ({words})"


def accuracy_words(records: Sequence[Mapping[str, Any]], profile: str = "") -> str:
    """What the scores of ``records`` mean as the records say it: one sentence per kind of weights among them
    (each naming its models and cell count when there are several kinds); empty without records. ``profile``
    stands in for a record without one."""
    groups: dict[tuple[str, bool, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((str(r.get("profile") or profile or "?"), *cell_meaning(r)), []).append(r)
    if len(groups) <= 1:
        return "".join(_meaning_sentence(*key) for key in groups)
    parts = []
    for key, members in groups.items():
        models = sorted({f"{r.get('family')}-{r.get('size')}" for r in members})
        parts.append(f"{_meaning_sentence(*key)} [{', '.join(models)}: {len(members)} of {len(records)} cells]")
    return "; ".join(parts)


@dataclass
class Tally:
    """Outcomes of the comparisons behind one claim."""

    support: int = 0
    against: int = 0
    split: int = 0
    ties: int = 0

    def add(self, signs: Iterable[int]) -> None:
        """Count one comparison from its figures' signs (+1 for the claim, -1 against, 0 within noise)."""
        s = list(signs)
        if all(x == 0 for x in s):
            self.ties += 1
        elif all(x >= 0 for x in s):
            self.support += 1
        elif all(x <= 0 for x in s):
            self.against += 1
        else:
            self.split += 1

    @property
    def total(self) -> int:
        """Number of comparisons counted, ties included."""
        return self.support + self.against + self.split + self.ties

    def verdict(self) -> str:
        """The claim's verdict from the counts (see the module doc)."""
        if self.total == self.ties:
            return "cannot tell"
        if self.split or (self.support and self.against):
            return "mixed"
        return "holds" if self.support else "does not hold"

    def words(self) -> str:
        """The counts in words, for the report."""
        return (f"{self.total} compared: {self.support} for, {self.against} against, {self.split} with figures "
                f"disagreeing, {self.ties} within noise")


def _passed(records: Sequence[dict[str, Any]]) -> Cells:
    # Only matrix cells are evidence: a window record (``kind`` "window") has no family, size or task.
    return {(r["family"], r["size"], r["seq_len"], r["task"]): r for r in records
            if r.get("status") == "passed" and is_cell(r)}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _score(cell: Mapping[str, Any]) -> float | None:
    return _num((cell.get("accuracy") or {}).get("score"))


def _cost_kinds(cells: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Per window: ``energy_j`` when every cell has a valid reading for it, else ``time_s``."""
    listed = list(cells)
    return {w: "energy_j" if listed and all((c.get(w) or {}).get("energy_valid")
                                           and _num((c.get(w) or {}).get("energy_j")) is not None for c in listed)
            else "time_s" for w in WINDOWS}


def _cost(cell: Mapping[str, Any], window: str, kind: str) -> float | None:
    return _num((cell.get(window) or {}).get(kind))


def _cost_words(kinds: Mapping[str, str]) -> str:
    names = {"train": "training", "inference": "inference"}
    return "; ".join(f"{names[w]}: energy (J)" if k == "energy_j" else
                     f"{names[w]}: wall time (s; energy not valid in every compared cell)" for w, k in kinds.items())


def score_sign(a: float, b: float) -> int:
    """+1 when ``a`` scores higher than ``b`` beyond :data:`MIN_SCORE_POINTS`, -1 when lower, else 0."""
    if abs(a - b) < MIN_SCORE_POINTS:
        return 0
    return 1 if a > b else -1


def cost_sign(a: float, b: float) -> int:
    """+1 when cost ``a`` is lower than ``b`` beyond :data:`MIN_REL_COST` (relative to the larger), -1 when
    higher, else 0."""
    top = max(abs(a), abs(b))
    if top == 0 or abs(a - b) / top < MIN_REL_COST:
        return 0
    return 1 if a < b else -1


def _not_judged(claim: str, scope: str, compared: Sequence[Mapping[str, Any]], pairs: int) -> Finding | None:
    """The "not judged" finding when a compared cell's accuracy is not meaningful, else None."""
    random = sum(not accuracy_meaningful(c) for c in compared)
    if not random:
        return None
    profiles = sorted({str(c.get("profile")) for c in compared if not accuracy_meaningful(c)})
    evidence = (f"{RANDOM_INIT_REASON} ({random} of {len(compared)} compared cells, profile "
                f"{'/'.join(profiles)}; {pairs} comparisons not made)")
    return Finding(claim, "not judged", evidence, "accuracy", pairs, 0, 0, 0, scope, THRESHOLDS)


def _miniature(compared: Sequence[Mapping[str, Any]]) -> str:
    """The label of accuracy judged on the tiny profile's pretrained checkpoints."""
    return f"; {MINIATURE_WORDS}" if any(c.get("profile") == "tiny" for c in compared) else ""


def _dominance(claim: str, scope: str, pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]], who: str,
               extra: str = "") -> Finding:
    """Whether the first cell of each pair scores at least as high at no more cost, cost by cost."""
    pairs = [(a, b) for a, b in pairs if _score(a) is not None and _score(b) is not None]
    if not pairs:
        return Finding(claim, "cannot tell", "no pairs of passed cells with scores", "", 0, 0, 0, 0, scope,
                       THRESHOLDS)
    compared = [c for p in pairs for c in p]
    skipped = _not_judged(claim, scope, compared, len(pairs))
    if skipped is not None:
        return skipped
    kinds = _cost_kinds(compared)
    tally, by_window = Tally(), {w: [0, 0, 0] for w in WINDOWS}
    for a, b in pairs:
        signs = [score_sign(_score(a) or 0.0, _score(b) or 0.0)]
        for w in WINDOWS:
            ca, cb = _cost(a, w, kinds[w]), _cost(b, w, kinds[w])
            sign = cost_sign(ca, cb) if ca is not None and cb is not None else 0
            by_window[w][1 - sign] += 1  # index 0: lower, 1: within noise, 2: higher
            signs.append(sign)
        tally.add(signs)
    per_cost = "; ".join(f"{w} cost {who} lower in {n[0]}, higher in {n[2]}, within noise in {n[1]}"
                         for w, n in by_window.items())
    evidence = f"{tally.words()} ({per_cost}{extra}); {_cost_words(kinds)}; {NOISE_WORDS}{_miniature(compared)}"
    return Finding(claim, tally.verdict(), evidence, _cost_words(kinds), tally.total, tally.ties, tally.support,
                   tally.against, scope, THRESHOLDS)


def led_vs_bigbird(cells: Cells) -> Finding:
    """LED vs Big Bird at the same size, length and task: higher score at lower training and inference cost."""
    pairs = [(cells[k], cells[("bigbird", *k[1:])]) for k in cells if k[0] == "led" and ("bigbird", *k[1:]) in cells]
    return _dominance(LED_CLAIM, "every task: LED vs Big Bird at the same size, length and task", pairs, "LED")


def smaller_model_wins_qa(cells: Cells) -> Finding:
    """Base vs large on QA tasks: higher score at lower cost, with the batch sizes as context."""
    pairs = [(cells[k], cells[(k[0], "large", *k[2:])]) for k in cells
             if k[1] == "base" and k[3] in QA_TASKS and (k[0], "large", *k[2:]) in cells]
    bigger = sum((a.get("batch_size") or 0) > (b.get("batch_size") or 0) for a, b in pairs)
    extra = f"; base's batch larger in {bigger} of {len(pairs)}" if pairs else ""
    return _dominance(QA_CLAIM, f"QA tasks ({', '.join(QA_TASKS)}): base vs large at the same family and length", pairs,
                      "base", extra)


def _efficiency(gain: float, start_cost: float, other_cost: float) -> float:
    """Score gained per unit of extra cost; an extra cost within the noise (or a saving) counts as free."""
    extra = other_cost - start_cost
    return float("inf") if extra <= MIN_REL_COST * abs(start_cost) else gain / extra


def _route_sign(start: dict[str, Any], bigger: dict[str, Any], longer: dict[str, Any], window: str,
                kind: str) -> int:
    """+1 when the bigger model buys accuracy more cheaply than the longer input on one cost, -1 when less, 0 tie."""
    base = _score(start) or 0.0
    g_big, g_long = (_score(bigger) or 0.0) - base, (_score(longer) or 0.0) - base
    gains_big, gains_long = g_big >= MIN_SCORE_POINTS, g_long >= MIN_SCORE_POINTS
    if gains_big != gains_long:  # only one route buys accuracy: it is the better route at any cost
        return 1 if gains_big else -1
    c0, cb, cl = _cost(start, window, kind), _cost(bigger, window, kind), _cost(longer, window, kind)
    if c0 is None or cb is None or cl is None:
        return 0
    e_big, e_long = _efficiency(g_big, c0, cb), _efficiency(g_long, c0, cl)
    if e_big == e_long == float("inf"):
        return score_sign(g_big, g_long)
    if float("inf") in (e_big, e_long):
        return 1 if e_big == float("inf") else -1
    return -cost_sign(e_big, e_long)  # efficiency: higher is better, so the cost sign flips


def bigger_model_vs_longer_input(cells: Cells) -> Finding:
    """From (base, L): score gained per unit of extra cost by going to (large, L) vs to (base, next length),
    on training and inference cost separately."""
    claim = ROUTE_CLAIM
    scope = (f"summarization ({', '.join(SUMMARIZATION_TASKS)}): from base at length L, large at L vs base at the "
             "next measured length")
    lengths = sorted({k[2] for k in cells})
    triples = []
    for (family, size, seq_len, task), start in cells.items():
        if size != "base" or task not in SUMMARIZATION_TASKS or seq_len == lengths[-1]:
            continue
        longer = cells.get((family, "base", lengths[lengths.index(seq_len) + 1], task))
        bigger = cells.get((family, "large", seq_len, task))
        if longer is not None and bigger is not None and all(_score(c) is not None for c in (start, longer, bigger)):
            triples.append((start, bigger, longer))
    if not triples:
        return Finding(claim, "cannot tell", "no (base L, large L, base next-L) summarization triples with scores",
                       "", 0, 0, 0, 0, scope, THRESHOLDS)
    compared = [c for t in triples for c in t]
    skipped = _not_judged(claim, scope, compared, len(triples))
    if skipped is not None:
        return skipped
    kinds = _cost_kinds(compared)
    tally, no_gain = Tally(), 0
    for start, bigger, longer in triples:
        base = _score(start) or 0.0
        if max((_score(bigger) or 0.0) - base, (_score(longer) or 0.0) - base) < MIN_SCORE_POINTS:
            no_gain += 1  # neither route buys accuracy: no route to rank, a tie (not a refutation)
            tally.add([0])
            continue
        tally.add(_route_sign(start, bigger, longer, w, kinds[w]) for w in WINDOWS)
    evidence = (f"{tally.words()}; score gained per extra cost, training and inference separately; neither route "
                f"gained {MIN_SCORE_POINTS:g} point or more in {no_gain} (nothing to rank: counted as ties, so "
                f"only such comparisons give 'cannot tell'); {_cost_words(kinds)}; {NOISE_WORDS}{_miniature(compared)}")
    return Finding(claim, tally.verdict(), evidence, _cost_words(kinds), tally.total, tally.ties, tally.support,
                   tally.against, scope, THRESHOLDS)


def _throughput(cell: Mapping[str, Any]) -> tuple[float, tuple[float, float] | None] | None:
    """Inference samples/s (median where there are stats) and its 95 % interval when it rests on 2+ values."""
    inference = cell.get("inference") or {}
    stats = inference.get("samples_per_s_stats") or {}
    value = _num(stats.get("median")) or _num(inference.get("samples_per_s"))
    if not value:
        return None
    ci = stats.get("ci95")
    if (stats.get("n") or 0) >= 2 and isinstance(ci, (list, tuple)) and len(ci) == 2:
        low, high = _num(ci[0]), _num(ci[1])
        if low is not None and high is not None:
            return value, (low, high)
    return value, None


def slower_sign(base: tuple[float, tuple[float, float] | None],
                large: tuple[float, tuple[float, float] | None]) -> int:
    """+1 when the large model's throughput is lower beyond the noise, -1 when higher, else 0."""
    (v_base, ci_base), (v_large, ci_large) = base, large
    if ci_base is not None and ci_large is not None:
        if ci_large[1] < ci_base[0]:
            return 1
        return -1 if ci_large[0] > ci_base[1] else 0
    return cost_sign(v_large, v_base)  # throughput lower = "cost" lower in sign terms


def bigger_model_infers_slower(cells: Cells) -> Finding:
    """Base vs large on summarization: inference throughput, by intervals where both cells have them."""
    claim = SPEED_CLAIM
    scope = f"summarization ({', '.join(SUMMARIZATION_TASKS)}): base vs large at the same family and length"
    pairs = []
    for k, cell in cells.items():
        large = cells.get((k[0], "large", *k[2:]))
        if k[1] == "base" and k[3] in SUMMARIZATION_TASKS and large is not None:
            a, b = _throughput(cell), _throughput(large)
            if a is not None and b is not None:
                pairs.append((a, b))
    tally, with_ci = Tally(), sum(a[1] is not None and b[1] is not None for a, b in pairs)
    for a, b in pairs:
        tally.add([slower_sign(a, b)])
    ratios = sorted(a[0] / b[0] for a, b in pairs)
    evidence = (f"{tally.words()}; inference samples/s, {with_ci} of {len(pairs)} pairs by 95% intervals, the "
                f"rest by the {MIN_REL_COST:.0%} minimum effect")
    if ratios:
        evidence += f"; base/large throughput ratio median {ratios[len(ratios) // 2]:.2f}"
    return Finding(claim, tally.verdict(), evidence, "inference throughput (samples/s)", tally.total, tally.ties,
                   tally.support, tally.against, scope, THRESHOLDS)


def findings(records: Sequence[dict[str, Any]]) -> list[Finding]:
    """Every finding, judged from the passed matrix cells among ``records``."""
    cells = _passed(records)
    return [led_vs_bigbird(cells), bigger_model_vs_longer_input(cells), bigger_model_infers_slower(cells),
            smaller_model_wins_qa(cells)]


def _counts(f: Mapping[str, Any]) -> str:
    """A finding's comparisons in a few words (from its dict form)."""
    pairs, support, against, ties = (int(f.get(k) or 0) for k in ("pairs", "support", "against", "ties"))
    if f.get("verdict") == "not judged":
        return f"random-init weights: {pairs} comparison(s) not made"
    if not pairs:
        return "no comparable cells"
    split = pairs - support - against - ties
    return (f"{pairs} compared: {support} for, {against} against" + (f", {split} mixed" if split else "") +
            f", {ties} within noise")


def claim_line(finding: Finding | Mapping[str, Any]) -> str:
    """One claim on one line: its verdict, the claim in a few words and the comparisons' counts."""
    f = finding.to_dict() if isinstance(finding, Finding) else finding
    claim = str(f.get("claim"))
    return f"{f.get('verdict')}: {CLAIM_LABELS.get(claim, claim)} ({_counts(f)})"


def terminal_lines(found: Sequence[Finding | Mapping[str, Any]], indent: str = "  ") -> list[str]:
    """The findings for the terminal: a heading, then one line per claim (verdict and counts); the evidence, costs
    and scope stay in the JSON's ``session.findings`` and on the page. ``found`` holds :class:`Finding` objects or
    their dict form, as :func:`findings` returns them or the report stores them. Where no claim is decided, one
    line counts the verdicts."""
    found = list(found)
    verdicts = [str((f.to_dict() if isinstance(f, Finding) else f).get("verdict")) for f in found]
    if not any(v in ("holds", "does not hold", "mixed") for v in verdicts):
        tally = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts) or "no claims"
        return [f"{indent}the seed study's findings: these cells cannot tell ({tally}; {DETAIL_WHERE})"]
    return [f"{indent}the seed study's findings on this matrix ({DETAIL_WHERE}):",
            *(f"{indent}  {claim_line(f)}" for f in found)]

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
* **A score difference must exceed the noise of the validation examples.** Two cells' scores are compared by a
  paired permutation test over the validation examples they share (:func:`paired_permutation`): a difference counts
  when its two-sided p-value is below :data:`SIGNIFICANCE` and it is at least :data:`MIN_SCORE_POINTS` (a point a
  fine-tuned model's score moves by between seeds). With a handful of examples one example flipping moves a score
  by tens of points; a fixed threshold would call that real, and so would a bootstrap interval (at 3 examples it
  called a difference between identical cells real in a quarter of the comparisons). The permutation test keeps
  that rate at or below :data:`SIGNIFICANCE` at any number of examples; the price is that at
  :data:`TOO_FEW_EXAMPLES` (5) or fewer shared examples no difference can count, so such comparisons are ties and
  a claim made only of them is "cannot tell". A pair needs per-example scores (the record's
  :data:`EXAMPLES_FIELD`) on at least :data:`MIN_EXAMPLES` shared examples; a claim with a pair without them is
  "not judged", never judged on the averages alone.
* **Other figures.** Inference throughput is compared by its 95 % intervals where both cells have one (overlap =
  tie); a cost carries no interval in the record, so :data:`MIN_REL_COST` decides. A pair with every compared
  figure tied is a tie; a claim with only ties is "cannot tell".
* **Like with like.** Training and inference costs are compared separately, never summed. Each uses energy (J)
  when every compared cell has a valid reading for that window, else wall time (s), and the finding says which.
* **Equal work.** Costs are per unit of work: a cell with batch 4 under ``steps=N`` trains four times the samples
  of one with batch 1. Training cost is per training sample under step, sample, time and energy budgets (under a
  time or energy budget every cell spends about the budget, so the figure says how many samples it bought); under
  an epochs budget it is per epoch (every cell passes over the same split), known for a cell that stopped at the
  budget's epochs and "unknown" for one stopped earlier (patience, ``max_steps``: the record does not say how many
  epochs it trained). Inference cost is per inference sample. The finding's ``cost`` says which.
* **Scope as the study stated it.** The inference-speed claim is about summarization; the QA claim about QA tasks.

Verdicts: "holds" (some pairs support it, none goes against), "does not hold" (some go against, none supports),
"mixed" (both, or a pair whose figures disagree), "cannot tell" (no pairs, or only ties), "not judged" (the claim
needs accuracy and the weights are random, or a compared pair has no per-example scores).

Per-example scores: a record's :data:`EXAMPLES_FIELD` maps each validation example's id to the components of the
task's metric for it (the keys of ``accuracy`` but ``score``: ``rouge1``, ``rouge2``, ``rougeL``; or ``f1``; or
``exact_match``), each best over the example's references, x100: the values
:func:`pytest_longeff.tasks.metrics.score_predictions` averages. The test's statistic is the difference of the
records' own statistics over the shared examples: each cell's components averaged, then combined by the metric's
headline (ROUGE: geometric mean of the three averages; F1 and exact match: the average itself). ROUGE's score is
not a mean over examples (an example without a matching bigram has a per-example geometric mean of 0, whatever its
ROUGE-1), so a test of per-example geometric means would test another statistic. With no real difference, each
example's two rows of components are as likely either way round: the test swaps them, example by example, every
way (2^n; exact, up to :data:`PERMUTATION_EXACT_UP_TO` examples) or in :data:`PERMUTATION_SAMPLES` random ways
(seed :data:`PERMUTATION_SEED`, the observed arrangement added to numerator and denominator), and the p-value is
the share of arrangements whose difference is at least as far from 0 as the observed one. The two arrangements
"as observed" and "every example swapped" always reach it, so p is at least 2 / 2^n: 0.25 at 3 examples, 0.0625
at 5, 0.0078 at 8.

Where they are shown: the terminal gets one line per claim, its verdict and counts (:func:`terminal_lines`); the
evidence, the costs compared, the scope and the thresholds go to the JSON's ``session.findings`` and the page.
What the scores mean, in the records' own words about their weights (:func:`accuracy_words`), labels the page's
banner and the figures of accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_longeff.record.sections import is_cell
from pytest_longeff.tasks.metrics import BUILTIN_METRICS
from pytest_longeff.text import for_terminal

SUMMARIZATION_TASKS = ("gov_report", "summ_screen_fd", "qmsum")
SUMMARIZATION_KINDS = SUMMARIZATION_TASKS  # the older name, kept for importers
QA_TASKS = ("qasper", "narrative_qa")
MEANINGFUL_PROFILES = frozenset({"paper", "recent"})
"""Profiles whose weights are pretrained, so accuracy ranks models (records may override, see the module doc)."""
MIN_SCORE_POINTS = 1.0
"""Smallest score difference (SCROLLS points x100) counted as real even when the permutation test calls it
significant: a fine-tuned model's generation score moves by about a point between seeds, which swapping examples
does not see."""
EXAMPLES_FIELD = "accuracy_examples"
"""The record field holding per-example scores: example id -> {metric component: value x100} (see the module doc)."""
SIGNIFICANCE = 0.05
"""A score difference counts only when its two-sided paired permutation p-value is below this."""
PERMUTATION_EXACT_UP_TO = 16
"""Most shared examples for which the paired permutation test enumerates every swap (2^16 = 65536): an exact p."""
PERMUTATION_SAMPLES = 10000
"""Random swaps of the paired permutation test above :data:`PERMUTATION_EXACT_UP_TO` examples (Monte Carlo p)."""
PERMUTATION_SEED = 0
"""Seed of those random swaps (a fresh generator per pair, so a pair's p-value does not depend on the others)."""
PERMUTATION_TIE_TOLERANCE = 1e-9
"""Relative tolerance within which a swap's difference counts as tied with the observed one (floating point)."""
PERMUTATION_BLOCK = 1 << 20
"""Most swap values (arrangements x examples) the test holds at once, so that thousands of examples stay small."""
MIN_EXAMPLES = 2
"""Fewest shared examples a paired test needs to be made: one example has nothing to swap it with."""
TOO_FEW_EXAMPLES = math.floor(1 - math.log2(SIGNIFICANCE))
"""Most shared examples at which no score difference can count: the smallest two-sided p of the exact test is
2 / 2^n (every example favouring the same cell, or every one the other), not below :data:`SIGNIFICANCE` up to
here (5 examples at 0.05: 2/32 = 0.0625)."""
MIN_REL_COST = 0.05
"""Smallest relative difference in energy, time or throughput counted as real where the record has no interval:
repeated windows on one machine spread by a few per cent (clocks, thermals, allocator)."""
MINIATURE_WORDS = ("accuracy of the tiny profile's pretrained checkpoints on generated data: the study's trade-off in "
                   "miniature, not a reproduction of its numbers")
RANDOM_INIT_REASON = "random-init weights: accuracy measures the pipeline, not the model"
NO_EXAMPLES_REASON = (f"no per-example scores to judge a score difference by (the records' {EXAMPLES_FIELD} on "
                      f"{MIN_EXAMPLES} or more shared validation examples)")
NOT_JUDGED_WORDS: Mapping[str, str] = {RANDOM_INIT_REASON: "random-init weights",
                                       NO_EXAMPLES_REASON: "no per-example scores"}
"""Why a claim was not judged, in a few words for the terminal, by the reason its evidence starts with."""
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
    """The costs compared and their unit of work, e.g. "training: energy per training sample (J); inference: wall
    time per inference sample (s; ...)", or "accuracy" when not judged."""
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
    """The minimum effects and the paired permutation test's significance level and swaps."""

    @property
    def decided(self) -> bool:
        """Whether the matrix says something about the claim (holds, does not hold or mixed)."""
        return self.verdict in ("holds", "does not hold", "mixed")

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the report's ``session.findings``."""
        return {"claim": self.claim, "verdict": self.verdict, "evidence": self.evidence, "cost": self.cost,
                "pairs": self.pairs, "ties": self.ties, "support": self.support, "against": self.against,
                "scope": self.scope, "thresholds": dict(self.thresholds)}


THRESHOLDS: Mapping[str, float] = {"score_points": MIN_SCORE_POINTS, "relative_cost": MIN_REL_COST,
                                   "score_significance": SIGNIFICANCE,
                                   "permutation_exact_up_to": PERMUTATION_EXACT_UP_TO,
                                   "permutation_samples": PERMUTATION_SAMPLES}
COST_NOISE_WORDS = (f"costs within {MIN_REL_COST:.0%} relative, throughput by overlapping 95% intervals where both "
                    "cells have one")


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


# -- scores: a paired permutation test over the validation examples -------------------------------------------------
Examples = Mapping[str, Mapping[str, float]]
"""Per-example scores: example id -> {metric component: value x100}."""


@dataclass(frozen=True)
class ScoreDifference:
    """Cell A's score minus cell B's on the validation examples they share, with its paired permutation p-value."""

    examples: int
    """Shared examples the scores were computed on and swapped between the cells."""
    difference: float
    """A's score minus B's, each the metric's statistic over the shared examples (points x100)."""
    p_value: float
    """Two-sided p-value of the difference under the paired permutation test (:func:`paired_permutation`)."""
    exact: bool
    """Whether ``p_value`` enumerates every swap (at most :data:`PERMUTATION_EXACT_UP_TO` examples) or is the
    Monte Carlo estimate from :data:`PERMUTATION_SAMPLES` random swaps."""

    @property
    def sign(self) -> int:
        """+1 when A scores higher beyond the noise (``p_value`` below :data:`SIGNIFICANCE` and the difference at
        least :data:`MIN_SCORE_POINTS`), -1 when lower, else 0."""
        if self.p_value >= SIGNIFICANCE or abs(self.difference) < MIN_SCORE_POINTS:
            return 0
        return 1 if self.difference > 0 else -1


def example_scores(cell: Mapping[str, Any]) -> dict[str, dict[str, float]] | None:
    """``cell``'s per-example scores (its :data:`EXAMPLES_FIELD`); None when it has none, or when an example's
    values are not numbers or its components differ from the others' (nothing a paired test could use)."""
    raw = cell.get(EXAMPLES_FIELD)
    if not isinstance(raw, Mapping) or not raw:
        return None
    out: dict[str, dict[str, float]] = {}
    for example_id, values in raw.items():
        if not isinstance(values, Mapping) or not values:
            return None
        components = out[str(example_id)] = {}
        for name, value in values.items():
            number = _num(value)
            if number is None:
                return None
            components[str(name)] = number
    return out if len({frozenset(v) for v in out.values()}) == 1 else None


def _headline(components: frozenset[str]) -> Callable[[Mapping[str, Any]], Any] | None:
    """How the score is made from the averaged ``components`` (0..1): the built-in metric's with these components
    (ROUGE: the geometric mean), a single component as it is; None for another metric with several. Each takes
    arrays of averages as well as single ones (element by element)."""
    for metric in BUILTIN_METRICS.values():
        if frozenset(metric.components) == components:
            return metric.headline
    if len(components) == 1:
        (name,) = components
        return lambda averages: averages[name]
    return None


def _swap_blocks(n: int, samples: int, seed: int) -> Iterator[Any]:
    """The swap patterns, as blocks of rows of 0/1 (1: that example's two rows exchanged) of at most
    :data:`PERMUTATION_BLOCK` values each: all 2^n, the identity first, for ``n`` up to
    :data:`PERMUTATION_EXACT_UP_TO`; else ``samples`` fair coin flips per example, from a generator seeded
    ``seed``."""
    import numpy as np

    rows = max(1, PERMUTATION_BLOCK // n)
    if n <= PERMUTATION_EXACT_UP_TO:
        for start in range(0, 2 ** n, rows):
            codes = np.arange(start, min(start + rows, 2 ** n))
            yield ((codes[:, None] >> np.arange(n)) & 1).astype(float)
        return
    rng = np.random.default_rng(seed)
    for start in range(0, samples, rows):
        yield rng.integers(0, 2, size=(min(rows, samples - start), n), dtype=np.int8).astype(float)


def paired_permutation(a: Examples, b: Examples, samples: int = PERMUTATION_SAMPLES,
                       seed: int = PERMUTATION_SEED) -> ScoreDifference | None:
    """A's score minus B's on their shared examples (paired by id), with its two-sided p-value under the paired
    permutation test: with no difference between the cells, each example's two rows of components are as likely
    the other way round, so the difference is recomputed with each example's rows exchanged or not, every way
    (exact, up to :data:`PERMUTATION_EXACT_UP_TO` examples) or ``samples`` random ways (seed ``seed``; the observed
    arrangement counted once more in numerator and denominator). The p-value is the share of arrangements whose
    difference is at least as far from 0 as the observed one (within :data:`PERMUTATION_TIE_TOLERANCE`). Each
    score is the metric's statistic: components averaged over the examples, then combined by the metric's
    headline. None when fewer than :data:`MIN_EXAMPLES` examples are shared or the cells' components differ or
    combine in an unknown way."""
    import numpy as np

    shared = sorted(set(a) & set(b))
    if len(shared) < MIN_EXAMPLES:
        return None
    components = frozenset(a[shared[0]])
    headline = _headline(components)
    if headline is None or any(frozenset(a[i]) != components or frozenset(b[i]) != components for i in shared):
        return None
    names, n = sorted(components), len(shared)
    table_a = np.array([[a[i][c] for c in names] for i in shared], dtype=float) / 100.0
    table_b = np.array([[b[i][c] for c in names] for i in shared], dtype=float) / 100.0
    mean_a, mean_b, moved = table_a.mean(axis=0), table_b.mean(axis=0), (table_b - table_a) / n

    def differences(swapped: Any) -> Any:
        # Exchanging an example's rows moves A's averages by its B row minus its A row over n, and B's back; the
        # floor keeps a geometric mean off a rounding error below 0.
        shift = swapped @ moved
        score_a = headline({c: np.maximum(mean_a[j] + shift[:, j], 0.0) for j, c in enumerate(names)})
        score_b = headline({c: np.maximum(mean_b[j] - shift[:, j], 0.0) for j, c in enumerate(names)})
        return 100.0 * (np.asarray(score_a, dtype=float) - np.asarray(score_b, dtype=float))

    observed = float(differences(np.zeros((1, n)))[0])
    reach = abs(observed) - PERMUTATION_TIE_TOLERANCE * max(1.0, abs(observed))
    arrangements = extreme = 0
    for block in _swap_blocks(n, samples, seed):
        arrangements += len(block)
        extreme += int(np.count_nonzero(~(np.abs(differences(block)) < reach)))  # a NaN counts as extreme
    exact = n <= PERMUTATION_EXACT_UP_TO
    p_value = extreme / arrangements if exact else (extreme + 1) / (arrangements + 1)
    return ScoreDifference(n, observed, p_value, exact)


def _differences(duels: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[ScoreDifference] | None:
    """The paired permutation test of each (A, B) in ``duels``; None when one of them has no per-example scores."""
    out = []
    for a, b in duels:
        ea, eb = example_scores(a), example_scores(b)
        difference = paired_permutation(ea, eb) if ea is not None and eb is not None else None
        if difference is None:
            return None
        out.append(difference)
    return out


def _score_words(differences: Sequence[ScoreDifference]) -> str:
    """How the score differences were judged, with the numbers of examples, and when too few to tell anything."""
    counts = sorted({d.examples for d in differences})
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    how = ("an exact paired permutation test" if all(d.exact for d in differences) else
           "a paired permutation test")
    words = (f"scores by {how} over {n} shared validation examples (each example's two scores swapped every way up "
             f"to {PERMUTATION_EXACT_UP_TO} examples, else {PERMUTATION_SAMPLES} random ways, seed "
             f"{PERMUTATION_SEED}): a difference counts when its two-sided p < {SIGNIFICANCE:g} and it is at least "
             f"{MIN_SCORE_POINTS:g} point")
    if counts[0] <= TOO_FEW_EXAMPLES:
        words += (f"; at {TOO_FEW_EXAMPLES} or fewer examples no score difference can be told from noise (the "
                  f"smallest p is 2/2^n, at least {2.0 ** (1 - TOO_FEW_EXAMPLES):g})")
    return words


# -- costs: per unit of work ---------------------------------------------------------------------------------------
def _cost_kinds(cells: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Per window: ``energy_j`` when every cell has a valid reading for it, else ``time_s``."""
    listed = list(cells)
    return {w: "energy_j" if listed and all((c.get(w) or {}).get("energy_valid")
                                           and _num((c.get(w) or {}).get("energy_j")) is not None for c in listed)
            else "time_s" for w in WINDOWS}


def _budget_kinds(cells: Iterable[Mapping[str, Any]]) -> set[str]:
    """The kinds of training budget (``steps``, ``epochs``, ...) the cells trained under."""
    return {str((c.get("train_budget") or {}).get("kind")) for c in cells}


def _per_epoch(cells: Iterable[Mapping[str, Any]]) -> bool:
    """Whether training cost is per epoch: every compared cell trained under an epochs budget."""
    return _budget_kinds(cells) == {"epochs"}


def _work(cell: Mapping[str, Any], window: str, per_epoch: bool) -> float | None:
    """What ``cell``'s ``window`` cost is divided by: its samples, or for training per epoch the epochs it trained
    (the record's ``train.epochs``; in older records the budget's, when it stopped there, else unknown)."""
    section = cell.get(window) or {}
    if window == "train" and per_epoch:
        if section.get("epochs") is not None:
            return _num(section.get("epochs"))
        return _num((cell.get("train_budget") or {}).get("epochs")) if section.get("stopped_by") == "epochs" else None
    return _num(section.get("samples"))


def _cost(cell: Mapping[str, Any], window: str, kind: str, per_epoch: bool) -> float | None:
    """``cell``'s ``window`` cost (``kind``: energy or time) per unit of work; None when either is unknown."""
    value, work = _num((cell.get(window) or {}).get(kind)), _work(cell, window, per_epoch)
    return value / work if value is not None and work else None


def _cost_words(kinds: Mapping[str, str], cells: Sequence[Mapping[str, Any]]) -> str:
    """The costs compared: figure, unit of work, unit, and what a time or energy budget makes of them."""
    per_epoch = _per_epoch(cells)
    budgets = _budget_kinds(cells) & {"time", "energy"}
    per = {"train": "per epoch" if per_epoch else "per training sample", "inference": "per inference sample"}
    parts = []
    for w, k in kinds.items():
        notes = [] if k == "energy_j" else ["energy not valid in every compared cell"]
        if w == "train" and budgets:
            notes.append(f"{'/'.join(sorted(budgets))} budget: each cell spends about the budget, so this says how "
                         "many samples it bought")
        unit = "J" if k == "energy_j" else "s"
        figure = "energy" if k == "energy_j" else "wall time"
        parts.append(f"{'training' if w == 'train' else w}: {figure} {per[w]} ({'; '.join([unit, *notes])})")
    return "; ".join(parts)


def cost_sign(a: float, b: float) -> int:
    """+1 when cost ``a`` is lower than ``b`` beyond :data:`MIN_REL_COST` (relative to the larger), -1 when
    higher, else 0."""
    top = max(abs(a), abs(b))
    if top == 0 or abs(a - b) / top < MIN_REL_COST:
        return 0
    return 1 if a < b else -1


# -- verdicts -------------------------------------------------------------------------------------------------------
def _not_judged(claim: str, scope: str, compared: Sequence[Mapping[str, Any]], pairs: int) -> Finding | None:
    """The "not judged" finding when a compared cell's accuracy is not meaningful, else None."""
    random = sum(not accuracy_meaningful(c) for c in compared)
    if not random:
        return None
    profiles = sorted({str(c.get("profile")) for c in compared if not accuracy_meaningful(c)})
    evidence = (f"{RANDOM_INIT_REASON} ({random} of {len(compared)} compared cells, profile "
                f"{'/'.join(profiles)}; {pairs} comparisons not made)")
    return Finding(claim, "not judged", evidence, "accuracy", pairs, 0, 0, 0, scope, THRESHOLDS)


def _unpaired(claim: str, scope: str, compared: Sequence[Mapping[str, Any]], pairs: int) -> Finding:
    """The "not judged" finding when a score comparison has no per-example scores to test."""
    cells = list({id(c): c for c in compared}.values())  # a route's cells may sit in two triples
    without = sum(example_scores(c) is None for c in cells)
    why = (f"{without} of {len(cells)} compared cells have none" if without else
           f"a compared pair shares fewer than {MIN_EXAMPLES} examples or differs in metric")
    evidence = f"{NO_EXAMPLES_REASON} ({why}; {pairs} comparisons not made)"
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
    differences = _differences(pairs)
    if differences is None:
        return _unpaired(claim, scope, compared, len(pairs))
    kinds, per_epoch = _cost_kinds(compared), _per_epoch(compared)
    tally, by_window = Tally(), {w: [0, 0, 0, 0] for w in WINDOWS}
    for (a, b), difference in zip(pairs, differences, strict=True):
        signs = [difference.sign]
        for w in WINDOWS:
            ca, cb = _cost(a, w, kinds[w], per_epoch), _cost(b, w, kinds[w], per_epoch)
            sign = cost_sign(ca, cb) if ca is not None and cb is not None else 0
            by_window[w][3 if ca is None or cb is None else 1 - sign] += 1  # lower, within noise, higher, unknown
            signs.append(sign)
        tally.add(signs)
    per_cost = "; ".join(f"{w} cost {who} lower in {n[0]}, higher in {n[2]}, within noise in {n[1]}" +
                         (f", unknown in {n[3]}" if n[3] else "") for w, n in by_window.items())
    cost = _cost_words(kinds, compared)
    evidence = (f"{tally.words()} ({per_cost}{extra}); {cost}; {_score_words(differences)}; "
                f"{COST_NOISE_WORDS}{_miniature(compared)}")
    return Finding(claim, tally.verdict(), evidence, cost, tally.total, tally.ties, tally.support, tally.against,
                   scope, THRESHOLDS)


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


@dataclass(frozen=True)
class _Route:
    """One (base L, large L, base next-L) triple and its three paired score differences."""

    start: dict[str, Any]
    bigger: dict[str, Any]
    longer: dict[str, Any]
    big_gain: ScoreDifference
    """Large L minus base L."""
    long_gain: ScoreDifference
    """Base next-L minus base L."""
    big_vs_long: ScoreDifference
    """Large L minus base next-L."""


def _route_sign(route: _Route, window: str, kind: str, per_epoch: bool) -> int:
    """+1 when the bigger model buys accuracy more cheaply than the longer input on one cost, -1 when less, 0 tie."""
    gains_big, gains_long = route.big_gain.sign > 0, route.long_gain.sign > 0
    if gains_big != gains_long:  # only one route buys accuracy: it is the better route at any cost
        return 1 if gains_big else -1
    c0, cb, cl = (_cost(c, window, kind, per_epoch) for c in (route.start, route.bigger, route.longer))
    if c0 is None or cb is None or cl is None:
        return 0
    e_big = _efficiency(route.big_gain.difference, c0, cb)
    e_long = _efficiency(route.long_gain.difference, c0, cl)
    if e_big == e_long == float("inf"):
        return route.big_vs_long.sign
    if float("inf") in (e_big, e_long):
        return 1 if e_big == float("inf") else -1
    return -cost_sign(e_big, e_long)  # efficiency: higher is better, so the cost sign flips


def _triples(cells: Cells) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Every summarization (base L, large L, base next-L) with scores."""
    lengths = sorted({k[2] for k in cells})
    triples = []
    for (family, size, seq_len, task), start in cells.items():
        if size != "base" or task not in SUMMARIZATION_TASKS or seq_len == lengths[-1]:
            continue
        longer = cells.get((family, "base", lengths[lengths.index(seq_len) + 1], task))
        bigger = cells.get((family, "large", seq_len, task))
        if longer is not None and bigger is not None and all(_score(c) is not None for c in (start, longer, bigger)):
            triples.append((start, bigger, longer))
    return triples


def bigger_model_vs_longer_input(cells: Cells) -> Finding:
    """From (base, L): score gained per unit of extra cost by going to (large, L) vs to (base, next length),
    on training and inference cost separately; a gain counts when its paired permutation test says so."""
    claim = ROUTE_CLAIM
    scope = (f"summarization ({', '.join(SUMMARIZATION_TASKS)}): from base at length L, large at L vs base at the "
             "next measured length")
    triples = _triples(cells)
    if not triples:
        return Finding(claim, "cannot tell", "no (base L, large L, base next-L) summarization triples with scores",
                       "", 0, 0, 0, 0, scope, THRESHOLDS)
    compared = [c for t in triples for c in t]
    skipped = _not_judged(claim, scope, compared, len(triples))
    if skipped is not None:
        return skipped
    differences = _differences([d for s, b, lo in triples for d in ((b, s), (lo, s), (b, lo))])
    if differences is None:
        return _unpaired(claim, scope, compared, len(triples))
    routes = [_Route(s, b, lo, *differences[3 * i:3 * i + 3]) for i, (s, b, lo) in enumerate(triples)]
    kinds, per_epoch = _cost_kinds(compared), _per_epoch(compared)
    tally, no_gain = Tally(), 0
    for route in routes:
        if route.big_gain.sign <= 0 and route.long_gain.sign <= 0:
            no_gain += 1  # neither route buys accuracy: no route to rank, a tie (not a refutation)
            tally.add([0])
            continue
        tally.add(_route_sign(route, w, kinds[w], per_epoch) for w in WINDOWS)
    cost = _cost_words(kinds, compared)
    evidence = (f"{tally.words()}; score gained per extra cost, training and inference separately; neither route "
                f"gained beyond the noise in {no_gain} (nothing to rank: counted as ties, so only such comparisons "
                f"give 'cannot tell'); {cost}; {_score_words(differences)}; {COST_NOISE_WORDS}{_miniature(compared)}")
    return Finding(claim, tally.verdict(), evidence, cost, tally.total, tally.ties, tally.support, tally.against,
                   scope, THRESHOLDS)


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
        evidence = str(f.get("evidence"))
        why = next((words for reason, words in NOT_JUDGED_WORDS.items() if evidence.startswith(reason)), "not judged")
        return f"{why}: {pairs} comparison(s) not made"
    if not pairs:
        return "no comparable cells"
    split = pairs - support - against - ties
    return (f"{pairs} compared: {support} for, {against} against" + (f", {split} mixed" if split else "") +
            f", {ties} within noise")


def claim_line(finding: Finding | Mapping[str, Any]) -> str:
    """One claim on one line: its verdict, the claim in a few words and the comparisons' counts (through
    :func:`text.for_terminal`: a finding read back from a report may hold anything)."""
    f = finding.to_dict() if isinstance(finding, Finding) else finding
    claim = str(f.get("claim"))
    return for_terminal(f"{f.get('verdict')}: {CLAIM_LABELS.get(claim, claim)} ({_counts(f)})")


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

"""Task metrics for SCROLLS: ROUGE, token F1 and exact match, scored offline.

The numbers follow the official SCROLLS metric (``tau/scrolls``: ``metrics/scrolls.py`` with its
``rouge.py``, ``f1.py`` and ``exact_match.py``), which reuses the SQuAD v1.1 script for F1 and exact match:

* every prediction is compared with each of its references and the best value is kept, separately for
  each sub-metric (so ROUGE-1 and ROUGE-2 may come from different references);
* the per-example values are averaged over examples and reported on a 0..100 scale;
* for ROUGE the headline score is the geometric mean of the averaged ROUGE-1, ROUGE-2 and ROUGE-L
  F-measures.

Where this module knowingly differs from the official script:

* An example that has references but no prediction is scored as if the prediction were ``""`` (so it
  counts as 0). The official script iterates over the *predictions*, so a model that skips hard examples
  would look better there; a benchmark must not reward that. Predictions for ids without references are
  ignored.
* The official ROUGE pre-processing joins NLTK sentences with newlines. That only matters for
  ``rougeLsum``, which is not reported here: ``rouge_score``'s tokenizer treats a newline as any other
  separator, so ROUGE-1/2/L are unchanged. Skipping it avoids needing NLTK's ``punkt`` data (a download).
* Values are not rounded to four decimals; rounding is the report's job.

Nothing here touches the network. ``evaluate.load("rouge")`` fetches its module from the Hugging Face hub,
so ROUGE is computed with ``rouge_score`` directly, configured as ``evaluate``'s ``rouge`` metric is by
default (``use_stemmer=False``, default tokenizer); per-example values therefore match ``evaluate``'s
``rouge`` with ``use_aggregator=False``.
"""

from __future__ import annotations

import functools
import math
import re
import string
import types
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "METRICS",
    "ROUGE_TYPES",
    "MetricSpec",
    "exact_match",
    "group_references",
    "normalize_answer",
    "register_metric",
    "rouge_scores",
    "score_predictions",
    "token_f1",
    "unregister_metric",
]

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
"""The ROUGE variants computed, in the order SCROLLS displays them."""

# str.translate with a deletion table is the fast way to drop characters. Only ASCII punctuation goes, as in
# the SQuAD script (typographic quotes and dashes survive normalisation there too).
_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Normalise an answer the SQuAD way: lowercase, drop punctuation, drop articles, collapse whitespace.

    The steps run in SQuAD's order, so punctuation is deleted rather than replaced by a space (``"re-run"``
    becomes ``"rerun"``) and only then are the articles ``a``, ``an`` and ``the`` removed as whole words.
    Only ASCII punctuation (``string.punctuation``) is removed.
    """
    without_punctuation = s.lower().translate(_DELETE_PUNCTUATION)
    without_articles = _ARTICLES_RE.sub(" ", without_punctuation)
    return " ".join(without_articles.split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 between one prediction and one reference, in 0..1.

    Both texts go through :func:`normalize_answer` and are split on whitespace; tokens are matched as a
    multiset (a token repeated in the prediction counts only as often as it occurs in the reference).

    When either side has no tokens after normalisation the result is 0.0, *including when both are empty*.
    That is SQuAD v1.1's behaviour, which SCROLLS' ``f1.py`` keeps; SQuAD v2 would give 1.0 for two empty
    answers, but SCROLLS' QA references are never empty (Qasper spells out "Unanswerable").
    """
    prediction_tokens = normalize_answer(prediction).split()
    reference_tokens = normalize_answer(reference).split()
    overlap = sum((Counter(prediction_tokens) & Counter(reference_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when both texts are equal after :func:`normalize_answer`, else 0.0.

    Unlike :func:`token_f1`, two texts that both normalise to ``""`` (e.g. ``"The"`` and ``"a."``) match.
    """
    return 1.0 if normalize_answer(prediction) == normalize_answer(reference) else 0.0


class _RougeScore(Protocol):
    """The part of ``rouge_score.scoring.Score`` used here."""

    @property
    def fmeasure(self) -> float: ...


class _RougeScorer(Protocol):
    """The part of ``rouge_score.rouge_scorer.RougeScorer`` used here (the package ships no type hints)."""

    def score(self, target: str, prediction: str) -> Mapping[str, _RougeScore]: ...


@functools.lru_cache(maxsize=1)
def _rouge_scorer() -> _RougeScorer:
    """The one shared ``RougeScorer`` (ROUGE-1, ROUGE-2, ROUGE-L, no stemming).

    Imported lazily because ``rouge_score`` pulls in NLTK (about half a second) and this module is
    importable from the plugin, which loads in every pytest run. Cached so that the import and the
    construction are paid once per process.
    """
    from rouge_score import rouge_scorer

    scorer: _RougeScorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    return scorer


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures of one prediction against one reference, each in 0..1.

    ``rouge_score``'s default tokenizer lowercases the text, replaces every character outside ``[a-z0-9]``
    with a space and drops empty tokens. Punctuation therefore splits words (``"don't"`` is ``don t``),
    accented and non-Latin letters vanish (``"café"`` is ``caf``; a purely Chinese text has no tokens), and
    a text without tokens scores 0.0 against anything. No articles are removed and no stemming is applied.
    A one-token text has no bigram, so its ROUGE-2 is 0.0 even against an identical reference.
    """
    # rouge_score takes (target, prediction); precision is measured against the prediction.
    result = _rouge_scorer().score(reference, prediction)
    return {rouge_type: float(result[rouge_type].fmeasure) for rouge_type in ROUGE_TYPES}


@dataclass(frozen=True)
class MetricSpec:
    """A task metric as data: its name (a key of :data:`METRICS`) and the direction of improvement."""

    name: str
    """``"rouge"``, ``"f1"`` or ``"exact_match"``."""
    higher_is_better: bool = True
    """Whether a larger ``score`` is better; true for every SCROLLS metric."""


@dataclass(frozen=True)
class _Scoring:
    """How one metric turns (prediction, reference) pairs into its reported values."""

    components: tuple[str, ...]
    """Sub-metric keys reported besides ``"score"``, each best-over-references, averaged, 0..100."""
    per_pair: Callable[[str, str], Mapping[str, float]]
    """Scores one prediction against one reference; returns every component in 0..1."""
    headline: Callable[[Mapping[str, float]], float]
    """Combines the averaged components (0..1) into the headline ``"score"`` (0..1)."""


def _geometric_mean_of_rouge(averages: Mapping[str, float]) -> float:
    # Taken on the 0..1 scale and scaled afterwards: the same value as SCROLLS' mean of the x100 numbers,
    # but a perfect run comes out as exactly 100.0 rather than 1e6 ** (1 / 3) == 99.99999999999997.
    product = math.prod(averages[rouge_type] for rouge_type in ROUGE_TYPES)
    return product ** (1.0 / len(ROUGE_TYPES))


_TABLE: dict[str, _Scoring] = (
    {
        "rouge": _Scoring(
            components=ROUGE_TYPES,
            per_pair=rouge_scores,
            headline=_geometric_mean_of_rouge,
        ),
        "f1": _Scoring(
            components=("f1",),
            per_pair=lambda prediction, reference: {"f1": token_f1(prediction, reference)},
            headline=lambda averages: averages["f1"],
        ),
        "exact_match": _Scoring(
            components=("exact_match",),
            per_pair=lambda prediction, reference: {"exact_match": exact_match(prediction, reference)},
            headline=lambda averages: averages["exact_match"],
        ),
    }
)
_BUILTIN = frozenset(_TABLE)
_SCORINGS: Mapping[str, _Scoring] = types.MappingProxyType(_TABLE)
_SPECS: dict[str, MetricSpec] = {name: MetricSpec(name) for name in _TABLE}
METRICS: Mapping[str, MetricSpec] = types.MappingProxyType(_SPECS)
"""Every metric :func:`score_predictions` accepts, by name (the built-ins and those registered)."""


def register_metric(name: str, per_pair: Callable[[str, str], float]) -> None:
    """Add a task metric (for tasks registered through ``pytest_longeff_tasks``): ``per_pair(prediction,
    reference)`` scores one prediction against one reference in 0..1; like the built-ins, the best over an id's
    references is averaged over ids and reported x100 as ``name`` and ``score``. Built-in names cannot be
    replaced; registering a name again replaces the earlier registration."""
    if name in _BUILTIN:
        raise ValueError(f"metric {name!r} is built in and cannot be replaced")
    _TABLE[name] = _Scoring(components=(name,), per_pair=lambda p, r: {name: per_pair(p, r)},
                            headline=lambda averages: averages[name])
    _SPECS[name] = MetricSpec(name)


def unregister_metric(name: str) -> None:
    """Remove a metric added by :func:`register_metric` (a no-op for unknown names)."""
    if name not in _BUILTIN:
        _TABLE.pop(name, None)
        _SPECS.pop(name, None)


def _accepted_metrics() -> str:
    return ", ".join(repr(name) for name in METRICS)


def score_predictions(
    metric: str,
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
) -> dict[str, float]:
    """Score predictions against references with one SCROLLS metric; every value is in 0..100.

    For each id in ``references`` the prediction is compared with every reference of that id and the best
    value of each sub-metric is kept; those values are averaged over the ids and multiplied by 100.

    Returns, by ``metric``:

    * ``"rouge"``: ``rouge1``, ``rouge2``, ``rougeL`` and ``score``, the geometric mean of the three (0 as
      soon as one of them is 0, e.g. when every prediction or reference is one word and so has no bigram);
    * ``"f1"``: ``f1`` and ``score`` (equal);
    * ``"exact_match"``: ``exact_match`` and ``score`` (equal).

    An id without a prediction is scored as the empty string, i.e. as a miss; predictions whose id has no
    references are ignored.

    Raises:
        ValueError: ``metric`` is not a key of :data:`METRICS` (the message lists the accepted ones),
            ``references`` is empty, or an id has an empty list of references.
        TypeError: an id's references are a single ``str`` rather than a sequence of strings (which would
            otherwise be scored character by character).
    """
    scoring = _SCORINGS.get(metric)
    if scoring is None:
        raise ValueError(f"unknown metric {metric!r}; accepted metrics: {_accepted_metrics()}")
    if not references:
        raise ValueError(f"no references to score with metric {metric!r}")

    best_per_example: dict[str, list[float]] = {component: [] for component in scoring.components}
    for example_id, example_references in references.items():
        if isinstance(example_references, str):
            raise TypeError(
                f"references for id {example_id!r} must be a sequence of strings, not a single str"
            )
        if not example_references:
            raise ValueError(f"id {example_id!r} has no references")
        prediction = predictions.get(example_id, "")
        per_reference = [scoring.per_pair(prediction, reference) for reference in example_references]
        for component, values in best_per_example.items():
            values.append(max(scores[component] for scores in per_reference))

    # fsum keeps the mean of all-perfect examples at exactly 1.0 and stays within 0..1 for any count.
    averages = {component: math.fsum(values) / len(values) for component, values in best_per_example.items()}
    result = {component: 100.0 * average for component, average in averages.items()}
    result["score"] = 100.0 * scoring.headline(averages)
    return result


def group_references(rows: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Collect ``(id, output)`` rows into the references of each id.

    SCROLLS stores one row per (example, reference) pair, so an example with several gold outputs appears
    several times. Ids keep the order of their first row, outputs the order they first appear in, and an
    output repeated for the same id is kept once (a duplicate cannot change a best-over-references score, but
    it would make reference counts misleading).
    """
    # A dict used as an insertion-ordered set gives order-preserving de-duplication in O(1) per row.
    grouped: dict[str, dict[str, None]] = {}
    for example_id, output in rows:
        grouped.setdefault(example_id, {})[output] = None
    return {example_id: list(outputs) for example_id, outputs in grouped.items()}

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

Which metrics exist is a table, name -> :class:`Metric`: :data:`BUILTIN_METRICS`, or a session's own table, built by
:func:`metric_table` from what the ``pytest_longeff_metrics`` hooks returned (the plugin returns the built-ins there
too) and kept in the session's registry. :func:`score_predictions` takes the table to use as an argument; nothing
here is mutable module state.
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
    "BUILTIN_METRICS",
    "METRICS",
    "ROUGE_TYPES",
    "Metric",
    "MetricFunction",
    "MetricSpec",
    "exact_match",
    "group_references",
    "metric_table",
    "normalize_answer",
    "rouge_scores",
    "score_predictions",
    "token_f1",
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
class Metric:
    """How one metric turns (prediction, reference) pairs into its reported values (a value of a metric table)."""

    components: tuple[str, ...]
    """Sub-metric keys reported besides ``"score"``, each best-over-references, averaged, 0..100."""
    per_pair: Callable[[str, str], Mapping[str, float]]
    """Scores one prediction against one reference; returns every component in 0..1."""
    headline: Callable[[Mapping[str, float]], float]
    """Combines the averaged components (0..1) into the headline ``"score"`` (0..1)."""

    @classmethod
    def from_pair(cls, name: str, per_pair: Callable[[str, str], float]) -> Metric:
        """The metric ``name`` with one component, ``per_pair(prediction, reference)`` in 0..1, as its score."""
        return cls(components=(name,), per_pair=lambda prediction, reference: {name: per_pair(prediction, reference)},
                   headline=lambda averages: averages[name])


def _geometric_mean_of_rouge(averages: Mapping[str, float]) -> float:
    # Taken on the 0..1 scale and scaled afterwards: the same value as SCROLLS' mean of the x100 numbers,
    # but a perfect run comes out as exactly 100.0 rather than 1e6 ** (1 / 3) == 99.99999999999997.
    product = math.prod(averages[rouge_type] for rouge_type in ROUGE_TYPES)
    return product ** (1.0 / len(ROUGE_TYPES))


def _found(value: str, prediction: str) -> bool:
    """Whether ``value`` occurs in ``prediction`` as whole words (no word character on either side: "kavo." and
    "kavo, dibu" hold "kavo"; "kavos" does not), ignoring case."""
    return re.search(r"(?<!\w)" + re.escape(value.lower()) + r"(?!\w)", prediction.lower()) is not None


def string_match_all(prediction: str, reference: str) -> float:
    """RULER's ``string_match_all``: the share of the reference's values (separated by spaces) found in the
    prediction, each as whole words, ignoring case."""
    values = reference.split()
    return sum(_found(v, prediction) for v in values) / len(values) if values else 0.0


def string_match_part(prediction: str, reference: str) -> float:
    """RULER's ``string_match_part`` for one reference: 1 when the reference occurs in the prediction as whole
    words, ignoring case (the best over an example's references is taken as for every metric)."""
    return 1.0 if reference.strip() and _found(" ".join(reference.split()), " ".join(prediction.split())) else 0.0


BUILTIN_METRICS: Mapping[str, Metric] = types.MappingProxyType({
    "rouge": Metric(components=ROUGE_TYPES, per_pair=rouge_scores, headline=_geometric_mean_of_rouge),
    "f1": Metric.from_pair("f1", token_f1),
    "exact_match": Metric.from_pair("exact_match", exact_match),
    "ruler_all": Metric.from_pair("ruler_all", string_match_all),
    "ruler_part": Metric.from_pair("ruler_part", string_match_part),
})
"""The SCROLLS metrics by name (read-only). The plugin returns this table from its own ``pytest_longeff_metrics``;
:func:`score_predictions` uses it when given no table."""
METRICS: Mapping[str, MetricSpec] = types.MappingProxyType({name: MetricSpec(name) for name in BUILTIN_METRICS})
"""The built-in metrics as data, by name (read-only); a session's table may add more (:func:`metric_table`)."""

MetricFunction = Callable[[str, str], float]
"""What a ``pytest_longeff_metrics`` hook may return for a name besides a :class:`Metric`: ``(prediction,
reference) -> float`` in 0..1, made a metric by :meth:`Metric.from_pair`."""


def metric_table(metrics: Mapping[str, Metric | MetricFunction]) -> Mapping[str, Metric]:
    """A session's metric table from the name -> metric entries the ``pytest_longeff_metrics`` hooks returned, merged.

    A function ``(prediction, reference) -> float`` becomes :meth:`Metric.from_pair`; a :class:`Metric` is kept.
    Returns a read-only table with the built-in names first, then the others in their order. Raises ValueError for
    a name that is empty or has surrounding blanks, a value that is neither, or a built-in name bound to anything
    but its built-in metric (a built-in cannot be replaced).
    """
    table: dict[str, Metric] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"a metric name must be non-empty without surrounding blanks, got {name!r}")
        if name in BUILTIN_METRICS and value is not BUILTIN_METRICS[name]:
            raise ValueError(f"metric {name!r} is built in and cannot be replaced")
        if not isinstance(value, Metric) and not callable(value):
            raise ValueError(f"metric {name!r}: expected a function (prediction, reference) -> float or a Metric, "
                             f"got {value!r}")
        table[name] = value if isinstance(value, Metric) else Metric.from_pair(name, value)
    builtins = {name: metric for name, metric in BUILTIN_METRICS.items() if name in table}
    return types.MappingProxyType({**builtins, **{n: m for n, m in table.items() if n not in BUILTIN_METRICS}})


def score_predictions(
    metric: str,
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Mapping[str, Metric] = BUILTIN_METRICS,
) -> dict[str, float]:
    """Score predictions against references with the metric ``metric`` of the table ``metrics``; every value is in
    0..100.

    For each id in ``references`` the prediction is compared with every reference of that id and the best
    value of each sub-metric is kept; those values are averaged over the ids and multiplied by 100.

    Returns, by ``metric``:

    * ``"rouge"``: ``rouge1``, ``rouge2``, ``rougeL`` and ``score``, the geometric mean of the three (0 as
      soon as one of them is 0, e.g. when every prediction or reference is one word and so has no bigram);
    * ``"f1"``: ``f1`` and ``score`` (equal);
    * ``"exact_match"``: ``exact_match`` and ``score`` (equal);
    * a metric from :meth:`Metric.from_pair` (e.g. one a ``pytest_longeff_metrics`` hook returned as a function):
      its name and ``score`` (equal).

    ``metrics`` is the table to choose from: a session passes its own (:func:`metric_table` of what the
    ``pytest_longeff_metrics`` hooks returned, built-ins included); by default, the built-ins alone.

    An id without a prediction is scored as the empty string, i.e. as a miss; predictions whose id has no
    references are ignored.

    Raises:
        ValueError: ``metric`` is not a key of ``metrics`` (the message lists the accepted ones),
            ``references`` is empty, or an id has an empty list of references.
        TypeError: an id's references are a single ``str`` rather than a sequence of strings (which would
            otherwise be scored character by character).
    """
    return average_scores(metric, example_scores(metric, predictions, references, metrics), metrics)


def average_scores(metric: str, per_example: Mapping[str, Mapping[str, float]],
                   metrics: Mapping[str, Metric] = BUILTIN_METRICS) -> dict[str, float]:
    """:func:`score_predictions`'s result from :func:`example_scores`' (the components averaged over the
    examples, then combined as the metric does), for a caller that keeps both."""
    scoring = metrics[metric]
    # fsum keeps the mean of all-perfect examples at exactly 1.0 and stays within 0..1 for any count.
    averages = {component: math.fsum(values[component] for values in per_example.values()) / len(per_example)
                for component in scoring.components}
    result = {component: 100.0 * average for component, average in averages.items()}
    result["score"] = 100.0 * scoring.headline(averages)
    return result


def example_scores(
    metric: str,
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Mapping[str, Metric] = BUILTIN_METRICS,
) -> dict[str, dict[str, float]]:
    """Each example's components of ``metric`` in 0..1, best over the example's references: what
    :func:`score_predictions` averages (the findings' paired permutation test swaps them). Same arguments,
    rules and errors as :func:`score_predictions`."""
    scoring = metrics.get(metric)
    if scoring is None:
        raise ValueError(f"unknown metric {metric!r}; accepted metrics: {', '.join(map(repr, metrics))}")
    if not references:
        raise ValueError(f"no references to score with metric {metric!r}")
    out: dict[str, dict[str, float]] = {}
    for example_id, example_references in references.items():
        if isinstance(example_references, str):
            raise TypeError(
                f"references for id {example_id!r} must be a sequence of strings, not a single str"
            )
        if not example_references:
            raise ValueError(f"id {example_id!r} has no references")
        prediction = predictions.get(example_id, "")
        per_reference = [scoring.per_pair(prediction, reference) for reference in example_references]
        out[example_id] = {component: max(scores[component] for scores in per_reference)
                           for component in scoring.components}
    return out


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

"""The study's teacher-forced scoring, checked against a small reimplementation of its compute_metrics."""

from __future__ import annotations

import math
import re
import string

import pytest
from rouge_score import rouge_scorer

from pytest_longeff.tasks.study import study_scores


def _normalise(text: str) -> str:
    # SQuAD v1.1's normalisation, written out again: lower, drop punctuation and articles, squeeze spaces.
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _reference_compute_metrics(predictions: list[str], labels: list[str]) -> dict[str, float]:
    """What the study's ``compute_metrics`` did for summarization: each decoded prediction against its own decoded
    label, normalised, ROUGE-1/2/L F without stemming averaged over rows, x100, and their geometric mean."""
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, label in zip(predictions, labels, strict=True):
        scores = scorer.score(_normalise(label), _normalise(prediction))
        for key in totals:
            totals[key] += scores[key].fmeasure
    out = {key: 100 * value / len(predictions) for key, value in totals.items()}
    out["score"] = math.prod(out.values()) ** (1 / 3)
    return out


def test_summarization_matches_the_study_compute_metrics() -> None:
    predictions = ["The cat sat on the mat today.", "a dog ran", "Budgets grew, and the deficit grew too."]
    labels = ["the cat sat on a mat", "The dog ran away quickly!", "the deficit grew while budgets grew"]
    ours = study_scores("rouge", predictions, labels)
    theirs = _reference_compute_metrics(predictions, labels)
    for key in ("rouge1", "rouge2", "rougeL", "score"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-12)


def test_each_row_is_scored_against_its_own_label_only() -> None:
    """Two rows of the same example with different labels: best-over-references would give both 100."""
    ours = study_scores("f1", ["alpha beta", "alpha beta"], ["alpha beta", "gamma delta"])
    assert ours["f1"] == pytest.approx(50.0)


def test_rows_and_labels_must_pair_up() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        study_scores("f1", ["a", "b"], ["a"])

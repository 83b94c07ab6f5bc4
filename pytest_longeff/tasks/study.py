"""The seed study's own scoring, for comparison with its numbers: teacher-forced argmax predictions, each row
against its own label truncated to 128 tokens, both SQuAD-normalised; ROUGE-1/2/L without stemming averaged over
rows with their geometric mean as the score (F1 for QA, exact match for multiple choice), x100."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_longeff.tasks.metrics import BUILTIN_METRICS, Metric, normalize_answer, score_predictions

METHOD = ("the study's scoring: argmax of teacher-forced logits at every position of the label padded to 128 "
          "tokens, every validation row (each reference is a row) against its own label, SQuAD-normalised, x100")


def study_scores(metric: str, predictions: Sequence[str], labels: Sequence[str],
                 metrics: Mapping[str, Metric] = BUILTIN_METRICS) -> dict[str, float]:
    """Scores of ``predictions[i]`` against ``labels[i]`` alone (never the best over an id's references), with the
    metric ``metric`` of the table ``metrics`` (a session's, or the built-ins)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    rows = {str(i): normalize_answer(p) for i, p in enumerate(predictions)}
    refs = {str(i): [normalize_answer(label)] for i, label in enumerate(labels)}
    return score_predictions(metric, rows, refs, metrics)

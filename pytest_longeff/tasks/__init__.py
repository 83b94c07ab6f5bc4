"""What a SCROLLS task is and how it is scored: one small spec per task, the metrics as data, and the seed study's
teacher-forced scoring.

Modules: ``specs`` (:class:`TaskSpec`, the built-in tasks), ``metrics`` (ROUGE, token F1, exact match), ``study``.
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "TaskSpec": "specs",
    "BUILTIN_TASKS": "specs",
    "score_predictions": "metrics",
    "study_scores": "study",
    "METHOD": "study",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

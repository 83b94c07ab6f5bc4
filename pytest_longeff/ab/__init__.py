"""Base and head measured side by side in one job (``pytest-longeff ab``).

Modules: ``run`` (the job: process pairs, paired rounds, the report and the command line), ``side`` (what each
environment's process runs), ``sides`` (starting and speaking to them over execnet), ``stats`` (intervals over
process pairs and the three verdicts), ``judge`` (from rounds to verdicts), ``render`` (the report as text).
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "AbJob": "run",
    "Plan": "run",
    "Env": "sides",
    "estimate": "stats",
    "verdict": "stats",
    "judge_cells": "judge",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

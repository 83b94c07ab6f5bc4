"""One cell, from its inputs to its record: the resources the cells of a session share, the named phases (prepare,
choose the batch, fine-tune, infer, score), the batch-size search under the memory budget, the training loop and its
budgets, inference, precision and progress.

Modules: ``resources``, ``run`` (:func:`run_cell`), ``prepare``, ``batch``, ``search``, ``train``, ``budget``,
``infer``, ``precision``, ``progress``, ``outcome`` (a test's record from what its fixtures measured).
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "run_cell": "run",
    "LongeffSession": "resources",
    "search_batch_size": "search",
    "TrainBudget": "budget",
    "parse_train_budget": "budget",
    "Precision": "precision",
    "Progress": "progress",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

"""Work across pytest processes and machines: shards of the matrix, resuming an interrupted run, and the gate on two
saved reports (``pytest-longeff compare``).

Modules: ``shard``, ``resume``, ``compare``.
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "select": "shard",
    "Selection": "shard",
    "ShardError": "shard",
    "load_plan": "resume",
    "ResumePlan": "resume",
    "compare_docs": "compare",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

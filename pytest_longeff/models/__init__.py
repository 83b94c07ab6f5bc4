"""Model families: how each is built for each profile and fed, the shipped tiny checkpoints, and how they were
pretrained.

Modules: ``families`` (:class:`Family`, LED, Big Bird, :func:`build_model`), ``recent`` (LongT5, PEGASUS-X, the
decoder-only family), ``causal`` (a causal LM behind the cell's seq2seq contract), ``common`` (dimensions, loading,
attention implementations, position limits), ``checkpoints/`` (shipped weights and their loader), ``pretrain``.
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "Family": "families",
    "BuiltModel": "families",
    "BUILTIN_FAMILIES": "families",
    "build_model": "families",
    "DecoderOnlyFamily": "recent",
    "DecoderDims": "recent",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

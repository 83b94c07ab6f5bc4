"""Where a task's examples come from: SCROLLS-format JSONL and zips, generated offline data, the ``datasets``
library, and the offline tokenizers.

Modules: ``scrolls`` (splits, zips, the generator), ``hub`` (``datasets``), ``tokenizer``.
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "generate_task": "scrolls",
    "lexicon_tokenizer": "tokenizer",
    "train_tokenizer": "tokenizer",
    "cached_tokenizer": "tokenizer",
    "PAD_ID": "tokenizer",
    "BOS_ID": "tokenizer",
    "EOS_ID": "tokenizer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

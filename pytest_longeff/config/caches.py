"""Where cross-run state lives: pytest's ``config.cache`` under ``longeff/...`` (or a folder when the cache
provider is off)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_longeff.cell.batch import BatchCache


def cache_dir(config: pytest.Config) -> Path:
    """A folder for prepared inputs: ``.pytest_cache/d/longeff``, or ``<rootdir>/.longeff-cache`` without the
    cache provider (``-p no:cacheprovider``)."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("longeff"))
    path = config.rootpath / ".longeff-cache"
    path.mkdir(exist_ok=True)
    return path


def batch_cache(config: pytest.Config) -> BatchCache | None:
    """Found batch sizes across runs, over ``config.cache``; None without the cache provider. An entry whose file
    exists but cannot be read (e.g. truncated JSON) comes back as :class:`~pytest_longeff.cell.batch.Unreadable`,
    so the batch choice can say so instead of taking it for a plain miss."""
    from pytest_longeff.cell.batch import BatchCache, Unreadable

    cache = getattr(config, "cache", None)
    if cache is None:
        return None
    absent = object()
    # pytest keeps values under ``v/`` beside the ``d/`` folders ``mkdir`` makes (its on-disk layout); the path is
    # used only to tell an entry that is not there from one that cannot be read, which ``get`` answers alike.
    values = Path(cache.mkdir("longeff")).parents[1] / "v"

    def get(key: str) -> Any:
        value = cache.get(key, absent)
        if value is not absent:
            return value
        path = values / key
        return Unreadable(str(path)) if path.exists() else None

    return BatchCache(get, cache.set)

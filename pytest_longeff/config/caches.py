"""Where cross-run state lives: pytest's ``config.cache`` under ``longeff/...`` (or a folder when the cache
provider is off)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
    """Found batch sizes across runs, over ``config.cache``; None without the cache provider."""
    from pytest_longeff.cell.batch import BatchCache

    cache = getattr(config, "cache", None)
    return None if cache is None else BatchCache(lambda k: cache.get(k, None), cache.set)

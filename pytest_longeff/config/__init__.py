"""User-facing configuration of a run: the options (defined once, for ``--help``, ini and the docs), the settings
they resolve into, the cross-option usage rules, the per-session registry of what the hooks add, and where
cross-run state is cached.

Modules: ``settings`` (the option table, :class:`Settings`, :func:`resolve`), ``rules`` (usage errors that need more
than one option), ``registry`` (families, tasks, meters and metrics of one session), ``caches`` (``config.cache``).
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "OPTIONS": "settings",
    "Settings": "settings",
    "add_options": "settings",
    "resolve": "settings",
    "Extensions": "registry",
    "gather": "registry",
    "batch_cache": "caches",
    "cache_dir": "caches",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

"""Measurement windows and the facts around them: time, peak memory and energy over a named stretch of work, the
recorder behind ``longeff_window``, machine and software facts, and the machine-speed reference.

Modules: ``window`` (:func:`window`), ``recorder`` (:class:`WindowRecorder`), ``machine``, ``reference``.
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "WindowRecorder": "recorder",
    "WindowSummary": "recorder",
    "light_facts": "machine",
    "machine_key": "machine",
    "mismatch": "machine",
    "CellReference": "reference",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

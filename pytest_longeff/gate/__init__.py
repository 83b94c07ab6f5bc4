"""The regression gate: each cell's figures against a baseline (with intervals, tolerances and refusals), the run as
a whole (false-discovery-rate control and the suite rule), acknowledged changes, and measuring a suspect cell again.

Modules: ``check`` (:class:`Gate`, :class:`Rule`, the per-cell check), ``suite`` (the run-level verdict),
``acknowledge``, ``remeasure``, ``plugin`` (the run-level gate inside pytest).
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "Gate": "check",
    "Rule": "check",
    "parse_fail_on": "check",
    "gate_record": "check",
    "refusal": "check",
    "RunVerdict": "suite",
    "load_acknowledged": "acknowledge",
    "settle": "remeasure",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

"""The cell record, the contract every reader shares: typed sections built by the phase that measured them, the one
table of reported figures, the checks every record passes, and the JSON report file (read, validated, written).

Modules: ``sections`` (the typed record), ``figures`` (:data:`FIGURES`, :func:`figure`), ``checks``
(:func:`check_record`), ``io`` (:class:`JsonReport`, :func:`load_report`, the schema in ``schema/``).
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "CellRecord": "sections",
    "is_cell": "sections",
    "lookup": "sections",
    "Figure": "figures",
    "FIGURES": "figures",
    "FIGURES_BY_NAME": "figures",
    "GATED": "figures",
    "figure": "figures",
    "window_figures": "figures",
    "check_record": "checks",
    "JsonReport": "io",
    "ReportError": "io",
    "load_report": "io",
    "dump_report": "io",
    "atomic_write_text": "io",
    "code_digest": "io",
    "SCHEMA_VERSION": "io",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

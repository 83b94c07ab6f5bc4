"""What a run shows and writes: the controller and worker roles that collect records, the terminal matrix, CSV and
Markdown tables, JUnit properties, the findings and Pareto fronts, CI outputs, the HTML page and the figures.

Modules: ``roles``, ``tables``, ``junit``, ``findings``, ``pareto``, ``github``, ``page`` (assets in ``assets/``),
``outputs`` (what a finished report is rendered into), ``plots/``.
"""

from __future__ import annotations

from pytest_longeff._lazy import facade

#: public name -> the module of this package defining it
_EXPORTS: dict[str, str] = {
    "render_matrix": "tables",
    "render_csv": "tables",
    "render_markdown": "tables",
    "front": "pareto",
    "write_html": "page",
    "render_extras": "outputs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = facade(__name__, _EXPORTS)

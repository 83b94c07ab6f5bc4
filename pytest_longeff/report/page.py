"""One self-contained HTML page for a report: the matrix (sortable, filterable), the plots as inline SVG, the Pareto
fronts, the findings, the gate's verdicts, every figure's method and the environment.

Nothing is fetched: CSS, JavaScript and SVG are inline, so the page opens from a CI artifact with a double click.
Every value from the report is HTML-escaped by :mod:`pytest_longeff.text`: between tags by
:func:`~pytest_longeff.text.html_text` (:func:`esc`), inside an attribute only through
:func:`~pytest_longeff.text.attribute`, which always quotes and escapes the value. An unmeasured figure shows as
``n/a``, never 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from pytest_longeff.record.figures import FIGURES, FIGURES_BY_NAME
from pytest_longeff.record.sections import lookup
from pytest_longeff.report.pareto import cells as _cells
from pytest_longeff.text import attribute, html_attr, html_text

if TYPE_CHECKING:
    from pytest_longeff.report.tables import Column

NA = "n/a"
FILTERS = (("family", "family"), ("size", "size"), ("length", "seq_len"), ("task", "task"))
PLOTS_MISSING = ("Plots need the <code>plots</code> extra (matplotlib): <code>pip install "
                 "pytest-longeff[plots]</code>, then <code>pytest-longeff plot REPORT.json</code>.")


def esc(value: Any) -> str:
    """``value`` as escaped HTML text (:func:`text.html_text`); None is ``n/a``. Never inside an attribute: that
    is :func:`attr`'s."""
    return NA if value is None else html_text(value)


def attr(name: str, value: Any) -> str:
    """`` name="value"`` (:func:`text.attribute`: always quoted and escaped); None is ``n/a``."""
    return attribute(name, NA if value is None else value)


def fmt(value: Any) -> str:
    """A figure for a table cell: numbers to 4 significant digits, lists and mappings as compact JSON."""
    if isinstance(value, bool) or value is None:
        return esc(value)
    if isinstance(value, float):
        return esc(f"{value:.4g}")
    if isinstance(value, (list, tuple, Mapping)):
        return f"<code>{esc(json.dumps(value, default=str))}</code>"
    return esc(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], attrs: str = "") -> str:
    """A table of already-escaped cells (headers are escaped here)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _asset(name: str) -> str:
    return resources.files("pytest_longeff.report").joinpath("assets", name).read_text(encoding="utf-8")


# -- sections -------------------------------------------------------------------------------------------------------
def _header(column: Column) -> str:
    """A matrix header; a figure column's names its figure, unit and method on hover."""
    fig = FIGURES_BY_NAME.get(column.figure or "")
    title = attr("title", f"{fig.name} ({fig.unit}): {fig.method}") if fig is not None else ""
    return f'<th scope="col"{title}>{esc(column.header)}</th>'


def matrix_section(cells: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The filter select boxes and the matrix table (every column; rows carry their cell's coordinates)."""
    from pytest_longeff.report.tables import matrix_columns, matrix_rows

    _, rows = matrix_rows(cells)
    body = []
    for r, row in zip(cells, rows, strict=True):
        data = "".join(attr(f"data-{name}", r.get(key)) for name, key in FILTERS)
        status = attr("class", f"status-{r.get('status')}")
        body.append(f"<tr{data}{status}>" +
                    "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    head = "".join(_header(c) for c in matrix_columns(cells))
    matrix = f'<table id="matrix"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table>"
    selects = []
    for name, key in FILTERS:
        values = sorted({r.get(key) for r in cells if r.get(key) is not None}, key=lambda v: (str(type(v)), v))
        options = "".join(f'<option{attr("value", v)}>{esc(v)}</option>' for v in values)
        selects.append(f'<label>{esc(name)} <select{attr("id", f"filter-{name}")}{attr("data-filter", name)}>'
                       f'<option value="">all</option>{options}</select></label>')
    return "".join(selects), matrix


def _prefix_ids(svg: str, prefix: str) -> str:
    # Several SVGs share one page: their ids (axes_1, clip paths...) must not collide.
    return re.sub(r'(\bid="|url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def _svgs(doc: Mapping[str, Any], plots_dir: Path | None) -> list[tuple[str, str]] | None:
    """The plots as (name, SVG markup): from ``plots_dir`` when given (files of :func:`plots.render_all`), else
    rendered now; None when matplotlib is missing."""
    from pytest_longeff.report.plots import draw as plots

    if plots_dir is not None:
        files = [plots_dir / f"{name}.svg" for name in plots.figure_names(doc)]
        if files and all(p.is_file() for p in files):
            return [(p.stem, (t := p.read_text(encoding="utf-8"))[t.find("<svg"):]) for p in files]
    try:
        return plots.svg_figures(doc)
    except plots.MissingMatplotlib:
        return None


def plots_section(doc: Mapping[str, Any], plots_dir: Path | None, draw: bool = True) -> str:
    """Every plot inline, or a note that plots need the extra (or were switched off)."""
    if not draw:
        return '<p class="note" id="plots-off">Figures were not drawn for this run (--longeff-plots none).</p>'
    svgs = _svgs(doc, plots_dir)
    if svgs is None:
        return f'<p class="warn" id="plots-missing">{PLOTS_MISSING}</p>'
    if not svgs:
        return '<p class="note">No matrix cells: nothing to plot.</p>'
    from pytest_longeff.report.plots.draw import captions

    words = captions(doc)
    figs = [f'<figure{attr("id", "fig-" + name)}>{_prefix_ids(svg, html_attr(name))}<figcaption>'
            f"{esc(words.get(name, name))}</figcaption></figure>" for name, svg in svgs]
    return '<div class="figures">' + "\n".join(figs) + "</div>"


def pareto_section(doc: Mapping[str, Any]) -> str:
    """The Pareto fronts, from ``session.pareto`` or computed now."""
    from pytest_longeff.report.pareto import front

    pareto = lookup(doc, "session", "pareto") or front(doc)
    rows = [[esc(f.get("task")), esc(f.get("machine") or "-"), esc(f"{f.get('cost')} ({f.get('unit')})"),
             esc(", ".join(f.get("front") or []) or "none"), fmt(f.get("points")), esc(f.get("note") or "")]
            for f in pareto.get("fronts") or []]
    return (f'<p class="note">{esc(pareto.get("objective"))}</p>' +
            table(["task", "machine", "cost", "cells on the front", "cells compared", "note"], rows))


def _verdict_class(verdict: Any) -> str:
    return attr("class", "verdict-" + str(verdict).replace(" ", "-"))


def findings_section(doc: Mapping[str, Any]) -> str:
    """The study's claims and their verdicts (``session.findings``)."""
    found = lookup(doc, "session", "findings") or []
    if not found:
        return '<p class="note">No findings in this report.</p>'
    rows = [[f'<span{_verdict_class(f.get("verdict"))}>{esc(f.get("verdict"))}</span>',
             esc(f.get("claim")), esc(f.get("pairs")), esc(f.get("support")), esc(f.get("against")),
             esc(f.get("ties")), esc(f.get("evidence")), esc(f.get("cost")), esc(f.get("scope")),
             fmt(f.get("thresholds"))] for f in found]
    return table(["verdict", "claim", "compared", "for", "against", "within noise", "evidence", "cost compared",
                  "scope", "minimum effects"], rows, ' id="findings-table"')


def gate_section(cells: Sequence[Mapping[str, Any]]) -> str:
    """Every gate check of every record, and the records the gate refused."""
    rows = []
    for r in cells:
        gate = r.get("gate")
        if not isinstance(gate, Mapping):
            continue
        if gate.get("refused") or gate.get("note"):
            rows.append([esc(r.get("id")), "-", esc("refused" if gate.get("refused") else "not compared"),
                         NA, NA, NA, NA, esc(gate.get("refused") or gate.get("note"))])
        for c in gate.get("checks") or []:
            change = c.get("change")
            check_class = attr("class", f"check-{c.get('status')}")
            rows.append([esc(r.get("id")), esc(c.get("metric")), f"<span{check_class}>{esc(c.get('status'))}</span>",
                         fmt(c.get("baseline")), fmt(c.get("current")),
                         NA if change is None else esc(f"{change:+.1%}"), esc(f"{c.get('tolerance', 0):.0%}"),
                         esc(c.get("note"))])
    if not rows:
        return '<p class="note">No baseline was given: nothing was gated.</p>'
    return table(["cell", "metric", "verdict", "baseline", "current", "change", "tolerance", "note"], rows)


def methods_section(doc: Mapping[str, Any], cells: Sequence[dict[str, Any]]) -> str:
    """Every reported figure's unit, direction and method, then the run's method notes."""
    from pytest_longeff.report.tables import method_notes

    rows = [[esc(f.name), esc(f.header), esc(f.unit), esc("higher" if f.higher_is_better else "lower"),
             esc("yes" if f.gated else "no"), esc(f.method)] for f in FIGURES]
    notes = method_notes(cells, dict(doc.get("settings") or {}))
    return (table(["figure (JSON, CSV, JUnit, gate)", "matrix header", "unit", "better", "gateable", "method"], rows,
                  ' id="figure-methods"') +
            "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")


def _kv(mapping: Any, attrs: str) -> str:
    items = mapping.items() if isinstance(mapping, Mapping) else []
    return table(["key", "value"], [[esc(k), fmt(v)] for k, v in items], f' class="kv"{attrs}')


def environment_section(doc: Mapping[str, Any]) -> str:
    """The machine, software, settings and session counters."""
    session = {k: v for k, v in (doc.get("session") or {}).items() if k not in ("findings", "pareto")}
    machines = doc.get("machines") or []
    parts = [(name, doc.get(name)) for name in ("machine", "software", "settings")] + [("session", session)]
    if len(machines) > 1:  # a report merged from several machines: m1, m2... as the matrix names them
        parts[1:1] = [(f"machine m{i + 1}", facts) for i, facts in enumerate(machines)]
    return "".join(f"<h3>{esc(name)}</h3>" + _kv(value, attr("id", "env-" + name.replace(" ", "-")))
                   for name, value in parts)


def accuracy_banner(cells: Sequence[Mapping[str, Any]], profile: str = "") -> str:
    """What the scores mean, as the records say it (their weights: the shipped pretrained checkpoints, random init,
    published checkpoints); a warning where some scores do not rank models. Empty without cells."""
    from pytest_longeff.report.findings import accuracy_meaningful, accuracy_words

    words = accuracy_words(cells, profile)
    if not words:
        return ""
    kind = "note" if all(accuracy_meaningful(r) for r in cells) else "warn"
    return f'<p{attr("class", kind)} id="accuracy-meaning">What the scores mean: {esc(words)}.</p>'


# -- the page -------------------------------------------------------------------------------------------------------
def render_html(doc: Mapping[str, Any], plots_dir: Path | None = None, draw_plots: bool = True) -> str:
    """The page as one string (see :func:`write_html`)."""
    cells = _cells(doc)
    profile = lookup(doc, "settings", "profile") or "/".join(sorted({str(r.get("profile")) for r in cells}))
    warning = accuracy_banner(cells, profile)
    filters, matrix = matrix_section(cells)
    return Template(_asset("report.html")).substitute(
        title=esc(f"pytest-longeff: accuracy vs. efficiency ({len(cells)} cells, profile {profile})"),
        subtitle=esc(f"{lookup(doc, 'machine', 'device') or '?'}, {lookup(doc, 'machine', 'cpu') or '?'}; torch "
                     f"{lookup(doc, 'software', 'torch') or '?'}; schema {doc.get('schema_version')}"),
        warning=warning, filters=filters, matrix=matrix, plots=plots_section(doc, plots_dir, draw_plots),
        pareto=pareto_section(doc), findings=findings_section(doc), gate=gate_section(cells),
        methods=methods_section(doc, cells), environment=environment_section(doc),
        css=_asset("report.css"), js=_asset("report.js"))


def write_html(doc: dict[str, Any], path: Path, plots_dir: Path | None = None, draw_plots: bool = True) -> Path:
    """Write the report page to ``path`` (atomically) and return it. With ``plots_dir`` (where
    :func:`plots.render_all` wrote), its SVGs are inlined instead of rendering the plots again; ``draw_plots=False``
    leaves the figures out."""
    from pytest_longeff.record.io import atomic_write_text

    atomic_write_text(path, render_html(doc, plots_dir, draw_plots))
    return path

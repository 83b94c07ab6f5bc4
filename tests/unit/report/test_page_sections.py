"""The report page's sections, each rendered from a small hand-made report and compared with the HTML written out
by hand: every value escaped, every attribute quoted, n/a for what is missing."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.record.figures import FIGURES, FIGURES_BY_NAME
from pytest_longeff.report import page
from pytest_longeff.report.plots import draw as plots
from pytest_longeff.report.tables import MATRIX_COLUMNS, matrix_rows


def _head(*names: str) -> str:
    return "<thead><tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr></thead>"


def test_fmt_writes_numbers_lists_and_mappings_escaped() -> None:
    assert page.fmt(None) == "n/a" and page.fmt(True) == "True" and page.fmt(False) == "False"
    assert page.fmt(1.234567) == "1.235" and page.fmt(2) == "2" and page.fmt("<b>") == "&lt;b&gt;"
    assert page.fmt([1, "<a>"]) == "<code>[1, &quot;&lt;a&gt;&quot;]</code>"
    assert page.fmt((1, 2)) == "<code>[1, 2]</code>"
    assert page.fmt({"p": Path("a")}) == "<code>{&quot;p&quot;: &quot;a&quot;}</code>"  # default=str
    assert page.esc(None) == "n/a" and page.esc("a'b") == "a&#x27;b"


def test_table_escapes_headers_and_keeps_cells() -> None:
    assert page.table(["a<", "b"], [["<i>x</i>", "y"], ["1", "2"]], ' id="t"') == (
        '<table id="t"><thead><tr><th>a&lt;</th><th>b</th></tr></thead><tbody>\n'
        "<tr><td><i>x</i></td><td>y</td></tr>\n<tr><td>1</td><td>2</td></tr>\n</tbody></table>")
    assert page.table(["a"], []) == "<table><thead><tr><th>a</th></tr></thead><tbody>\n\n</tbody></table>"


def test_a_figure_header_names_its_figure_on_hover() -> None:
    score = next(c for c in MATRIX_COLUMNS if c.figure == "score")
    fig = FIGURES_BY_NAME["score"]
    title = html.escape(f"{fig.name} ({fig.unit}): {fig.method}")
    assert page._header(score) == f'<th scope="col" title="{title}">{html.escape(fig.header)}</th>'
    assert page._header(MATRIX_COLUMNS[0]) == '<th scope="col">cell</th>'


def _cell(cell_id: str, size: str, length: int, task: str | None = "qasper") -> dict[str, Any]:
    record = {"id": cell_id, "family": "led", "size": size, "seq_len": length, "status": "passed",
              "accuracy": {"score": 1.0}}
    return record if task is None else {**record, "task": task}


def test_the_matrix_rows_carry_their_coordinates_and_the_filters_list_each_value_once() -> None:
    cells = [_cell("c1", "large", 1024), _cell("c2", "base", 512, None), _cell("c3", "base", 1024)]
    filters, matrix = page.matrix_section(cells)
    assert filters == (
        '<label>family <select id="filter-family" data-filter="family"><option value="">all</option>'
        '<option value="led">led</option></select></label>'
        '<label>size <select id="filter-size" data-filter="size"><option value="">all</option>'
        '<option value="base">base</option><option value="large">large</option></select></label>'
        '<label>length <select id="filter-length" data-filter="length"><option value="">all</option>'
        '<option value="512">512</option><option value="1024">1024</option></select></label>'
        '<label>task <select id="filter-task" data-filter="task"><option value="">all</option>'
        '<option value="qasper">qasper</option></select></label>')
    _, rows = matrix_rows(cells)
    first = "".join(f"<td>{html.escape(v)}</td>" for v in rows[0])
    assert (f'<tr data-family="led" data-size="large" data-length="1024" data-task="qasper" class="status-passed">'
            f"{first}</tr>\n") in matrix
    assert '<tr data-family="led" data-size="base" data-length="512" data-task="n/a" class="status-passed">' in matrix
    assert matrix.startswith('<table id="matrix"><thead><tr><th scope="col">cell</th><th scope="col">status</th>')
    assert matrix.endswith("</tr>\n</tbody></table>") and matrix.count("<tr data-family") == 3


def test_a_filter_lists_values_of_several_types_numbers_first() -> None:
    filters, _ = page.matrix_section([_cell("c1", "base", 1024), _cell("c2", "base", "long"), _cell("c3", "base", 512)])
    assert ('<option value="">all</option><option value="512">512</option><option value="1024">1024</option>'
            '<option value="long">long</option></select>') in filters  # int before str, as the type names sort


def test_svg_ids_are_prefixed_per_figure() -> None:
    svg = '<g id="a"><use href="#a"/><path clip-path="url(#c)"/><g xid="z"/>'
    assert page._prefix_ids(svg, "p") == '<g id="p-a"><use href="#p-a"/><path clip-path="url(#p-c)"/><g xid="z"/>'


@pytest.fixture
def two_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "figure_names", lambda doc: ["a", "b"])
    monkeypatch.setattr(plots, "svg_figures", lambda doc: [("drawn", "<svg>now</svg>")])


@pytest.mark.usefixtures("two_figures")
def test_the_svgs_come_from_the_plots_dir_when_it_has_them_all(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.svg").write_text('<?xml version="1.0"?>\n<svg><svg>A</svg></svg>', encoding="utf-8")
    assert page._svgs({}, tmp_path) == [("drawn", "<svg>now</svg>")]  # b.svg missing: drawn now
    (tmp_path / "b.svg").write_text("<svg>B</svg>", encoding="utf-8")
    assert page._svgs({}, tmp_path) == [("a", "<svg><svg>A</svg></svg>"), ("b", "<svg>B</svg>")]
    assert page._svgs({}, None) == [("drawn", "<svg>now</svg>")]

    def missing(doc: Any) -> Any:
        raise plots.MissingMatplotlib("no matplotlib")

    monkeypatch.setattr(plots, "svg_figures", missing)
    assert page._svgs({}, None) is None


def test_the_plots_section_says_why_a_figure_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert page.plots_section({}, None, draw=False) == (
        '<p class="note" id="plots-off">Figures were not drawn for this run (--longeff-plots none).</p>')
    monkeypatch.setattr(page, "_svgs", lambda doc, plots_dir: None)
    assert page.plots_section({}, None) == f'<p class="warn" id="plots-missing">{page.PLOTS_MISSING}</p>'
    monkeypatch.setattr(page, "_svgs", lambda doc, plots_dir: [])
    assert page.plots_section({}, None) == '<p class="note">No matrix cells: nothing to plot.</p>'
    monkeypatch.setattr(page, "_svgs", lambda doc, plots_dir: [("t", '<svg id="x"/>'), ("u", "<svg/>")])
    monkeypatch.setattr(plots, "captions", lambda doc: {"t": "T <1>"})
    assert page.plots_section({}, None) == (
        '<div class="figures"><figure id="fig-t"><svg id="t-x"/><figcaption>T &lt;1&gt;</figcaption></figure>\n'
        '<figure id="fig-u"><svg/><figcaption>u</figcaption></figure></div>')


def test_the_pareto_section_lists_each_front() -> None:
    fronts = [{"task": "t<", "machine": None, "cost": "c", "unit": "J", "front": ["a", "b"], "points": [1],
               "note": None},
              {"task": "u", "machine": "m1", "cost": "d", "unit": "s", "front": [], "points": {"k": 2.5}, "note": "n"}]
    doc = {"session": {"pareto": {"objective": "o<", "fronts": fronts}}}
    assert page.pareto_section(doc) == (
        '<p class="note">o&lt;</p><table>'
        + _head("task", "machine", "cost", "cells on the front", "cells compared", "note") + "<tbody>\n"
        "<tr><td>t&lt;</td><td>-</td><td>c (J)</td><td>a, b</td><td><code>[1]</code></td><td></td></tr>\n"
        "<tr><td>u</td><td>m1</td><td>d (s)</td><td>none</td><td><code>{&quot;k&quot;: 2.5}</code></td>"
        "<td>n</td></tr>\n</tbody></table>")


def test_the_findings_section_shows_each_claim_and_its_verdict() -> None:
    assert page.findings_section({}) == '<p class="note">No findings in this report.</p>'
    finding = {"verdict": "does not hold", "claim": "c<", "pairs": 3, "support": 1, "against": 2, "ties": 0,
               "evidence": "e", "cost": "k", "scope": "s", "thresholds": {"score": 1}}
    assert page.findings_section({"session": {"findings": [finding]}}) == (
        '<table id="findings-table">'
        + _head("verdict", "claim", "compared", "for", "against", "within noise", "evidence", "cost compared",
                "scope", "minimum effects") + "<tbody>\n"
        '<tr><td><span class="verdict-does-not-hold">does not hold</span></td><td>c&lt;</td><td>3</td><td>1</td>'
        "<td>2</td><td>0</td><td>e</td><td>k</td><td>s</td><td><code>{&quot;score&quot;: 1}</code></td></tr>\n"
        "</tbody></table>")


def test_the_gate_section_shows_refusals_notes_and_every_check() -> None:
    assert page.gate_section([{"id": "x"}, {"id": "y", "gate": "z"}]) == (
        '<p class="note">No baseline was given: nothing was gated.</p>')
    cells = [{"id": "y", "gate": "not a mapping"}, {"id": "r<", "gate": {"refused": "other machine", "checks": []}},
             {"id": "n", "gate": {"note": "no baseline cell"}},
             {"id": "c", "gate": {"checks": [
                 {"metric": "score", "status": "failed", "baseline": 10.0, "current": 8.0, "change": -0.2,
                  "tolerance": 0.05, "note": "apart"},
                 {"metric": "m", "status": "unmeasured", "baseline": None, "current": None, "change": None,
                  "note": None}]}}]
    assert page.gate_section(cells) == (
        "<table>" + _head("cell", "metric", "verdict", "baseline", "current", "change", "tolerance", "note")
        + "<tbody>\n"
        "<tr><td>r&lt;</td><td>-</td><td>refused</td><td>n/a</td><td>n/a</td><td>n/a</td><td>n/a</td>"
        "<td>other machine</td></tr>\n"
        "<tr><td>n</td><td>-</td><td>not compared</td><td>n/a</td><td>n/a</td><td>n/a</td><td>n/a</td>"
        "<td>no baseline cell</td></tr>\n"
        '<tr><td>c</td><td>score</td><td><span class="check-failed">failed</span></td><td>10</td><td>8</td>'
        "<td>-20.0%</td><td>5%</td><td>apart</td></tr>\n"
        '<tr><td>c</td><td>m</td><td><span class="check-unmeasured">unmeasured</span></td><td>n/a</td><td>n/a</td>'
        "<td>n/a</td><td>0%</td><td>n/a</td></tr>\n</tbody></table>")


def test_the_methods_section_lists_every_figure_and_the_runs_notes() -> None:
    rows = "".join(
        f"<tr><td>{f.name}</td><td>{html.escape(f.header)}</td><td>{html.escape(f.unit)}</td>"
        f"<td>{'higher' if f.higher_is_better else 'lower'}</td><td>{'yes' if f.gated else 'no'}</td>"
        f"<td>{html.escape(f.method)}</td></tr>\n" for f in FIGURES)
    section = page.methods_section({"settings": {"profile": "p<"}}, [])
    assert section.startswith('<table id="figure-methods">' + _head(
        "figure (JSON, CSV, JUnit, gate)", "matrix header", "unit", "better", "gateable", "method") + "<tbody>\n")
    assert rows in section and {"yes", "no"} <= {"yes" if f.gated else "no" for f in FIGURES}
    assert {True, False} <= {f.higher_is_better for f in FIGURES}
    assert "</tbody></table><ul><li>score: SCROLLS metric" in section
    assert section.endswith("</li><li>training budget: None; memory budget: not recorded (None); profile p&lt;</li></ul>")


@pytest.mark.usefixtures("two_figures")
def test_write_html_inlines_the_plots_dirs_figures(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.svg").write_text(f"<svg>{name} from the folder</svg>", encoding="utf-8")
    doc = {"schema_version": 2, "records": [], "settings": {"profile": "tiny"}}
    text = page.write_html(doc, tmp_path / "r.html", tmp_path).read_text(encoding="utf-8")
    assert "<svg>a from the folder</svg>" in text and "<svg>now</svg>" not in text


def test_write_html_writes_the_page_it_renders(tmp_path: Path) -> None:
    doc = {"schema_version": 2, "records": [], "settings": {"profile": "tiny"}}
    path = page.write_html(doc, tmp_path / "r.html", draw_plots=False)
    assert path == tmp_path / "r.html"
    text = path.read_text(encoding="utf-8")
    assert text == page.render_html(doc, None, False) and 'id="plots-off"' in text
    assert "<title>pytest-longeff: accuracy vs. efficiency (0 cells, profile tiny)</title>" in text


def test_the_environment_section_shows_each_machine_and_leaves_the_long_parts_to_their_sections() -> None:
    doc = {"machine": {"device": "cpu"}, "machines": [{"device": "cpu"}, {"device": "cuda:0"}],
           "software": {"torch": "2.5"}, "settings": "not a mapping",
           "session": {"wall_s": 1.5, "findings": [1], "pareto": {}}}

    def kv(name: str, rows: str) -> str:
        return (f'<h3>{name}</h3><table class="kv" id="env-{name.replace(" ", "-")}">{_head("key", "value")}'
                f"<tbody>\n{rows}\n</tbody></table>")

    assert page.environment_section(doc) == (
        kv("machine", "<tr><td>device</td><td>cpu</td></tr>")
        + kv("machine m1", "<tr><td>device</td><td>cpu</td></tr>")
        + kv("machine m2", "<tr><td>device</td><td>cuda:0</td></tr>")
        + kv("software", "<tr><td>torch</td><td>2.5</td></tr>")
        + kv("settings", "") + kv("session", "<tr><td>wall_s</td><td>1.5</td></tr>"))
    assert page.environment_section({"machines": [{"device": "cpu"}]}).count("<h3>") == 4  # one machine: no m1


def test_the_accuracy_banner_reads_a_records_profile_from_the_run() -> None:
    from pytest_longeff.report.findings import accuracy_meaningful, accuracy_words

    assert page.accuracy_banner([]) == ""
    cells = [{"id": "c", "family": "led", "size": "base"}]
    for profile in ("tiny", "paper"):
        kind = "note" if accuracy_meaningful(cells[0]) else "warn"
        words = html.escape(accuracy_words(cells, profile))
        assert page.accuracy_banner(cells, profile) == (
            f'<p class="{kind}" id="accuracy-meaning">What the scores mean: {words}.</p>')
    assert page.accuracy_banner(cells, "tiny") != page.accuracy_banner(cells, "paper")


def test_the_page_holds_every_section_its_title_and_its_assets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(page, "_svgs", lambda doc, plots_dir: [])
    doc = {"schema_version": 2, "machine": {"device": "cuda:0", "cpu": "Xeon"}, "software": {"torch": "2.5"},
           "settings": {}, "records": [{**_cell("c1", "base", 512), "profile": "b"},
                                       {**_cell("c2", "base", 512), "profile": "a"}]}
    text = page.render_html(doc)
    cells = doc["records"]
    assert "<title>pytest-longeff: accuracy vs. efficiency (2 cells, profile a/b)</title>" in text
    assert '<p class="note">cuda:0, Xeon; torch 2.5; schema 2</p>' in text
    for part in (page.accuracy_banner(cells, "a/b"), *page.matrix_section(cells), page.pareto_section(doc),
                 page.findings_section(doc), page.gate_section(cells), page.methods_section(doc, cells),
                 page.environment_section(doc), page._asset("report.css"), page._asset("report.js"),
                 '<p class="note">No matrix cells: nothing to plot.</p>'):
        assert part and part in text, part[:80]
    doc["settings"]["profile"] = "tiny"  # the run's profile stands in for a record without one
    del cells[0]["profile"]
    assert page.accuracy_banner(cells, "tiny") in page.render_html(doc)
    assert page.accuracy_banner(cells, "tiny") != page.accuracy_banner(cells, "")
    bare = page.render_html({"records": []}, draw_plots=False)
    assert "(0 cells, profile )</title>" in bare and '<p class="note">?, ?; torch ?; schema None</p>' in bare

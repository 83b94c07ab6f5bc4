"""A hostile report (a cell id, a task, a reason holding a line break, a workflow command, a ``|`` and HTML) reaches
no output raw: the terminal matrix and windows, the Markdown report, the job summary, the pull-request comment, the
GitHub annotations and the HTML page."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from support.report_variants import gated, matrix

from pytest_longeff.config.settings import Settings
from pytest_longeff.report import page
from pytest_longeff.report.findings import claim_line
from pytest_longeff.report.github import error_annotations, summary_markdown, write_ci_outputs
from pytest_longeff.report.plots import draw as plots
from pytest_longeff.report.tables import method_notes, render_markdown, render_matrix, render_windows

PAYLOAD = "a\n::add-mask::pwned\r::error::x|y<img src=x onerror=alert(1)>"
QUOTED = 'q" onerror="alert(2)" x=\'' + PAYLOAD  # ends a quoted attribute early if it were not escaped


def assert_no_workflow_command(out: str, allowed: tuple[str, ...] = ()) -> None:
    """No line, split where the runner splits (``\\r``, ``\\n``) or where Python does, starts a workflow command
    after its leading whitespace (``allowed``: the project's own annotation lines)."""
    lines = [*re.split(r"\r\n|[\r\n]", out), *out.splitlines()]
    commands = [line for line in lines if line.lstrip().startswith("::") and not line.startswith(allowed)]
    assert commands == []
    assert "##[" not in out and "\r" not in out and "pwned\n" not in out


def hostile_records() -> list[dict[str, Any]]:
    doc = gated(matrix(2))
    first, second = doc["records"]
    first.update(id=PAYLOAD, task=QUOTED, status=PAYLOAD)
    second["gate"]["checks"][0].update(status="failed", note=PAYLOAD)
    second["train"]["energy_note"] = PAYLOAD
    second["train"]["energy_valid"] = False
    return [first, second]


def _pipes(line: str) -> int:
    """The ``|`` that an odd number of backslashes does not precede: the cell borders of a Markdown row."""
    return sum(1 for m in re.finditer(r"(\\*)\|", line) if len(m.group(1)) % 2 == 0)


def assert_markdown_tables_hold(text: str) -> None:
    """Every row of every table has as many cell borders as its header; no raw HTML, no carriage return."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            width = _pipes(line)
            rows = [r for r in lines[i:] if r.startswith("|")]
            for row in rows[:next((n for n, r in enumerate(lines[i:]) if not r.startswith("|")), len(rows))]:
                assert _pipes(row) == width, row
    assert "<img" not in text and "\r" not in text
    assert_no_workflow_command(text)


# -- terminal ---------------------------------------------------------------------------------------------------------
def test_the_terminal_matrix_and_notes_show_a_hostile_cell_id_escaped() -> None:
    records = hostile_records()
    out = render_matrix(records)
    assert_no_workflow_command(out)
    assert "a\\n::add-mask::pwned\\r::error::x|y<img src=x onerror=alert(1)>" in out
    assert len(out.splitlines()) == 2 + len(records)  # header, rule, one line per cell
    narrow = render_matrix(records, width=60)
    assert_no_workflow_command(narrow)
    notes = method_notes(records, {"profile": "::error::p\n::add-mask::q", "train_budget": {"spec": PAYLOAD}})
    assert all(len(n.splitlines()) == 1 for n in notes)
    assert_no_workflow_command("\n".join(notes))
    assert "profile ::error::p\\n::add-mask::q" in notes[-1]


def test_the_windows_table_shows_hostile_names_escaped() -> None:
    record = {"id": PAYLOAD, "status": "passed", "windows": {
        "::error::w\n::add-mask::v": {"repeats": 2, "time_s": 0.5, "energy_j": 1.0, "energy_method": PAYLOAD,
                                      "memory_method": "\n::error::m"}}}
    out = render_windows([record])
    assert_no_workflow_command(out)
    assert "\\::error::w\\n::add-mask::v" in out and "(\\n::error::m)" in out


def test_a_finding_read_back_from_a_report_is_one_line() -> None:
    line = claim_line({"verdict": "holds\n::add-mask::x", "claim": PAYLOAD, "pairs": 1, "support": 1})
    assert len(line.splitlines()) == 1 and line.startswith("holds\\n::add-mask::x: a\\n::add-mask::pwned")


# -- Markdown ---------------------------------------------------------------------------------------------------------
def test_the_markdown_report_keeps_its_table_whole() -> None:
    records = hostile_records()
    text = render_markdown(records, {"profile": "::error::p\n# heading", "memory_budget_source": "<b>"})
    assert_markdown_tables_hold(text)
    row = next(line for line in text.splitlines() if "add-mask" in line and line.startswith("|"))
    assert row.startswith("| a ::add-mask::pwned ::error::x\\|y&lt;img src=x onerror=alert(1)&gt; |")
    assert "\n# heading" not in text and "&lt;b&gt;" in text and "<b>" not in text


def test_the_job_summary_and_the_pull_request_comment_keep_their_tables_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = gated(matrix(2))
    doc["records"] = hostile_records()
    doc["session"] = {"gate": {"fdr": [{"cell": PAYLOAD, "metric": "score", "verdict": "regression", "q": 0.01,
                                        "reason": "<script>x</script>\r\n::error::r"}],
                               "suite": {PAYLOAD: {"metric": PAYLOAD, "verdict": "failed", "reason": PAYLOAD}},
                               "lost": [PAYLOAD]}}
    summary = summary_markdown(doc)
    assert_markdown_tables_hold(summary)
    assert "<script>" not in summary and "&lt;script&gt;" in summary
    assert summary.count("a ::add-mask::pwned ::error::x\\|y&lt;img") >= 4  # regressions, suite and matrix
    step = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    settings = cast(Settings, SimpleNamespace(json_path="r.json", benchmark_json=None))
    comment_path, _ = write_ci_outputs(doc, settings, root=tmp_path)
    comment = Path(comment_path).read_text(encoding="utf-8")
    assert_markdown_tables_hold(comment)
    assert step.read_text(encoding="utf-8") == summary


# -- GitHub annotations -----------------------------------------------------------------------------------------------
def test_an_annotation_is_one_command_whatever_its_cell_and_reason() -> None:
    check = {"metric": "train_samples_per_s", "status": "failed", "baseline": 10.0, "current": 4.0, "change": -0.6,
             "tolerance": 0.1, "note": "50%, " + PAYLOAD}
    (line,) = error_annotations({"records": [{"id": "c,d: " + PAYLOAD, "gate": {"checks": [check]}}]})
    assert line == ("::error title=longeff regression%3A c%2Cd%3A a%0A%3A%3Aadd-mask%3A%3Apwned%0D%3A%3Aerror%3A%3A"
                    "x|y<img src=x onerror=alert(1)> train_samples_per_s::baseline 10, current 4, change -60.0%25, "
                    "tolerance 10%25: 50%25, a%0A::add-mask::pwned%0D::error::x|y<img src=x onerror=alert(1)>")
    assert_no_workflow_command(line, allowed=("::error title=longeff regression%3A",))


# -- HTML -------------------------------------------------------------------------------------------------------------
class Elements(HTMLParser):
    """Every start tag with its attributes, and the text between tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser


def test_the_page_holds_a_hostile_id_as_text_and_a_hostile_task_inside_its_attributes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(doc: Any) -> Any:
        raise plots.MissingMatplotlib("no matplotlib")

    monkeypatch.setattr(plots, "svg_figures", missing)
    doc = gated(matrix(2))
    doc["records"] = hostile_records()
    doc["settings"]["profile"] = QUOTED
    parsed = _parse(page.render_html(doc))
    assert not [(tag, attrs) for tag, attrs in parsed.tags if "onerror" in attrs or "x" in attrs]
    assert not [tag for tag, _ in parsed.tags if tag == "img"]
    assert [tag for tag, _ in parsed.tags].count("script") == 1
    rows = [attrs for tag, attrs in parsed.tags if tag == "tr" and "data-task" in attrs]
    assert rows[0]["data-task"] == QUOTED and rows[0]["class"] == f"status-{PAYLOAD}"
    assert [attrs["value"] for tag, attrs in parsed.tags if tag == "option" and attrs.get("value") == QUOTED]
    assert any(PAYLOAD in t for t in parsed.text)  # the id, whole, as text
    assert not [attrs for _, attrs in parsed.tags if any(PAYLOAD in (v or "") for k, v in attrs.items()
                                                         if k not in ("data-task", "class", "value"))]


def test_every_attribute_on_the_page_is_quoted_and_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(doc: Any) -> Any:
        raise plots.MissingMatplotlib("no matplotlib")

    monkeypatch.setattr(plots, "svg_figures", missing)
    doc = copy.deepcopy(gated(matrix(2)))
    for r in doc["records"]:
        r.update(family=QUOTED, size=QUOTED, seq_len=QUOTED, status=QUOTED)
        r["gate"]["checks"][0]["status"] = QUOTED
    doc["session"] = {"findings": [{"verdict": QUOTED, "claim": "c"}]}
    html = page.render_html(doc)
    attributes = re.findall(r"<[a-z]+((?:\s[^>]*)?)>", html)
    for attrs in attributes:  # each value double-quoted; no quote, < or > inside a value
        assert re.fullmatch(r'(\s+[a-z-]+="[^"<>]*")*', attrs), attrs
    parsed = _parse(html)
    assert not [attrs for _, attrs in parsed.tags if "onerror" in attrs or "x" in attrs]
    assert page.attr("data-x", None) == ' data-x="n/a"'

"""CI-native outputs of a run: GitHub job summary, error annotations, a pull-request comment, and files for
github-action-benchmark.

Pure functions over a JSON report's dict form, plus :func:`write_ci_outputs`, which the controller calls once at
session end with the final report. Annotations (``::error ...``) must reach stdout to be read by GitHub: they are
returned as strings (:func:`error_annotations`) for the caller to write through the terminal reporter, and printed by
``pytest-longeff compare`` itself.

Every string from a report is escaped for its medium by :mod:`pytest_longeff.text`: an annotation's title by
:func:`~pytest_longeff.text.workflow_property` and its message by :func:`~pytest_longeff.text.workflow_data`, a
cell of the Markdown tables (job summary, pull-request comment) by :func:`~pytest_longeff.text.markdown_cell`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_longeff.record.figures import FIGURES, Figure
from pytest_longeff.record.sections import is_cell, lookup
from pytest_longeff.text import markdown_cell, workflow_data, workflow_property

if TYPE_CHECKING:
    from pytest_longeff.config.settings import Settings
    from pytest_longeff.gate.suite import RunVerdict

STEP_SUMMARY_LIMIT = 1024 * 1024  # GitHub's limit on one step's summary, in bytes
COMMENT_LIMIT = 65_000  # a pull-request comment holds at most 65,536 characters
MAX_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step
SMALLER_FILE, BIGGER_FILE = "longeff-smaller-is-better.json", "longeff-bigger-is-better.json"
REGRESSION_HEADERS = ["cell", "metric", "baseline", "current", "change", "tolerance", "verdict", "why"]


def _num(value: Any, spec: str = ".4g") -> str:
    return "n/a" if not isinstance(value, (int, float)) else format(value, spec)


def regression_items(checks: Iterable[tuple[str, Mapping[str, Any]]],
                     run: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every regression and acknowledged change: per-cell failures, FDR regressions, failed suite rules; one item
    per (cell, metric), failures before acknowledgements."""
    items: dict[tuple[str | None, str], dict[str, Any]] = {}  # the suite's key: None, never a cell's id
    for cell, c in checks:
        if c.get("status") in ("failed", "acknowledged"):
            items[(cell, str(c.get("metric")))] = {**c, "cell": cell, "verdict": c.get("status"), "why": c.get("note")}
    for v in (run or {}).get("fdr", []):
        if v.get("verdict") != "ok" and (v["cell"], v["metric"]) not in items:
            items[(v["cell"], v["metric"])] = {**v, "why": v.get("reason") or f"FDR q={v.get('q', 0):.3g}"}
    for s in ((run or {}).get("suite") or {}).values():
        if s.get("verdict") in ("failed", "acknowledged"):
            items[(None, s["metric"])] = {**s, "cell": "suite (geometric mean)", "baseline": None,
                                             "current": s.get("geomean_ratio"), "why": s.get("reason")}
    for cell in (run or {}).get("lost", []):
        items[(cell, "status")] = {"cell": cell, "metric": "status", "verdict": "failed",
                                   "why": "passed in the baseline, now skipped or errored"}
    return sorted(items.values(), key=lambda i: i.get("verdict") == "acknowledged")


def doc_regressions(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """:func:`regression_items` of a report: its records' gate sections and its ``session.gate``."""
    checks = [(str(r.get("id")), c) for r in doc.get("records", []) for c in (r.get("gate") or {}).get("checks", [])]
    return regression_items(checks, (doc.get("session") or {}).get("gate"))


def annotation(item: Mapping[str, Any]) -> str:
    """One GitHub error annotation (workflow command) for a regression."""
    title = f"longeff regression: {item.get('cell')} {item.get('metric')}"
    message = (f"baseline {_num(item.get('baseline'))}, current {_num(item.get('current'))}, change "
               f"{_num(item.get('change'), '+.1%')}, tolerance {_num(item.get('tolerance'), '.0%')}: {item.get('why')}")
    return f"::error title={workflow_property(title)}::{workflow_data(message)}"


def error_annotations(doc: Mapping[str, Any], limit: int = MAX_ANNOTATIONS) -> list[str]:
    """Error annotations for the report's unacknowledged regressions, at most ``limit`` (a last one counts the
    rest)."""
    return _limited([i for i in doc_regressions(doc) if i.get("verdict") != "acknowledged"], limit)


def annotations_from_checks(checks: Iterable[tuple[str, Mapping[str, Any]]], run: RunVerdict,
                            limit: int = MAX_ANNOTATIONS) -> list[str]:
    """Error annotations from ``pytest-longeff compare``'s comparison."""
    items = regression_items(checks, run.to_dict())
    return _limited([i for i in items if i.get("verdict") != "acknowledged"], limit)


def _limited(items: Sequence[Mapping[str, Any]], limit: int) -> list[str]:
    if len(items) <= limit:
        return [annotation(i) for i in items]
    rest = len(items) - limit + 1
    return [*(annotation(i) for i in items[:limit - 1]),
            f"::error title=longeff regressions::{rest} more regressions: see the job summary or the JSON report"]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, every cell through :func:`text.markdown_cell`."""
    def cells(row: Sequence[str]) -> str:
        return "| " + " | ".join(markdown_cell(c) for c in row) + " |"

    return [cells(headers), "|" + "---|" * len(headers), *(cells(r) for r in rows)]


def regressions_markdown(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The regressions as a Markdown table (never truncated)."""
    if not items:
        return ["No regression against the baseline."]
    rows = [[str(i.get("cell")), str(i.get("metric")), _num(i.get("baseline")), _num(i.get("current")),
             _num(i.get("change"), "+.1%"), _num(i.get("tolerance"), ".0%"), str(i.get("verdict")), str(i.get("why"))]
            for i in items]
    return _table(REGRESSION_HEADERS, rows)


def suite_markdown(run: Mapping[str, Any] | None) -> list[str]:
    """The suite rule per metric as a Markdown table (empty without a gate)."""
    suite = (run or {}).get("suite") or {}
    rows = [[m, str(s.get("cells")), _num(s.get("change"), "+.1%"), _num(s.get("tolerance"), ".0%"),
             str(s.get("verdict"))] for m, s in suite.items()]
    return _table(["metric", "cells", "geomean change", "tolerance", "suite"], rows) if rows else []


def _matrix(doc: Mapping[str, Any], budget: int) -> list[str]:
    """The matrix table within ``budget`` bytes, with a note when rows were left out."""
    from pytest_longeff.record.sections import is_cell
    from pytest_longeff.report.tables import matrix_rows

    headers, rows = matrix_rows([r for r in doc.get("records", []) if is_cell(r)])
    lines = _table(headers, [])
    used = sum(len(x.encode()) + 1 for x in lines) + 200  # room for the note
    shown = 0
    for line in _table(headers, rows)[2:]:
        used += len(line.encode()) + 1
        if used > budget:
            break
        lines.append(line)
        shown += 1
    if shown < len(rows):
        lines += ["", f"_Matrix truncated: {shown} of {len(rows)} cells shown; the JSON report has them all._"]
    return lines


def _inconclusive(doc: Mapping[str, Any]) -> int:
    """How many per-cell checks and suite rules of the report are inconclusive."""
    checks = sum(c.get("status") == "inconclusive" for r in doc.get("records", []) if isinstance(r, Mapping)
                 for c in ((r.get("gate") or {}).get("checks") or []) if isinstance(c, Mapping))
    suite = ((doc.get("session") or {}).get("gate") or {}).get("suite") or {}
    return checks + sum(isinstance(v, Mapping) and v.get("verdict") == "inconclusive" for v in suite.values())


def summary_markdown(doc: Mapping[str, Any], limit: int = STEP_SUMMARY_LIMIT) -> str:
    """The job summary: regressions first (whole), the suite rule, then the matrix as far as ``limit`` allows."""
    run = (doc.get("session") or {}).get("gate")
    items = doc_regressions(doc)
    failed = sum(i.get("verdict") == "failed" for i in items)
    unresolved = _inconclusive(doc)
    gate_line = f"**Gate: {failed} regression{'s' if failed != 1 else ''}**" + (
        f"; **INCONCLUSIVE**: {unresolved} check(s) or suite rule(s) could not resolve the tolerance"
        if unresolved and not failed else "")
    head = ["## pytest-longeff", "",
            gate_line if run or items else "No baseline given.", "",
            "### Regressions", "", *regressions_markdown(items), "", *suite_markdown(run), "", "### Matrix", ""]
    text = "\n".join(head) + "\n"
    return text + "\n".join(_matrix(doc, limit - len(text.encode()))) + "\n"


def benchmark_entries(doc: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """github-action-benchmark entries ``(customSmallerIsBetter, customBiggerIsBetter)``: one per cell and figure
    of :data:`record.FIGURES`, leaving out unmeasured figures and invalid, coarse or estimated energy."""
    smaller: list[dict[str, Any]] = []
    bigger: list[dict[str, Any]] = []
    for rec in doc.get("records", []):
        if not is_cell(rec) or rec.get("status") not in ("passed", "failed"):
            continue
        for fig in FIGURES:
            entry = benchmark_entry(rec, fig)
            if entry is not None:
                (bigger if fig.higher_is_better else smaller).append(entry)
    return smaller, bigger


def benchmark_entry(record: Mapping[str, Any], fig: Figure) -> dict[str, Any] | None:
    """One github-action-benchmark entry (name, unit, value, range, extra), or None where it is not a measurement."""
    value = fig.value(record)
    if value is None:
        return None
    extra = f"method {fig.method}"
    if fig.energy_part is not None:
        section = lookup(record, *fig.energy_part.split(".")) or {}
        if (not section.get("energy_valid") or section.get("energy_coarse")
                or section.get("energy_method") == "estimate"):
            return None
        extra += f" ({section.get('energy_method')})"
    entry: dict[str, Any] = {"name": f"{record.get('id')} {fig.name}", "unit": fig.unit, "value": value}
    ci = lookup(record, *fig.ci_path) if fig.ci_path else None
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        entry["range"] = f"± {(ci[1] - ci[0]) / 2:.4g}"
        extra += f"; 95% CI [{ci[0]:.4g}, {ci[1]:.4g}]"
    entry["extra"] = extra
    return entry


def _write(path: Path, text: str) -> str:
    from pytest_longeff.record.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return str(path)


def write_ci_outputs(doc: dict[str, Any], settings: Settings, root: Path | None = None) -> list[str]:
    """Write the CI outputs of a finished run and return the paths written: the pull-request comment beside the JSON
    report (``<stem>-comment.md``), the job summary appended to ``$GITHUB_STEP_SUMMARY`` when set, and with
    ``--longeff-benchmark-json DIR`` the two github-action-benchmark files. ``root``: what relative paths in
    ``settings`` are relative to (default: the working directory)."""
    base = root or Path.cwd()
    report = base / settings.json_path
    run = (doc.get("session") or {}).get("gate")
    comment = ["## pytest-longeff", "", *regressions_markdown(doc_regressions(doc)), "", *suite_markdown(run), "",
               "<details><summary>Matrix</summary>", ""]
    text = "\n".join(comment) + "\n"
    text += "\n".join(_matrix(doc, COMMENT_LIMIT - len(text.encode()) - 20)) + "\n\n</details>\n"
    written = [_write(report.with_name(report.stem + "-comment.md"), text)]
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        path = Path(summary)
        used = path.stat().st_size if path.exists() else 0
        with path.open("a", encoding="utf-8") as fh:  # appended: other steps' summaries share the file
            fh.write(summary_markdown(doc, STEP_SUMMARY_LIMIT - used))
        written.append(str(path))
    if settings.benchmark_json:
        out = base / settings.benchmark_json
        smaller, bigger = benchmark_entries(doc)
        written.append(_write(out / SMALLER_FILE, json.dumps(smaller, indent=1) + "\n"))
        written.append(_write(out / BIGGER_FILE, json.dumps(bigger, indent=1) + "\n"))
    return written

"""An A/B report as text: the run's verdict, one row per cell and figure, the suite per figure, and the operators
whose work changed (as a profiler diff reads).

A report is read back from a file, so every string in it (cell ids, notes, directories, errors, operator diffs) is
escaped for the medium: :func:`~pytest_longeff.text.for_terminal` for text, and
:func:`~pytest_longeff.text.markdown_cell` / :func:`~pytest_longeff.text.markdown_text` for Markdown; the text as a
whole passes :func:`~pytest_longeff.text.safe_lines`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pytest_longeff.text import for_terminal, markdown_cell, markdown_text, safe_lines

HEADERS = ["cell", "figure", "change", "95% interval", "pairs", "rounds", "verdict"]
SUITE_HEADERS = ["figure", "change (all cells)", "95% interval", "pairs", "verdict"]


def _pct(v: Any) -> str:
    return "n/a" if not isinstance(v, (int, float)) else f"{v:+.1%}"


def _row(cell: str, j: Mapping[str, Any]) -> list[str]:
    if j.get("figure") == "work":
        detail = "; ".join(j.get("grew") or []) or "same work"
        return [cell, "work (exact)", detail, "", "", "", str(j["verdict"])]
    if j.get("figure") in ("batch_size", "runs"):
        return [cell, str(j["figure"]), str(j.get("note")), "", "", "", str(j["verdict"])]
    verdict = str(j["verdict"])
    if verdict == "inconclusive" and j.get("resolvable") is not None:
        verdict += f" (resolves ±{j['resolvable']:.1%})"
    if j.get("note"):
        verdict += f"; {j['note']}"
    return [cell, str(j["figure"]), _pct(j.get("change")), f"[{_pct(j.get('low'))}, {_pct(j.get('high'))}]",
            str(j.get("pairs", "")), str(j.get("rounds", "")), verdict]


def render(report: Mapping[str, Any], fmt: str = "simple", heading: str = "") -> str:
    """The report's verdicts as text tables (``fmt``: a tabulate format, "github" for Markdown); ``heading`` (the
    caller's own) goes first, as it is."""
    from tabulate import tabulate

    markdown = fmt == "github"
    cell_text: Callable[[Any], str] = markdown_cell if markdown else for_terminal
    line: Callable[[Any], str] = markdown_text if markdown else for_terminal
    cells: Mapping[str, Any] = report.get("cells") or {}
    rows = [[cell_text(v) for v in _row(cell, j)] for cell, c in cells.items() for j in c.get("verdicts") or []]
    rows.sort(key=lambda r: 0 if r[-1].startswith("regression") else 1 if r[-1].startswith("inconclusive") else 2)
    suite = [[str(s["figure"]), _pct(s.get("change")), f"[{_pct(s.get('low'))}, {_pct(s.get('high'))}]",
              str(s.get("pairs")), str(s["verdict"]) + (f" (resolves ±{s['resolvable']:.1%})"
                                                        if s["verdict"] == "inconclusive" and s.get("resolvable")
                                                        else "")] for s in report.get("suite") or []]
    suite = [[cell_text(v) for v in row] for row in suite]
    verdict = str(report.get("verdict", "inconclusive")).upper()
    sides = report.get("sides") or {}
    parts = [heading + line(f"longeff A/B gate: {verdict} after {report.get('pairs_done', 0)} process pairs "
                            f"({report.get('wall_s', 0):.0f} s; base {(sides.get('base') or {}).get('directory')}, "
                            f"head {(sides.get('head') or {}).get('directory')}); changes are head vs base, "
                            "negative rates are slower")
             + (line(f"; stopped: {report['stopped']}") if report.get("stopped") else ""),
             tabulate(rows, HEADERS, tablefmt=fmt, disable_numparse=True)]
    if suite:
        parts.append(tabulate(suite, SUITE_HEADERS, tablefmt=fmt, disable_numparse=True))
    for cell, c in cells.items():
        if c.get("error"):
            parts.append(line(f"error: {cell}: {c['error']}"))
        for j in c.get("verdicts") or []:
            if j.get("figure") == "work" and j.get("diff"):
                parts.append(line(f"work diff, {cell} (per unit, base -> head):") + "\n"
                             + "\n".join(f"{'-' if markdown else ' '} {line(d)}" for d in j["diff"]))
    if report.get("error"):
        parts.append(line(f"error: {report['error']}"))
    text = "\n\n".join(parts) + "\n"
    return text if markdown else safe_lines(text)

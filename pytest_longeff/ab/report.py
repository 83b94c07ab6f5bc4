"""A saved A/B report read back: ``pytest-longeff show AB.json`` prints its verdicts, ``pytest-longeff compare
AB.json [--fail-on SPEC]`` judges its rounds again (at other tolerances, say) and exits as ``ab`` does.

The report keeps every round of both sides, so a later judgement needs no measurement: it is the live run's
:func:`~pytest_longeff.ab.judge.judge_cells` over the same plain data, with the round budget counted as spent.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_longeff.record.io import DEBUG_ENV, ReportError, read_json
from pytest_longeff.text import for_terminal

KIND = "longeff-ab"
SCHEMA_VERSION = 1
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def peek_kind(path: Path) -> str | None:
    """The ``kind`` a JSON report declares (None: unreadable, not an object, or none declared); reads nothing else.
    The file is read within the limits of :func:`pytest_longeff.record.io.read_json`."""
    try:
        doc = read_json(path)
    except ReportError:
        return None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_answer(where: str, answer: Any) -> None:
    if not isinstance(answer, dict):
        raise ReportError(f"{where}: expected an object")
    for key in ("units", "time_s", "peak_memory_bytes"):
        if answer.get(key) is not None and not (_number(answer[key]) and answer[key] >= 0):
            raise ReportError(f"{where}.{key}: expected a finite number >= 0, got {answer[key]!r:.60}")
    energy = answer.get("energy")
    if energy is not None and (not isinstance(energy, dict) or (energy.get("energy_j") is not None
                                                                 and not _number(energy["energy_j"]))):
        raise ReportError(f"{where}.energy: expected an object with a finite energy_j")


def _check_verdicts(where: str, verdicts: Any) -> None:
    if not isinstance(verdicts, list):
        raise ReportError(f"{where}: expected a list")
    for i, v in enumerate(verdicts):
        if not isinstance(v, dict) or not isinstance(v.get("verdict"), str) or not isinstance(v.get("figure"), str):
            raise ReportError(f"{where}[{i}]: expected an object with figure and verdict")
        for key in ("change", "low", "high", "resolvable", "q", "p_worse"):
            if v.get(key) is not None and not _number(v[key]):
                raise ReportError(f"{where}[{i}].{key}: expected a finite number or null, got {v[key]!r:.60}")
        for key in ("grew", "diff"):
            if v.get(key) is not None and not (isinstance(v[key], list) and all(isinstance(x, str) for x in v[key])):
                raise ReportError(f"{where}[{i}].{key}: expected a list of strings")


def _check_work(where: str, work: Any) -> None:
    if not isinstance(work, dict):
        raise ReportError(f"{where}: expected an object")
    for side in ("base", "head"):
        if not isinstance(work.get(side) or {}, dict):
            raise ReportError(f"{where}.{side}: expected an object of window kind -> counts")
        for kind, section in (work.get(side) or {}).items():
            ops = section.get("ops") if isinstance(section, dict) else None
            if not isinstance(ops, dict) or not _number(section.get("units")) or section["units"] <= 0:
                raise ReportError(f"{where}.{side}.{kind}: expected units > 0 and an ops object")
            for op, counts in ops.items():
                if not (isinstance(counts, list) and len(counts) == 3 and all(map(_number, counts))):
                    raise ReportError(f"{where}.{side}.{kind}.ops[{op!r:.40}]: expected [calls, flops, bytes]")


def check_ab(doc: Any, name: str) -> dict[str, Any]:
    """``doc`` if it is an A/B report whose every part a reader walks has the expected type; else
    :class:`ReportError` naming the file and the field."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ReportError(f"{name}: not a pytest-longeff A/B report (kind {KIND!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ReportError(f"{name}: A/B report schema_version {doc.get('schema_version')!r}; this pytest-longeff "
                          f"reads {SCHEMA_VERSION}")
    cells = doc.get("cells")
    if not isinstance(cells, dict):
        raise ReportError(f"{name}: cells: expected an object of cell id -> cell")
    for key in ("wall_s", "pairs_done"):
        if doc.get(key) is not None and not (_number(doc[key]) and doc[key] >= 0):
            raise ReportError(f"{name}: {key}: expected a finite number >= 0, got {doc[key]!r:.60}")
    if not isinstance(doc.get("sides") or {}, dict) or not all(isinstance(v, dict)
                                                              for v in (doc.get("sides") or {}).values()):
        raise ReportError(f"{name}: sides: expected an object of side -> facts")
    if doc.get("suite") is not None:
        _check_verdicts(f"{name}: suite", doc["suite"])
    for key in ("verdict", "error", "stopped"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise ReportError(f"{name}: {key}: expected a string")
    for cid, cell in cells.items():
        where = f"{name}: cells[{cid!r:.60}]"
        if not isinstance(cell, dict) or not isinstance(cell.get("rounds", []), list):
            raise ReportError(f"{where}: expected an object with a list of rounds")
        for i, r in enumerate(cell.get("rounds", [])):
            if not isinstance(r, dict) or not isinstance(r.get("pair"), int) or isinstance(r.get("pair"), bool) \
                    or r.get("window") not in ("train", "inference"):
                raise ReportError(f"{where}.rounds[{i}]: expected pair (a whole number) and window (train or "
                                  "inference)")
            for side in ("base", "head"):
                _check_answer(f"{where}.rounds[{i}].{side}", r.get(side) or {})
        if cell.get("work") is not None:
            _check_work(f"{where}.work", cell["work"])
        if cell.get("verdicts") is not None:
            _check_verdicts(f"{where}.verdicts", cell["verdicts"])
        for key in ("error", "head_error", "memory_regression"):
            if cell.get(key) is not None and not isinstance(cell[key], str):
                raise ReportError(f"{where}.{key}: expected a string")
    return doc


def read_ab(path: Path) -> dict[str, Any]:
    """Read (:func:`pytest_longeff.record.io.read_json`: size, nesting and number limits) and check an A/B report;
    :class:`ReportError` names the file and what is wrong."""
    return check_ab(read_json(path, "A/B report"), str(path))


def rejudge(report: Mapping[str, Any], rules: Mapping[str, float]) -> dict[str, Any]:
    """The report judged again from its rounds under ``rules``, as a report (the original is not changed)."""
    from pytest_longeff.ab.judge import gated_under, judge_cells

    out = copy.deepcopy(dict(report))
    plan = out.get("plan")
    rules, _ = gated_under(str(plan.get("schedule")) if isinstance(plan, Mapping) else "", rules)  # as the job did
    out.update(judge_cells(rules, out["cells"], final=True), rules=dict(rules))
    if isinstance(out.get("stopped"), str):  # why the job ended, under the job's own rules, not these
        out["stopped"] = f"the job (under its own --fail-on): {out['stopped']}"
    return out


def exit_code(report: Mapping[str, Any]) -> int:
    """0 no regression, 1 regression, 3 inconclusive (as ``ab`` exits)."""
    v = report.get("verdict")
    return EXIT_REGRESSION if v == "regression" else EXIT_INCONCLUSIVE if v == "inconclusive" else EXIT_OK


def _reraise_when_debugging() -> None:
    """Re-raise the exception being handled under ``PYTEST_LONGEFF_DEBUG=1``
    (:data:`pytest_longeff.record.io.DEBUG_ENV`), so tests see a report the checks let through instead of its
    one-line message."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        raise  # noqa: PLE0704 - called only from an except block


def show(path: Path) -> int:
    """``pytest-longeff show AB.json``: the verdicts as the job judged them."""
    from pytest_longeff.ab.render import render

    try:
        report = read_ab(path)
        text = render(report)
    except ReportError as exc:
        print(f"pytest-longeff show: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a report the checks let through: one line, never a traceback
        _reraise_when_debugging()
        print(for_terminal(f"pytest-longeff show: {path}: cannot be shown ({type(exc).__name__}: {exc}); this is a "
                           "bug in pytest-longeff; please report it, with the file"), file=sys.stderr)
        return EXIT_USAGE
    print(f"{for_terminal(path)}: A/B report, {len(report['cells'])} cells")
    print(text, end="")
    return EXIT_OK


def compare(argv: list[str]) -> int:
    """``pytest-longeff compare AB.json [--fail-on SPEC] [--markdown OUT.md]``: judge the rounds again."""
    from pytest_longeff.ab.judge import DEFAULT_FAIL_ON, parse_rules
    from pytest_longeff.ab.render import render
    from pytest_longeff.record.io import atomic_write_text

    p = argparse.ArgumentParser(prog="pytest-longeff compare", description="Judge a saved A/B report's rounds "
                                "again. Exit 0: no regression; 1: regression; 2: unusable input; 3: inconclusive.")
    p.add_argument("report", type=Path, metavar="AB.json", help="a report of pytest-longeff ab")
    p.add_argument("--fail-on", default=DEFAULT_FAIL_ON, metavar="SPEC",
                   help=f"figures and tolerated change for the worse (default {DEFAULT_FAIL_ON})".replace("%", "%%"))
    p.add_argument("--markdown", type=Path, metavar="OUT.md", help="also write the verdicts as Markdown")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # --help: 0; a usage error: 2
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        rules = parse_rules(args.fail_on)
        report = rejudge(read_ab(args.report), rules)
        text = render(report)
    except ValueError as exc:  # ReportError included
        print(f"pytest-longeff compare: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a report the checks let through: one line, never a traceback
        _reraise_when_debugging()
        print(for_terminal(f"pytest-longeff compare: {args.report}: cannot be judged ({type(exc).__name__}: {exc}); "
                           "this is a bug in pytest-longeff; please report it, with the file"), file=sys.stderr)
        return EXIT_USAGE
    print(text, end="")
    if args.markdown is not None:
        atomic_write_text(args.markdown, render(report, "github", heading="## pytest-longeff A/B gate\n\n"))
    return exit_code(report)

"""What the ``pytest-longeff`` command and the gate print from a hostile report (a cell id, a reason, a file name
holding a line break, a workflow command, a ``|`` and HTML): ``show``, ``merge``'s refusals, ``compare`` and its
Markdown, an A/B report, and the messages the gate fails a test with. No line of it may start a GitHub workflow
command; Markdown tables keep their cells.

The report schema refuses control characters in cell ids and window names, so the ids that get past it carry the
Unicode line breaks it lets through (U+2028, U+0085) and a leading ``::``; free text (notes, reasons, settings)
and file names carry the rest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.ab.render import render as render_ab
from pytest_longeff.cli import main
from pytest_longeff.gate.check import gate_failures
from pytest_longeff.record.io import SCHEMA_VERSION

PAYLOAD = "a\n::add-mask::pwned\r::error::x|y<img src=x onerror=alert(1)>"
SHOWN = "a\\n::add-mask::pwned\\r::error::x|y<img src=x onerror=alert(1)>"  # as for_terminal writes it
IN_MARKDOWN = "a ::add-mask::pwned ::error::x\\|y&lt;img src=x onerror=alert(1)&gt;"
ANNOTATION = "::error title=longeff regression%3A "
# A cell id the schema lets through: no C0 control, but a leading workflow command and other line breaks (in the
# family's name, since a cell's id is its family-size-seq_len-task).
CELL = "::error::x\u2028::add-mask::pwned\x85|y<img src=x onerror=alert(1)>-base-1024-qasper"
CELL_SHOWN = "\\::error::x\\u2028::add-mask::pwned\\x85|y<img src=x onerror=alert(1)>-base-1024-qasper"
CELL_IN_MARKDOWN = "::error::x ::add-mask::pwned \\|y&lt;img src=x onerror=alert(1)&gt;-base-1024-qasper"


def assert_no_workflow_command(out: str) -> None:
    """No line, split where the runner splits (``\\r``, ``\\n``) or where Python does, starts a workflow command
    after its leading whitespace, but the project's own annotations."""
    lines = [*re.split(r"\r\n|[\r\n]", out), *out.splitlines()]
    assert [line for line in lines if line.lstrip().startswith("::") and not line.startswith(ANNOTATION)] == []
    assert "\r" not in out and "##[" not in out


def _record(cell_id: str, tput: float = 10.0, **extra: Any) -> dict[str, Any]:
    parts = cell_id.rsplit("-", 3)
    family = parts[0] if len(parts) == 4 and parts[1:] == ["base", "1024", "qasper"] else "led"
    return {"id": cell_id, "family": family, "size": "base", "seq_len": 1024, "task": "qasper", "status": "passed",
            "batch_size": 2, "accuracy": {"score": 10.0},
            "train": {"samples_per_s_stats": {"median": tput, "ci95": [tput * 0.97, tput * 1.03], "n": 5},
                      "energy_valid": False, "energy_method": "none", "energy_note": PAYLOAD},
            **extra}


def _write(path: Path, records: list[dict[str, Any]], **extra: Any) -> Path:
    doc = {"schema_version": SCHEMA_VERSION, "machine": {"cpu": "x", "device": "cpu"}, "software": {},
           "settings": {"profile": "tiny", "families": ["led"], "sizes": ["base"], "lengths": [1024],
                        "tasks": ["qasper"], "train_budget": {"spec": PAYLOAD}},
           "session": {}, "records": records, **extra}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_show_prints_a_hostile_report_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _write(tmp_path / "r\n::add-mask::file.json", [
        _record(CELL), {"id": "::error::w\u2028::add-mask::v", "kind": "window", "status": "passed",
                        "windows": {CELL: {"repeats": 1, "time_s": 0.1}}}])
    assert main(["show", str(report)]) == 0
    out = capsys.readouterr().out
    assert_no_workflow_command(out)
    assert out.count(CELL_SHOWN) == 2 and "r\\n::add-mask::file.json: 1 cells, 1 window records" in out
    assert "\\::error::w\\u2028::add-mask::v" in out and f"training budget: {SHOWN}" in out


def test_a_report_refused_for_a_hostile_id_is_refused_in_safe_lines(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    report = _write(tmp_path / "r\n::add-mask::file.json", [_record(PAYLOAD)])
    assert main(["show", str(report)]) == 2
    err = capsys.readouterr().err
    assert_no_workflow_command(err)
    assert "\n\\::add-mask::file.json: " in err and "pwned\n" not in err


def test_merge_refusals_name_hostile_cells_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _write(tmp_path / "a.json", [_record(CELL)])
    second = _write(tmp_path / "b\n::error::b.json", [_record(CELL)])
    assert main(["merge", str(first), str(second), "-o", str(tmp_path / "m.json")]) == 1
    err = capsys.readouterr().err
    assert_no_workflow_command(err)
    refusals = err.splitlines()[1:]
    cell = CELL_SHOWN.removeprefix("\\")  # not at the start of its line: no backslash needed
    assert f"  cell {cell} is in both {first} and {tmp_path}/b\\n::error::b.json" in refusals
    assert all(line.startswith("  ") for line in refusals)  # one line per problem


def test_merge_lists_hostile_missing_cells_and_paths_escaped(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    shard = _write(tmp_path / "a.json", [_record("led-base-1024-qasper")])
    doc = json.loads(shard.read_text())
    doc["settings"]["tasks"] = ["qasper", "t\u2028::add-mask::t"]
    shard.write_text(json.dumps(doc))
    out_dir = tmp_path / "o\n::error::d"
    out_dir.mkdir()
    assert main(["merge", str(shard), "-o", str(out_dir / "m.json"), "--allow-missing"]) == 0
    got = capsys.readouterr()
    assert_no_workflow_command(got.out + got.err)
    assert "led-base-1024-t\\u2028::add-mask::t" in got.err and "o\\n::error::d" in got.out


def test_compare_prints_and_writes_hostile_cells_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    base = _write(tmp_path / "base.json", [_record(CELL), _record("led-base-1024-qasper")])
    new = _write(tmp_path / "new.json", [_record(CELL, 5.0), _record("led-base-1024-qasper")])
    md = tmp_path / "gate.md"
    code = main(["compare", str(base), str(new), "--fail-on", "train_samples_per_s:10%", "--markdown", str(md)])
    assert code == 1
    out = capsys.readouterr().out
    assert_no_workflow_command(out)
    assert CELL_SHOWN in out
    (annotation,) = [line for line in re.split("[\r\n]", out) if line.startswith("::")]
    assert annotation.startswith(ANNOTATION + "%3A%3Aerror%3A%3Ax\u2028%3A%3Aadd-mask%3A%3Apwned\x85|y<img")
    text = md.read_text(encoding="utf-8")
    assert_no_workflow_command(text)
    row = next(line for line in text.splitlines() if "add-mask" in line)
    assert row.startswith(f"| \\\\{CELL_IN_MARKDOWN} ") and "<img" not in text
    header = next(line for line in text.splitlines() if line.startswith("| cell"))
    assert row.replace("\\|", "").count("|") == header.count("|")


def test_an_ab_report_renders_hostile_strings_escaped() -> None:
    report = {"verdict": "regression", "pairs_done": 2, "wall_s": 3.0, "error": PAYLOAD,
              "sides": {"base": {"directory": PAYLOAD}, "head": {"directory": "h"}},
              "suite": [{"figure": PAYLOAD, "verdict": "regression", "change": -0.2, "low": -0.3, "high": -0.1,
                         "pairs": 2}],
              "cells": {PAYLOAD: {"error": PAYLOAD, "verdicts": [
                  {"figure": "train_samples_per_s", "verdict": "regression", "note": PAYLOAD, "change": -0.2,
                   "low": -0.3, "high": -0.1, "pairs": 2, "rounds": 2},
                  {"figure": "work", "verdict": "regression", "grew": [PAYLOAD], "diff": [PAYLOAD, "::error::d"]}]}}}
    text = render_ab(report)
    assert_no_workflow_command(text)
    assert f"error: {SHOWN}: {SHOWN}" in text and f"base {SHOWN}, head h" in text
    assert f"  {SHOWN}\n  \\::error::d" in text
    markdown = render_ab(report, "github", heading="## A/B\n\n")
    assert_no_workflow_command(markdown)
    assert markdown.startswith("## A/B\n\nlongeff A/B gate: REGRESSION") and "<img" not in markdown
    assert f"- {IN_MARKDOWN}\n- \\\\::error::d" in markdown
    tables = [block.splitlines() for block in markdown.split("\n\n") if block.startswith("|")]
    assert [len(t) for t in tables] == [4, 3]  # header, rule and a row per verdict; the suite: one row
    for table in tables:
        assert len({line.replace("\\|", "").count("|") for line in table}) == 1, table


def test_the_gate_fails_a_test_with_one_line_per_hostile_check() -> None:
    checks = [{"metric": "train_samples_per_s", "status": "failed", "baseline": 10.0, "current": 5.0, "change": -0.5,
               "tolerance": 0.1, "note": PAYLOAD}]
    (message,) = gate_failures({"checks": checks})
    assert len(message.splitlines()) == 1 and SHOWN in message
    (refused,) = gate_failures({"refused": "::error::r\n::add-mask::s"})
    assert refused == ("gate refused: ::error::r\\n::add-mask::s; record a baseline on this machine with these "
                       "settings")

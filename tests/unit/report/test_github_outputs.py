"""The CI outputs written out in full: the regression items, the Markdown tables, the job summary and the
pull-request comment around their byte budgets, the annotations of ``compare`` and the benchmark files, each
compared with text written out by hand."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from support.report_variants import matrix

from pytest_longeff.config.settings import Settings
from pytest_longeff.gate.suite import RunVerdict
from pytest_longeff.report import github
from pytest_longeff.report.tables import matrix_rows

FAILED = {"metric": "train_samples_per_s", "status": "failed", "baseline": 10.0, "current": 4.0, "change": -0.6,
          "tolerance": 0.1, "note": "apart"}


def _run() -> dict[str, Any]:
    return {"fdr": [{"cell": "d", "metric": "score", "verdict": "regression", "q": 0.0123, "reason": None},
                    {"cell": "a", "metric": "train_samples_per_s", "verdict": "regression", "q": 0.01},
                    {"cell": "e", "metric": "score", "verdict": "ok"},
                    {"cell": "h", "metric": "score", "verdict": "regression"},
                    {"cell": "f", "metric": "m", "verdict": "acknowledged", "reason": "r"}],
            "suite": {"score": {"metric": "score", "verdict": "failed", "geomean_ratio": 0.9, "change": -0.1,
                                "tolerance": 0.05, "reason": "slower", "cells": 3},
                      "m2": {"metric": "m2", "verdict": "passed", "cells": 2, "change": 0.01, "tolerance": 0.05},
                      "m3": {"metric": "m3", "verdict": "acknowledged", "geomean_ratio": 0.95, "reason": "fine"}},
            "lost": ["g"]}


def test_regression_items_hold_each_failure_once_and_acknowledgements_last() -> None:
    other = {**FAILED, "metric": "score"}
    checks = [("a", FAILED), ("a", other), ("b", {**FAILED, "status": "acknowledged", "note": "ok"}),
              ("c", {**FAILED, "status": "passed"})]
    items = github.regression_items(checks, _run())
    suite = _run()["suite"]
    assert items == [
        {**FAILED, "cell": "a", "verdict": "failed", "why": "apart"},
        {**other, "cell": "a", "verdict": "failed", "why": "apart"},
        {"cell": "d", "metric": "score", "verdict": "regression", "q": 0.0123, "reason": None, "why": "FDR q=0.0123"},
        {"cell": "h", "metric": "score", "verdict": "regression", "why": "FDR q=0"},
        {**suite["score"], "cell": "suite (geometric mean)", "baseline": None, "current": 0.9, "why": "slower"},
        {"cell": "g", "metric": "status", "verdict": "failed", "why": "passed in the baseline, now skipped or errored"},
        {**FAILED, "status": "acknowledged", "note": "ok", "cell": "b", "verdict": "acknowledged", "why": "ok"},
        {"cell": "f", "metric": "m", "verdict": "acknowledged", "reason": "r", "why": "r"},
        {**suite["m3"], "cell": "suite (geometric mean)", "baseline": None, "current": 0.95, "why": "fine"},
    ]


def test_one_item_per_cell_and_metric_and_the_suite_apart_from_any_cell() -> None:
    run = {"suite": {"score": {"metric": "score", "verdict": "failed", "reason": "slower"}}, "lost": ["g"]}
    checks = [("suite", {**FAILED, "metric": "score"}), ("g", {**FAILED, "metric": "status"})]
    items = github.regression_items(checks, run)
    assert [(i["cell"], i["metric"], i["why"]) for i in items] == [
        ("suite", "score", "apart"), ("g", "status", "passed in the baseline, now skipped or errored"),
        ("suite (geometric mean)", "score", "slower")]


def test_a_report_without_records_or_checks_has_no_regressions() -> None:
    assert github.doc_regressions({}) == [] and github.error_annotations({}) == []
    assert github.doc_regressions({"records": [{"id": "x", "gate": {"refused": "other machine"}}]}) == []
    assert github.benchmark_entries({}) == ([], [])
    assert github.summary_markdown({}).startswith("## pytest-longeff\n\nNo baseline given.\n\n")


def test_the_markdown_tables_in_full() -> None:
    assert github.regressions_markdown([]) == ["No regression against the baseline."]
    assert github.regressions_markdown([{"cell": "a", "metric": "m", "baseline": None, "current": 2.5, "change": 0.25,
                                         "tolerance": 0.1, "verdict": "failed", "why": "w"},
                                        {"cell": "b", "metric": "m", "baseline": 123456.0, "current": float("inf"),
                                         "change": None, "tolerance": 0.1, "verdict": "failed", "why": None}]) == [
        "| cell | metric | baseline | current | change | tolerance | verdict | why |",
        "|---|---|---|---|---|---|---|---|",
        "| a | m | n/a | 2.5 | +25.0% | 10% | failed | w |",
        "| b | m | 1.235e+05 | inf | n/a | 10% | failed | None |"]
    assert github.suite_markdown(None) == [] and github.suite_markdown({"suite": {}}) == []
    assert github.suite_markdown(_run()) == [
        "| metric | cells | geomean change | tolerance | suite |", "|---|---|---|---|---|",
        "| score | 3 | -10.0% | 5% | failed |", "| m2 | 2 | +1.0% | 5% | passed |",
        "| m3 | None | n/a | n/a | acknowledged |"]


def test_the_summary_in_full_above_its_matrix() -> None:
    doc = {"records": [{"id": "a", "status": "passed", "gate": {"checks": [FAILED]}}],
           "session": {"gate": {"suite": {}, "fdr": []}}}
    head = ("## pytest-longeff\n\n**Gate: 1 regression**\n\n### Regressions\n\n"
            "| cell | metric | baseline | current | change | tolerance | verdict | why |\n"
            "|---|---|---|---|---|---|---|---|\n"
            "| a | train_samples_per_s | 10 | 4 | -60.0% | 10% | failed | apart |\n\n\n### Matrix\n\n")
    summary = github.summary_markdown(doc)
    assert summary.startswith(head) and summary.endswith(" |\n") and not summary.endswith("\n\n")
    doc["records"].append({"id": "b", "status": "passed", "gate": {"checks": [FAILED]}})
    assert "**Gate: 2 regressions**\n" in github.summary_markdown(doc)
    doc["records"] = [{"id": "a", "status": "passed", "gate": {"checks": [{**FAILED, "status": "passed"}]}}]
    assert github.summary_markdown(doc).startswith("## pytest-longeff\n\n**Gate: 0 regressions**\n\n### Regressions\n\n"
                                                   "No regression against the baseline.\n\n\n### Matrix\n\n")
    doc["session"]["gate"]["suite"] = {"m": {"verdict": "inconclusive"}, "n": {"verdict": "passed"}}
    assert "**Gate: 0 regressions**; **INCONCLUSIVE**: 1 check(s)" in github.summary_markdown(doc)


def _lines(doc: dict[str, Any]) -> tuple[list[str], int]:
    """The matrix rows as Markdown lines, and the bytes the header, the rule and the note's room take."""
    headers, rows = matrix_rows(doc["records"])
    head = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return ["| " + " | ".join(row) + " |" for row in rows], sum(len(x.encode()) + 1 for x in head) + 200


def test_the_matrix_fills_its_budget_to_the_byte() -> None:
    doc = matrix(4)
    rows, fixed = _lines(doc)
    exact = fixed + len(rows[0].encode()) + 1 + len(rows[1].encode()) + 1  # two rows, to the byte
    for budget, shown in ((exact, 2), (exact - 1, 1), (fixed + len(rows[0].encode()) + 1, 1), (fixed, 0)):
        lines = github._matrix(doc, budget)
        assert lines[2:2 + shown] == rows[:shown], budget
        assert lines[2 + shown:] == ["", f"_Matrix truncated: {shown} of 4 cells shown; the JSON report has them "
                                         "all._"], budget
    assert github._matrix(doc, 10**6)[2:] == rows


def _boundaries(doc: dict[str, Any]) -> list[int]:
    """The budgets at which the matrix shows one more row: the bytes it needs for 1, 2, ... rows."""
    rows, fixed = _lines(doc)
    return [fixed + sum(len(r.encode()) + 1 for r in rows[:k]) for k in range(1, len(rows) + 1)]


def test_the_comment_and_the_summary_fill_their_limits_to_the_byte(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    doc = matrix(4)
    doc["session"] = {"gate": {"suite": {"score": {"metric": "score", "verdict": "passed", "cells": 4,
                                                   "change": 0.0, "tolerance": 0.05}}}}
    settings = cast(Settings, SimpleNamespace(json_path="r.json", benchmark_json=None))
    head = ("## pytest-longeff\n\nNo regression against the baseline.\n\n| metric | cells | geomean change | tolerance "
            "| suite |\n|---|---|---|---|---|\n| score | 4 | +0.0% | 5% | passed |\n\n"
            "<details><summary>Matrix</summary>\n\n")
    rows, _ = _lines(doc)
    two = _boundaries(doc)[1]
    for limit, shown in ((two + len(head.encode()) + 20, 2), (two + len(head.encode()) + 19, 1),
                         (two + len(head.encode()) - 21, 1)):
        monkeypatch.setattr(github, "COMMENT_LIMIT", limit)
        (path,) = github.write_ci_outputs(doc, settings, root=tmp_path)
        text = Path(path).read_text(encoding="utf-8")
        assert text.startswith(head) and text.endswith("\n\n</details>\n")
        assert "\n".join(rows[:shown]) + "\n\n_Matrix truncated" in text
        assert f"_Matrix truncated: {shown} of 4 cells shown" in text, limit
    step = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    summary_head = len(github.summary_markdown(doc, 0).split("### Matrix\n\n")[0].encode()) + len("### Matrix\n\n")
    for earlier in ("", "earlier step\n"):
        if earlier:
            step.write_text(earlier, encoding="utf-8")
        for limit, shown in ((two + summary_head + len(earlier), 2), (two + summary_head + len(earlier) - 1, 1)):
            if step.exists() and not earlier:
                step.unlink()
            monkeypatch.setattr(github, "STEP_SUMMARY_LIMIT", limit)
            github.write_ci_outputs(doc, settings, root=tmp_path)
            written = step.read_text(encoding="utf-8")
            assert written.startswith(earlier + "## pytest-longeff\n\n**Gate: 0 regressions**\n\n### Regressions\n\n"
                                      "No regression against the baseline.\n\n| metric | cells |")
            assert f"_Matrix truncated: {shown} of 4 cells shown" in written, (earlier, limit)
            step.write_text(earlier, encoding="utf-8")


def test_the_benchmark_files_are_indented_json_in_a_new_folder(tmp_path: Path) -> None:
    doc = matrix(2)
    settings = cast(Settings, SimpleNamespace(json_path="r.json", benchmark_json="out/bench"))
    written = github.write_ci_outputs(doc, settings, root=tmp_path)
    smaller, bigger = github.benchmark_entries(doc)
    assert written[1:] == [str(tmp_path / "out" / "bench" / github.SMALLER_FILE),
                           str(tmp_path / "out" / "bench" / github.BIGGER_FILE)]
    for path, entries in zip(written[1:], (smaller, bigger), strict=True):
        text = Path(path).read_text(encoding="utf-8")
        assert entries and json.loads(text) == entries
        assert text.startswith('[\n {\n  "name": ') and text.endswith("\n }\n]\n")  # indent=1, one newline


def test_benchmark_entries_of_failed_cells_name_their_meter_and_interval() -> None:
    record = {"id": "c", "status": "failed", "accuracy": {"score": 1.0},
              "train": {"samples_per_s_stats": {"median": 4.0, "ci95": [3.0, 5.5], "n": 5}, "energy_j": 10.0,
                        "energy_valid": True, "energy_method": "rapl", "energy_coarse": False}}
    smaller, bigger = github.benchmark_entries({"records": [{**record, "id": "s", "status": "skipped"}, record]})
    tput = next(e for e in bigger if e["name"] == "c train_samples_per_s")
    assert tput["range"] == "± 1.25" and tput["extra"].endswith("; 95% CI [3, 5.5]")
    energy = next(e for e in smaller if e["name"] == "c train_energy_j")
    assert energy["extra"].endswith(" (rapl)") and energy["extra"].startswith("method ")
    assert not [e for e in smaller + bigger if e["name"].startswith("s ")]


def test_compare_annotations_leave_out_acknowledgements_and_count_the_rest() -> None:
    run = cast(RunVerdict, SimpleNamespace(to_dict=lambda: {"fdr": [
        {"cell": "d", "metric": "score", "verdict": "regression", "q": 0.01, "reason": "far"},
        {"cell": "f", "metric": "score", "verdict": "acknowledged", "reason": "r"}]}))
    checks = [("a", FAILED), ("b", {**FAILED, "status": "acknowledged"})]
    assert github.annotations_from_checks(checks, run) == [
        "::error title=longeff regression%3A a train_samples_per_s::baseline 10, current 4, change -60.0%25, "
        "tolerance 10%25: apart",
        "::error title=longeff regression%3A d score::baseline n/a, current n/a, change n/a, tolerance n/a: far"]
    assert github.annotations_from_checks(checks, run, limit=1) == [
        "::error title=longeff regressions::2 more regressions: see the job summary or the JSON report"]
    many = [(f"c{i}", FAILED) for i in range(3)]
    assert len(github.annotations_from_checks(many, run, limit=4)) == 4
    assert all("more regressions" not in line for line in github.annotations_from_checks(many, run, limit=4))

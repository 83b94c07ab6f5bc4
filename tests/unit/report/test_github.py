"""CI outputs: github-action-benchmark files, error annotations, the job summary and the pull-request comment."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pytest_longeff.config.settings import Settings
from pytest_longeff.report.github import (
    BIGGER_FILE,
    SMALLER_FILE,
    benchmark_entries,
    doc_regressions,
    error_annotations,
    summary_markdown,
    write_ci_outputs,
)


def cell(cell_id: str, coarse: bool = False, method: str = "nvml", gate: dict[str, Any] | None = None,
         status: str = "passed") -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": cell_id, "status": status, "batch_size": 2, "accuracy": {"score": 12.5},
        "train": {"samples_per_s_stats": {"median": 4.0, "ci95": [3.8, 4.2], "n": 5}, "time_s": 2.0,
                  "energy_j": 50.0, "energy_valid": True, "energy_method": method, "energy_coarse": coarse,
                  "samples_per_kj": 100.0, "peak_memory_bytes": None},
        "inference": {"energy_j": None, "energy_valid": False, "energy_method": "none"},
    }
    if gate is not None:
        out["gate"] = gate
    return out


FAILED = {"metric": "train_samples_per_s", "status": "failed", "baseline": 10.0, "current": 4.0, "change": -0.6,
          "tolerance": 0.1, "note": "intervals apart"}


def test_benchmark_entries_by_direction_without_unmeasured_coarse_or_estimated_energy() -> None:
    doc = {"records": [cell("a"), cell("b", coarse=True), cell("c", method="estimate"), cell("d", status="skipped"),
                       {"id": "w", "kind": "window", "status": "passed"}]}
    smaller, bigger = benchmark_entries(doc)
    names = {e["name"] for e in smaller + bigger}
    assert {"a train_energy_j", "a train_samples_per_kj", "a train_time_s"} <= names
    assert not any(n.startswith(("b train_energy", "c train_energy", "b train_samples_per_kj", "d ")) for n in names)
    assert "a train_peak_memory_bytes" not in names and "a inference_energy_j" not in names  # unmeasured
    assert all(e["name"].split()[1] in {"score", "batch_size", "train_samples_per_s", "train_samples_per_kj"}
               for e in bigger)
    tput = next(e for e in bigger if e["name"] == "a train_samples_per_s")
    assert tput == {"name": "a train_samples_per_s", "unit": "samples/s", "value": 4.0, "range": "± 0.2",
                    "extra": tput["extra"]} and tput["extra"].startswith("method per training step")
    assert all(set(e) <= {"name", "unit", "value", "range", "extra"} and isinstance(e["value"], float)
               for e in smaller + bigger)


def test_annotations_are_escaped_and_at_most_ten() -> None:
    gate = {"checks": [FAILED]}
    doc = {"records": [cell(f"c{i}", gate=gate) for i in range(12)]}
    lines = error_annotations(doc)
    assert len(lines) == 10 and lines[-1].startswith("::error title=longeff regressions::3 more")
    assert lines[0].startswith("::error title=longeff regression%3A c0 train_samples_per_s::baseline 10, current 4, "
                               "change -60.0%25, tolerance 10%25")
    acked = {"checks": [{**FAILED, "status": "acknowledged"}]}
    assert error_annotations({"records": [cell("a", gate=acked)]}) == []


def test_run_level_items_come_after_cell_failures_and_suite_is_listed() -> None:
    run = {"fdr": [{"cell": "b", "metric": "score", "verdict": "regression", "q": 0.01, "baseline": 1.0,
                    "current": 0.5, "change": -0.5, "tolerance": 0.05, "reason": None}],
           "suite": {"score": {"metric": "score", "verdict": "acknowledged", "geomean_ratio": 0.9, "change": -0.1,
                               "tolerance": 0.05, "reason": "new data"}}, "lost": ["z"]}
    doc = {"records": [cell("a", gate={"checks": [FAILED]})], "session": {"gate": run}}
    items = doc_regressions(doc)
    assert [(i["cell"], i["verdict"]) for i in items] == [("a", "failed"), ("b", "regression"), ("z", "failed"),
                                                          ("suite (geometric mean)", "acknowledged")]


def test_the_summary_keeps_every_regression_and_truncates_the_matrix() -> None:
    doc = {"records": [cell(f"cell-{i:04d}", gate={"checks": [FAILED]}) for i in range(300)],
           "session": {"gate": {"suite": {}, "fdr": []}}}
    full = summary_markdown(doc)
    assert "300 regressions" in full and "truncated" not in full
    small = summary_markdown(doc, limit=45_000)
    assert len(small.encode()) <= 45_000
    regressions = small.split("### Matrix")[0]
    assert all(f"| cell-{i:04d} | train_samples_per_s |" in regressions for i in range(300))
    assert "_Matrix truncated:" in small and "of 300 cells shown" in small


def test_write_ci_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    settings = cast(Settings, SimpleNamespace(json_path="reports/longeff.json", benchmark_json="bench"))
    doc = {"records": [cell("a", gate={"checks": [FAILED]})], "session": {}}
    written = write_ci_outputs(doc, settings, root=tmp_path)
    assert written == [str(tmp_path / "reports" / "longeff-comment.md"), str(summary),
                       str(tmp_path / "bench" / SMALLER_FILE), str(tmp_path / "bench" / BIGGER_FILE)]
    assert summary.read_text().startswith("earlier step\n## pytest-longeff")
    comment = (tmp_path / "reports" / "longeff-comment.md").read_text()
    assert "| a | train_samples_per_s | 10 | 4 | -60.0% | 10% | failed |" in comment and "<details>" in comment
    assert json.loads((tmp_path / "bench" / BIGGER_FILE).read_text())[0]["name"].startswith("a ")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    settings = cast(Settings, SimpleNamespace(json_path=str(tmp_path / "x.json"), benchmark_json=None))
    assert write_ci_outputs(doc, settings) == [str(tmp_path / "x-comment.md")]


def test_the_summary_says_inconclusive_where_nothing_failed() -> None:
    unresolved = {"metric": "train_samples_per_s", "status": "inconclusive", "baseline": 4.0, "current": 3.9,
                  "change": -0.025, "tolerance": 0.1, "note": "interval reaches beyond"}
    doc = {"records": [cell("a", gate={"checks": [unresolved]})],
           "session": {"gate": {"suite": {"train_samples_per_s": {"verdict": "inconclusive"}}, "fdr": []}}}
    assert ("**Gate: 0 regressions**; **INCONCLUSIVE**: 2 check(s) or suite rule(s) could not resolve the tolerance"
            in summary_markdown(doc))
    doc["records"] = [cell("a", gate={"checks": [FAILED]})]
    assert "INCONCLUSIVE" not in summary_markdown(doc)  # a regression is said as such

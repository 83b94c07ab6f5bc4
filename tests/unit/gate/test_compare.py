"""``pytest-longeff compare``: the gate on two saved reports, its table and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.ci.compare import EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE, main
from pytest_longeff.record.io import SCHEMA_VERSION


def rec(cell: str, tput: float, status: str = "passed") -> dict[str, Any]:
    return {"id": cell, "status": status, "batch_size": 2, "accuracy": {"score": 10.0},
            "train": {"samples_per_s_stats": {"median": tput, "ci95": [tput * 0.97, tput * 1.03], "n": 5}}}


def write(path: Path, records: list[dict[str, Any]], **extra: Any) -> Path:
    doc = {"schema_version": SCHEMA_VERSION, "machine": {"cpu": "x", "device": "cpu"}, "settings": {"profile": "tiny"},
           "records": records, **extra}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write(tmp_path / "base.json", [rec("a", 10.0), rec("b", 10.0)])


def test_no_regression_exits_0_and_prints_the_table(tmp_path: Path, base: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    new = write(tmp_path / "new.json", [rec("a", 10.2), rec("b", 9.8)])
    assert main([str(base), str(new), "--fail-on", "train_samples_per_s:10%"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("longeff gate: no regression")
    assert "train_samples_per_s" in out and "geomean change" in out and "+2.0%" in out


def test_a_regression_exits_1_and_writes_markdown(tmp_path: Path, base: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    new = write(tmp_path / "new.json", [rec("a", 10.0), rec("b", 5.0)])
    md = tmp_path / "gate.md"
    assert main([str(base), str(new), "--fail-on", "train_samples_per_s:10%", "--markdown", str(md)]) == \
        EXIT_REGRESSION
    out = capsys.readouterr().out
    first_row = out.split("\n\n")[1].splitlines()[2]
    assert first_row.split()[:2] == ["b", "train_samples_per_s"] and "failed" in first_row  # regressions first
    assert "::error title=longeff regression%3A b train_samples_per_s::" in out
    text = md.read_text()
    assert text.startswith("## pytest-longeff gate") and "| b " in text


def test_an_acknowledged_regression_exits_0(tmp_path: Path, base: Path) -> None:
    new = write(tmp_path / "new.json", [rec("a", 10.0), rec("b", 5.0)])
    ack = tmp_path / "ack.json"
    ack.write_text(json.dumps([{"cell": "b", "metric": "train_samples_per_s", "reason": "accepted"}]))
    args = [str(base), str(new), "--fail-on", "train_samples_per_s:10%", "--acknowledged", str(ack)]
    assert main(args) == EXIT_OK


def test_a_lost_cell_is_a_regression(tmp_path: Path, base: Path) -> None:
    new = write(tmp_path / "new.json", [rec("a", 10.0), rec("b", 10.0, status="skipped")])
    assert main([str(base), str(new), "--fail-on", "score:5%"]) == EXIT_REGRESSION


@pytest.mark.parametrize(("change", "message"), [
    ({"machine": {"cpu": "other", "device": "cpu"}}, "refused: the baseline comes from another machine"),
    ({"settings": {"profile": "paper"}}, "refused: the baseline was measured under other settings (profile"),
    ({"schema_version": 99}, "schema_version"),
])
def test_incomparable_reports_exit_2_and_say_why(tmp_path: Path, base: Path, capsys: pytest.CaptureFixture[str],
                                                 change: dict[str, Any], message: str) -> None:
    new = write(tmp_path / "new.json", [rec("a", 10.0)], **change)
    assert main([str(base), str(new)]) == EXIT_UNUSABLE
    assert message in capsys.readouterr().err


def test_unusable_input_exits_2(tmp_path: Path, base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(base), str(tmp_path / "missing.json")]) == EXIT_UNUSABLE
    assert main([str(base), str(base), "--fail-on", "speed:5%"]) == EXIT_UNUSABLE
    (tmp_path / "ack.json").write_text('[{"metric": "score"}]')
    assert main([str(base), str(base), "--acknowledged", str(tmp_path / "ack.json")]) == EXIT_UNUSABLE
    assert "needs a reason" in capsys.readouterr().err

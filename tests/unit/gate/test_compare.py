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


# -- a real report 30 % slower in every cell: never "no regression" ---------------------------------------------------
SMALL = Path(__file__).resolve().parents[2] / "support" / "data" / "report_small.json"


def _scaled(doc: dict[str, Any], factor: float, widen: float = 1.0) -> dict[str, Any]:
    """``doc`` with training and inference throughput times ``factor`` in every cell (median, quartiles, mean,
    interval and the whole-window rate), each interval ``widen`` times wider on the log scale (a busy machine)."""
    out = json.loads(json.dumps(doc))
    for record in out["records"]:
        for window in ("train", "inference"):
            part = record.get(window) or {}
            stats = part.get("samples_per_s_stats") or {}
            for key in ("median", "q1", "q3", "mean"):
                if isinstance(stats.get(key), (int, float)):
                    stats[key] *= factor
            if isinstance(stats.get("ci95"), list):
                lo, hi, mid = *stats["ci95"], stats["median"] / factor
                stats["ci95"] = [factor * mid * (lo / mid) ** widen, factor * mid * (hi / mid) ** widen]
            if isinstance(part.get("samples_per_s"), (int, float)):
                part["samples_per_s"] *= factor
    return out


@pytest.mark.parametrize("widen", [1.0, 3.0, 10.0])
def test_a_report_30_percent_slower_in_every_cell_is_never_no_regression(tmp_path: Path, widen: float,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The reproduction of a silent pass: throughput cut by 30 % in every cell of a real report, compared with the
    original at the default tolerances. With the report's own intervals it is a regression; on a busy machine
    (intervals 3 and 10 times wider) a per-cell check that cannot resolve 10 % says inconclusive, never passed, and
    the run is a regression (the FDR over the cells) or inconclusive (exit 3): never exit 0."""
    doc = json.loads(SMALL.read_text())
    base = tmp_path / "base.json"
    base.write_text(json.dumps(_scaled(doc, 1.0, widen)))
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps(_scaled(doc, 0.7, widen)))
    code = main([str(base), str(slow)])
    out = capsys.readouterr().out
    assert code in (EXIT_REGRESSION, 3), out
    assert "no regression" not in out.splitlines()[0]
    if widen == 1.0:
        assert code == EXIT_REGRESSION, out  # the inference intervals of both cells are tight enough to tell
    train = [line for line in out.splitlines() if " train_samples_per_s " in line and "-30.0%" in line]
    assert len(train) == 2 and all(line.split("10%")[1].split()[0] in ("failed", "inconclusive") for line in train)


def test_a_rule_without_data_shows_its_own_tolerance(tmp_path: Path, base: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    new = write(tmp_path / "new.json", [rec("a", 10.0), rec("b", 10.0)])
    main([str(base), str(new), "--fail-on", "train_samples_per_s:10%,inference_j_per_sample:15%"])
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("inference_j_per_sample")]
    assert row.split()[1:4] == ["0", "n/a", "15%"] and "no data" in row

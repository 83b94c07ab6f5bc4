"""``benchmarks/ab_replay.py``'s noise table: the spread within and between process pairs, checked against values
the rounds were built to have."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from support.scripts import load_script


def _replay() -> Any:
    return load_script("ab_replay")


def _round(pair: int, window: str, w: float, units: int = 4) -> dict[str, Any]:
    """A round whose head costs exp(w) times the base per unit (the head's window counts other units on purpose:
    the spread is of the cost per unit)."""
    return {"pair": pair, "window": window, "base": {"time_s": 0.5, "units": units},
            "head": {"time_s": 0.5 * math.exp(w) * 2, "units": units * 2}}


def test_spread_reads_within_and_between_pairs() -> None:
    # three pairs, means a, b, c: pair 0 two rounds at a +- d (variance 2 d^2), pair 1 three rounds b - e, b, b + e
    # (variance e^2), pair 2 two rounds at c +- f (variance 2 f^2); pooled within: (2 d^2 + 2 e^2 + 2 f^2) / 4 over
    # 1 + 2 + 1 degrees of freedom; a pair mean of n rounds would vary by within / sqrt(n), n the harmonic mean 2.25
    a, b, c, d, e, f = 0.03, -0.05, 0.01, 0.02, 0.05, 0.01
    rounds = [_round(0, "train", a - d), _round(0, "train", a + d), _round(1, "train", b - e), _round(1, "train", b),
              _round(1, "train", b + e), _round(2, "train", c - f), _round(2, "train", c + f)]
    rounds.append({"pair": 1, "window": "train", "base": {"time_s": None, "units": 4}, "head": {}})  # unmeasured
    rounds.append({"pair": 2, "window": "train", "base": {"time_s": 0.5, "units": True}, "head": {"time_s": 0.5,
                                                                                                  "units": 4}})
    rounds.append({"pair": 3, "window": "train", "base": {"time_s": 0.5, "units": 4}, "head": {"time_s": 0.5,
                                                                                               "units": 4}})  # alone
    few_pairs = [_round(p, "inference", w) for p, w in ((0, 0.1), (0, 0.2), (1, 0.0), (1, 0.1))]  # 2 pairs: too few
    report = {"cells": {"c": {"rounds": rounds + few_pairs}}}
    rows = _replay().spread([report, report])
    assert len(rows) == 1
    row = rows[0]
    assert (row["cell"], row["window"], row["jobs"]) == ("c", "train", 2)
    within = math.sqrt((2 * d**2 + 2 * e**2 + 2 * f**2) / 4)
    mean = (a + b + c) / 3
    between = math.sqrt(((a - mean) ** 2 + (b - mean) ** 2 + (c - mean) ** 2) / 2)
    assert row["within pair sd"] == pytest.approx(within)
    assert row["between pairs sd"] == pytest.approx(between)
    assert row["excess"] == pytest.approx(between / (within / 1.5))


def test_spread_without_round_noise_has_no_excess() -> None:
    rounds = [_round(p, "train", w) for p, w in ((0, 0.1), (0, 0.1), (1, 0.0), (1, 0.0), (2, 0.2), (2, 0.2))]
    (row,) = _replay().spread([{"cells": {"c": {"rounds": rounds}}}])
    assert row["within pair sd"] == pytest.approx(0, abs=1e-12) and row["excess"] is None


def test_spread_of_no_aa_jobs_is_empty() -> None:
    assert _replay().spread([]) == []
    assert _replay().spread([{"cells": {"c": {"rounds": [_round(0, "train", 0.1)]}}}]) == []


def test_from_reprints_a_kept_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    replay = _replay()
    rows = [{"scenario": "aa", "jobs": 1, "regression": 0, "no regression": 1, "inconclusive": 0}]
    summary = {"regressions": {"aa": "none"}, "one_side_s": 15.0, "rows": rows, "aa_reports": ["aa-0.json"]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    # pair means 0.02, -0.01, 0.04, each pair's rounds +- 0.01: within 0.01 * sqrt(2) = 0.0141, between 0.0252
    rounds = [_round(p, "train", w) for p, w in ((0, 0.01), (0, 0.03), (1, -0.02), (1, 0.0), (2, 0.03), (2, 0.05))]
    (tmp_path / "aa-0.json").write_text(json.dumps({"cells": {"led-x": {"rounds": rounds}}}))
    (tmp_path / "aa-1.json").write_text(json.dumps({"cells": {"stale": {"rounds": rounds}}}))  # not in the summary
    assert replay.main(["--from", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "A/A noise" in out and "stale" not in out
    (line,) = [x for x in out.splitlines() if x.startswith("led-x")]
    assert line.split()[2:5] == ["1", "0.0141", "0.0252"]

    del summary["aa_reports"]  # a summary written before the names were kept: every aa-N.json in the folder
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert replay.main(["--from", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "led-x" in out and "stale" in out

    assert replay.main(["--from", str(tmp_path / "missing")]) == 2
    assert "--from" in capsys.readouterr().err
    (tmp_path / "aa-0.json").write_text(json.dumps({"cells": {"led-x": {"rounds": ["not a round"]}}}))
    assert replay.main(["--from", str(tmp_path)]) == 2
    assert "aa-0.json" in capsys.readouterr().err
    (tmp_path / "aa-0.json").write_text(json.dumps({"cells": {"led-x": {"rounds": 7}}}))
    assert replay.main(["--from", str(tmp_path)]) == 2
    assert "aa-0.json" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text(json.dumps([1, 2]))
    assert replay.main(["--from", str(tmp_path)]) == 2
    assert "summary.json" in capsys.readouterr().err


def test_summary_counts_verdicts_and_the_time_a_process_pair_took() -> None:
    reports = [{"verdict": "no regression", "pairs_done": 4, "job_s": 100.0},
               {"verdict": "inconclusive", "pairs_done": 10, "job_s": 200.0},
               {"verdict": "no regression", "pairs_done": 5, "job_s": 150.0},
               {"verdict": "error", "exit": 2, "job_s": 3.0}]  # wrote no report: no pairs, not in the per-pair time
    row = _replay().summary("aa", reports, one_side=25.0)
    assert (row["regression"], row["no regression"], row["inconclusive"]) == (0, 2, 1)
    assert row["median s a pair"] == 25.0  # of 25, 20, 30
    assert row["median job s"] == 125.0 and row["job / one side"] == 5.0
    assert _replay().summary("aa", [{"verdict": "error", "job_s": 1.0}], 10.0)["median s a pair"] is None

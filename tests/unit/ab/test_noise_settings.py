"""``benchmarks/ab_noise.py``: its settings as given on the command line, and its table against values the rounds
were built to have."""

from __future__ import annotations

import math
from typing import Any

import pytest
from support.scripts import load_script


def _noise() -> Any:
    return load_script("ab_noise")


def test_a_setting_is_a_label_and_environment_variables() -> None:
    parse = _noise().parse_setting
    assert parse("4 KiB pages:GLIBC_TUNABLES=glibc.malloc.hugetlb=0") == (
        "4 KiB pages", {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert parse("both: A=1, B_2=x=y") == ("both", {"A": "1", "B_2": "x=y"})
    assert parse("as set:") == ("as set", {})
    for bad in ("GLIBC_TUNABLES=1", ":A=1", "x:A", "x:1A=2", "x:A=1,=2"):
        with pytest.raises(ValueError, match="--setting"):
            parse(bad)


def test_the_command_line_refuses_a_bad_setting_with_the_option_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _noise().main(["--setting", "no label"])
    assert exited.value.code == 2 and "--setting 'no label'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _noise().main(["--setting", "a:X=1", "--setting", "a:X=2"])
    assert "a label of its own" in capsys.readouterr().err


def _report(means: list[float], d: float) -> dict[str, Any]:
    """One job: a pair per mean, two train rounds a pair at mean -+ d (log ratio head/base per unit)."""
    rounds = [{"pair": p, "window": "train", "base": {"time_s": 1.0, "units": 2},
               "head": {"time_s": math.exp(m + s * d), "units": 2}}
              for p, m in enumerate(means) for s in (-1, 1)]
    return {"cells": {"c": {"rounds": rounds}}}


def test_the_table_gives_each_job_and_what_lasts_a_pair() -> None:
    # within a pair: rounds m - d and m + d, variance 2 d^2; between: the sd of the means; lasting: without the
    # round noise a 2-round mean carries (within^2 / 2)
    d = 0.03
    jobs = [_report([0.0, 0.1, -0.1], d), _report([0.0, 0.2, -0.2], d), _report([0.05, 0.0, -0.05], d)]
    rows = _noise().table({"huge pages": jobs[2:], "4 KiB pages": jobs[:2]}, rounds=2)
    assert [r["setting"] for r in rows] == ["huge pages", "4 KiB pages"]
    huge, small = rows
    assert huge["between pairs sd"] == pytest.approx(0.05) and huge["between, each job"] == "0.050"
    assert small["between pairs sd"] == pytest.approx(0.15)  # the median of 0.1 and 0.2
    assert small["between, each job"] == "0.100 0.200"
    within = math.sqrt(2 * d**2)
    assert small["within pair sd"] == pytest.approx(within)
    assert small["lasting"] == pytest.approx(math.sqrt(0.15**2 - within**2 / 2))
    assert _noise().lasting(0.2, 0.1, 2) == 0.0  # less spread between pairs than round noise explains: none lasts

"""Shards: a deterministic, disjoint, complete split of the matrix by (family, size), and where K/N comes from."""

from __future__ import annotations

import pytest

BENCH = "def test_cell(longeff_cell):\n    pass\n"


def _collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("--collect-only", "-q", *args)
    return [line.split("[")[1].rstrip("]") for line in result.outlines if "::test_cell[" in line]


def test_collection_deselects_other_shards(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_bench=BENCH)
    everything = _collected(pytester)
    parts = [_collected(pytester, f"--longeff-shard={k}/3") for k in (1, 2, 3)]
    assert sorted(c for part in parts for c in part) == sorted(everything) and len(everything) == 64
    assert all({c.rsplit("-", 2)[0] for c in part} for part in parts)  # whole (family, size) groups
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "11")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert _collected(pytester, "--longeff-shard=auto") == parts[1]
    result = pytester.runpytest("--collect-only", "--longeff-shard=auto")
    assert "longeff: shard 2/3: 16 cells (from SLURM_ARRAY_TASK_ID=11" in result.stdout.str()
    assert "48 deselected" in result.stdout.str()


def test_bad_shard_environment_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest("--collect-only", "--longeff-shard=auto")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--longeff-shard: --longeff-shard auto: none of LONGEFF_SHARD" in result.stderr.str()
    (pytester.path / "old.json").write_text('{"schema_version": 1, "records": []}')
    result = pytester.runpytest("--collect-only", "--longeff-shard=1/2", "--longeff-durations=old.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--longeff-durations: " in result.stderr.str() and "schema_version 1 is not 2" in result.stderr.str()

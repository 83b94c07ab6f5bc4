"""Schema validation and ``pytest-longeff merge``: shard reports join into what one serial run would give."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from pytest_longeff.cli import main
from pytest_longeff.record.io import load_report, measured_settings, schema_errors
from pytest_longeff.report import outputs

FAST = ["--longeff-families=led,bigbird", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
        "--longeff-train-budget=steps=1", "--longeff-eval-samples=1", "--longeff-repeats=1", "--longeff-idle-s=0",
        "--longeff-device=cpu", "--longeff-energy=none", "--longeff-batch-size=1", "--longeff-warmup-steps=0",
        "-p", "no:randomly"]


def test_three_shards_merged_equal_a_serial_run(bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "render_extras", lambda *a, **k: [])  # figures are not what this test checks
    for k in (1, 2, 3):
        result = bench.runpytest(*FAST, f"--longeff-shard={k}/3", f"--longeff-json=s{k}.json")
        assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    # Two model groups, three shards: LPT puts one group in each of the first two; the third runs nothing.
    assert [(bench.path / f"s{k}.json").exists() for k in (1, 2, 3)] == [True, True, False]
    shard = load_report(bench.path / "s2.json")
    assert shard["shard"]["index"] == 2 and shard["settings"]["shard"] == "2/3"
    bench.runpytest(*FAST, "--longeff-json=serial.json").assert_outcomes(passed=2)
    # The merge reads the shards through the schema: with jsonschema (preferred when installed) and with the
    # fallback validator (jsonschema made unimportable), the same reports are accepted and the same merge written.
    merged_by: dict[str, dict[str, Any]] = {}
    for validator in ("jsonschema", "fallback"):
        with monkeypatch.context() as patch:
            if validator == "fallback":
                patch.setitem(sys.modules, "jsonschema", None)  # ``from jsonschema import ...`` raises ImportError
            out = bench.path / f"merged-{validator}.json"
            assert main(["merge", str(bench.path / "s1.json"), str(bench.path / "s2.json"), "-o", str(out)]) == 0
            merged_by[validator] = load_report(out)
            assert schema_errors(load_report(bench.path / "serial.json")) == []
    merged, serial = merged_by["fallback"], load_report(bench.path / "serial.json")
    assert merged == merged_by["jsonschema"]
    assert [r["id"] for r in merged["records"]] == [r["id"] for r in serial["records"]]
    assert measured_settings(merged["settings"]) == measured_settings(serial["settings"])
    assert all(r["status"] == "passed" for r in merged["records"])


"""The tiny profile's pretrained checkpoints: shipped, loadable offline, the declared architecture, actually
trained; the script that makes them runs end to end; the run uses them (or random weights) as asked."""

from __future__ import annotations

import json
from typing import Any

import pytest

FAST = ["--longeff-sizes=base", "--longeff-lengths=256", "--longeff-train-budget=steps=1", "--longeff-eval-samples=1",
        "--longeff-idle-s=0", "--longeff-max-batch=1", "--longeff-device=cpu", "--longeff-energy=none",
        "--longeff-families=bigbird", "--longeff-tasks=qasper", "-p", "no:randomly"]


def _record(pytester: pytest.Pytester) -> dict[str, Any]:
    doc = json.loads((pytester.path / "reports" / "longeff.json").read_text())
    (record,) = [r for r in doc["records"] if r.get("kind", "cell") == "cell"]
    return dict(record)


def test_default_tiny_run_uses_the_shipped_checkpoints(bench: pytest.Pytester) -> None:
    bench.runpytest(*FAST).assert_outcomes(passed=1)
    record = _record(bench)
    assert record["model"].endswith("pretrained (shipped checkpoint)")
    assert record["accuracy_meaningful"] is True and "in miniature" in record["accuracy_meaning"]


def test_random_tiny_weights_are_a_pipeline_check(bench: pytest.Pytester) -> None:
    bench.runpytest(*FAST, "--longeff-tiny-weights=random").assert_outcomes(passed=1)
    record = _record(bench)
    assert "pretrained" not in record["model"]
    assert record["accuracy_meaningful"] is False and "pipeline check" in record["accuracy_meaning"]


@pytest.mark.parametrize(("args", "message"), [
    (["--longeff-profile=dims", "--longeff-tiny-weights=random"], "applies to the tiny profile only"),
    (["--longeff-data-dir=x", "--longeff-tiny-weights=pretrained"], "know only the generated data's vocabulary"),
    (["--longeff-tiny-weights=best"], "got 'best'; accepted: auto, pretrained, random"),
])
def test_tiny_weights_usage_errors(bench: pytest.Pytester, args: list[str], message: str) -> None:
    result = bench.runpytest("--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()



"""What a cell's record says about fixed work: the inference window times exactly the generation cap of new tokens
per row, the scored predictions come from a separate generation that may stop earlier, and the work counters of a
step and of a token are in every record."""

from __future__ import annotations

import json

import pytest

ONE_CELL = [
    "--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
    "--longeff-eval-samples=2", "--longeff-idle-s=0", "--longeff-batch-size=2", "--longeff-train-budget=steps=4",
    "--longeff-device=cpu", "--longeff-energy=none", "-p", "no:randomly",
]


def test_inference_times_a_fixed_number_of_new_tokens_and_scores_a_separate_generation(
        bench: pytest.Pytester) -> None:
    bench.runpytest(*ONE_CELL, "--longeff-json=r.json").assert_outcomes(passed=1)
    (record,) = json.loads((bench.path / "r.json").read_text())["records"]
    inf = record["inference"]
    rows = inf["samples"] // inf["passes"]
    # Every row of every pass got exactly the cap (the end token suppressed until then).
    assert inf["generated_tokens"] == inf["samples"] * inf["max_new_tokens"]
    assert inf["new_tokens"].startswith("timed: exactly max_new_tokens")
    assert 0 < inf["scored_generated_tokens"] <= rows * inf["max_new_tokens"]
    work = record["work"]
    assert work["train"]["unit"] == "step" and work["train"]["units"] == 1
    assert work["inference"]["unit"] == "token" and work["inference"]["units"] == 2 * inf["max_new_tokens"]
    # The step's FLOPs near the training window's own FLOP count (counted apart, on the probe's rows: the decoder's
    # length follows each batch's longest target, so the two differ by a few per cent, not by a factor).
    assert work["train"]["flops"] == pytest.approx(record["train"]["flops_per_step"], rel=0.1)
    assert work["train"]["flops"] > 0
    assert work["inference"]["calls"] > 0 and work["cost_s"] > 0

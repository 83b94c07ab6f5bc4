"""The machine-speed reference: what a reading holds, how two readings combine, and what it leaves alone."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(("given", "setting"), [([], "auto"), (["--longeff-speed-reference=on"], "on"),
                                               (["--longeff-speed-reference=off"], "off")])
def test_cells_carry_the_reference_unless_turned_off(bench: pytest.Pytester, given: list[str], setting: str) -> None:
    """By default (auto, on a CPU device) and with =on the reference is measured around each cell and filed in the
    record; =off leaves it out, and the report's settings say which."""
    result = bench.runpytest("--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=256",
                             "--longeff-tasks=qasper", "--longeff-train-budget=steps=2", "--longeff-eval-samples=2",
                             "--longeff-idle-s=0", "--longeff-device=cpu", "--longeff-energy=none", *given)
    result.assert_outcomes(passed=1)
    doc = json.loads((bench.path / "reports" / "longeff.json").read_text())
    (record,) = doc["records"]
    assert doc["settings"]["speed_reference"] == setting
    if setting == "off":
        assert "reference" not in record
        return
    reference = record["reference"]
    assert reference["ops_per_s"] > 0 and reference["before_ops_per_s"] > 0 and reference["after_ops_per_s"] > 0


def test_the_speed_reference_option_names_its_values(bench: pytest.Pytester) -> None:
    result = bench.runpytest("--longeff-speed-reference=maybe", "--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--longeff-speed-reference*maybe*on*off*"])



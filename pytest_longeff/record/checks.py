"""Sanity checks every benchmark cell's record must pass (the body of the benchmark test).

The regression gate is not among them: the plugin enforces it after the body ran (:mod:`pytest_longeff.gate.check`)."""

from __future__ import annotations

import math
from typing import Any


def _finite_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and math.isfinite(value))


def check_record(record: dict[str, Any]) -> None:
    """Fail with a precise message when a cell's record is not a set of real measurements.

    Energy figures must be either measured and valid, or null with a note: a zero standing in for "unmeasured"
    is a failure."""
    cid = record.get("id")
    train, inference, accuracy = record.get("train") or {}, record.get("inference") or {}, record.get("accuracy")
    assert train.get("steps", 0) > 0, f"{cid}: no training step ran"
    assert math.isfinite(train.get("loss_last") or math.nan), f"{cid}: training loss is not finite"
    assert inference.get("samples", 0) > 0, f"{cid}: no validation example was generated"
    assert accuracy is not None and 0.0 <= accuracy["score"] <= 100.0, f"{cid}: score out of range: {accuracy}"
    for part_name, part in (("train", train), ("inference", inference)):
        assert part.get("time_s", 0) > 0, f"{cid}: {part_name} window has no duration"
        energy = part.get("energy_j")
        if part.get("energy_valid"):
            assert energy is not None and energy > 0, f"{cid}: {part_name} energy marked valid but is {energy!r}"
        else:
            assert energy is None, f"{cid}: {part_name} energy is {energy!r} but not a valid measurement"
            assert part.get("energy_note"), f"{cid}: {part_name} energy unmeasured without a reason"
        assert _finite_or_none(part.get("samples_per_s")), f"{cid}: {part_name} throughput is not finite"

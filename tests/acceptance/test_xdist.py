"""A small matrix under pytest-xdist: the controller alone writes one report with every worker's cells."""

from __future__ import annotations

import json
import os

import pytest

from pytest_longeff.gate.check import gate_record, parse_fail_on

PARALLEL = [
    "--longeff-families", "led", "--longeff-sizes", "base", "--longeff-lengths", "1024",
    "--longeff-tasks", "gov_report,qasper", "-n", "2", "-p", "xdist",
    "--longeff-train-budget=steps=2", "--longeff-eval-samples=2", "--longeff-repeats=1", "--longeff-idle-s=0",
    "--longeff-max-batch=2", "--longeff-device=cpu", "--longeff-energy=none", "-p", "no:randomly",
]


def test_two_workers_give_one_report_with_every_cell_once(bench: pytest.Pytester) -> None:
    """Guards against records lost or duplicated on the way from workers, a worker's session counters missing
    from the totals, and workers writing files themselves."""
    result = bench.runpytest_subprocess(*PARALLEL)
    result.assert_outcomes(passed=2)
    doc = json.loads((bench.path / "reports" / "longeff.json").read_text())
    ids = [r["id"] for r in doc["records"]]
    assert sorted(ids) == ["led-base-1024-gov_report", "led-base-1024-qasper"]
    assert all(r["status"] == "passed" and r["train"]["steps"] == 2 and r["accuracy"] for r in doc["records"])
    # Predictions travel from the workers beside the records (never inside them) and are written by the controller.
    for r in doc["records"]:
        assert "_predictions" not in r and len(json.loads((bench.path / r["predictions_path"]).read_text())) == 2
    # xdist's load scheduling sends one of two tests to each worker: each built its model, both reported.
    assert doc["session"]["workers"] == 2 and doc["session"]["model_builds"] == 2
    assert doc["session"]["session_wall_s"] > 0
    out = result.stdout.str()
    assert "longeff: accuracy-efficiency matrix" in out and "cells run by the workers" in out

    # Workers sharing the CPU split its cores: a serial baseline (all cores) is refused for this run, and one with
    # the same thread count is not. What decides is `cpu_threads` alone.
    threads = doc["machine"]["cpu_threads"]
    assert threads == max(1, (os.cpu_count() or 1) // 2)
    rules = parse_fail_on("score:5%")
    serial = {**doc, "machine": {**doc["machine"], "cpu_threads": os.cpu_count()}}
    refused = gate_record(rules, serial, doc["records"][0], doc["machine"], "serial.json")["refused"]
    assert (refused is not None) == (threads != os.cpu_count())
    assert gate_record(rules, doc, doc["records"][0], doc["machine"], "parallel.json")["refused"] is None

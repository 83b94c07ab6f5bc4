"""The ``longeff_window`` fixture: a user's own measured work, without a matrix cell, in JSON, JUnit and the gate."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

WINDOW_TEST = '''
import time

def test_work(longeff_window):
    for _ in range(3):
        with longeff_window("spin") as w:
            sum(range(200_000))
        assert w.time_s > 0
    summary = longeff_window.measure("nap", lambda: time.sleep(0.01), repeats=3, warmup=1)
    assert summary.time_s >= 0.01 and len(summary.samples) == 3

def test_plain():
    pass
'''
PINNED = ["--longeff-device=cpu", "--longeff-idle-s=0", "-p", "no:randomly"]


@pytest.fixture
def windows(pytester: pytest.Pytester, heavy_modules: None) -> pytest.Pytester:
    pytester.makepyfile(test_windows=WINDOW_TEST)
    return pytester


def _records(pytester: pytest.Pytester, name: str = "reports/longeff.json") -> dict[str, Any]:
    doc = json.loads((pytester.path / name).read_text())
    return {r["id"]: r for r in doc["records"]}


def test_windows_land_in_the_report_as_a_record_of_their_own(windows: pytest.Pytester) -> None:
    windows.runpytest("--longeff-energy=estimate", *PINNED).assert_outcomes(passed=2)
    records = _records(windows)
    assert list(records) == ["test_windows.py::test_work"]  # a test measuring nothing has no record
    record = records["test_windows.py::test_work"]
    assert record["kind"] == "window" and record["status"] == "passed" and record["device"] == "cpu"
    spin, nap = record["windows"]["spin"], record["windows"]["nap"]
    assert spin["repeats"] == 3 and len(spin["times_s"]) == 3 and spin["time_s_stats"]["n"] == 3
    assert nap["repeats"] == 3 and nap["time_s"] >= 0.01
    assert spin["energy_method"] == "estimate" and spin["energy_j"] > 0  # the session's meter measured it


def test_unmeasured_window_energy_is_null_and_left_out_of_junit(windows: pytest.Pytester) -> None:
    """xunit1 puts properties in each testcase; guards against unmeasured figures written as "None"."""
    windows.runpytest("--longeff-energy=none", "--junitxml=junit.xml", "-o", "junit_family=xunit1",
                      *PINNED).assert_outcomes(passed=2)
    spin = _records(windows)["test_windows.py::test_work"]["windows"]["spin"]
    assert spin["energy_j"] is None and spin["energy_valid"] is False and spin["energy_note"]
    case = next(c for c in ET.parse(windows.path / "junit.xml").getroot().iter("testcase")
                if c.get("name") == "test_work")
    props = {str(p.get("name")): str(p.get("value")) for p in case.iter("property")}
    assert float(props["longeff_window_spin_time_s"]) > 0 and props["longeff_window_spin_energy_method"] == "none"
    assert "longeff_window_spin_energy_j" not in props and "None" not in props.values()


def _edit(path: Path, name: str, fn: Any) -> Path:
    doc = json.loads(path.read_text())
    fn(doc)
    out = path.with_name(name)
    out.write_text(json.dumps(doc))
    return out


def test_the_gate_fails_a_slower_window_against_a_doctored_baseline(windows: pytest.Pytester) -> None:
    windows.runpytest("--longeff-energy=none", "--longeff-json=base.json", *PINNED).assert_outcomes(passed=2)

    def faster(doc: dict[str, Any]) -> None:
        nap = doc["records"][0]["windows"]["nap"]
        nap["time_s"] /= 100
        nap["time_s_stats"]["ci95"] = [v / 100 for v in nap["time_s_stats"]["ci95"]]

    edited = _edit(windows.path / "base.json", "edited.json", faster)
    result = windows.runpytest("--longeff-energy=none", f"--longeff-baseline={edited}",
                               "--longeff-fail-on=window_nap_time_s:50%,window_spin_time_s:1000%", *PINNED)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "test_windows.py::test_work: regression against the baseline" in out
    assert "window_nap_time_s: baseline" in out and "tolerance 50%" in out
    gate = _records(windows)["test_windows.py::test_work"]["gate"]
    assert {c["metric"]: c["status"] for c in gate["checks"]} == {"window_nap_time_s": "failed",
                                                                 "window_spin_time_s": "passed"}


def test_a_bad_window_name_fails_the_test_plainly(pytester: pytest.Pytester, heavy_modules: None) -> None:
    pytester.makepyfile(test_bad='def test_x(longeff_window):\n    with longeff_window("Bad Name"):\n        pass\n')
    result = pytester.runpytest("--longeff-energy=none", *PINNED)
    result.assert_outcomes(failed=1)
    assert "window name 'Bad Name'" in result.stdout.str()

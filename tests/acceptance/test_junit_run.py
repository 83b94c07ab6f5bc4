"""JUnit output: properties from the figure table, unmeasured figures left out, and valid xunit2."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pytest_longeff.record.figures import FIGURES
from pytest_longeff.report.junit import properties

# The xunit2 schema pytest documents (JUnit's jenkins-junit.xsd): what a <testcase> may hold and carry.
XUNIT2_TESTCASE_CHILDREN = {"skipped", "error", "failure", "system-out", "system-err"}
XUNIT2_TESTCASE_ATTRS = {"name", "classname", "time", "assertions", "status", "file", "line"}


def test_properties_come_from_the_figure_table_and_omit_unmeasured_figures() -> None:
    record = {"id": "led-base-256-qasper", "batch_size": 4, "accuracy": {"score": 12.5},
              "train": {"samples_per_s_stats": {"median": 3.0}, "energy_j": None, "energy_method": "none",
                        "peak_memory_bytes": 2048},
              "windows": {"decode": {"time_s": 0.5, "energy_j": None, "energy_method": "none"}}}
    props = dict(properties(record))
    assert props == {"longeff_score": 12.5, "longeff_batch_size": 4, "longeff_train_samples_per_s": 3.0,
                     "longeff_train_peak_memory_bytes": 2048, "longeff_train_energy_method": "none",
                     "longeff_window_decode_time_s": 0.5, "longeff_window_decode_energy_method": "none"}
    assert {f"longeff_{f.name}" for f in FIGURES} >= {k for k in props if "window" not in k and "method" not in k}


def test_xunit2_output_keeps_figures_out_of_testcases(pytester: pytest.Pytester, heavy_modules: None) -> None:
    """Guards against <properties> inside <testcase> under xunit2 (pytest's default family), which CI parsers
    validating against the xunit2 schema reject; the figures are suite properties ``longeff_<figure>[<id>]``."""
    pytester.makepyfile(test_w='''
def test_work(longeff_window):
    for _ in range(2):
        with longeff_window("spin"):
            sum(range(100_000))
''')
    result = pytester.runpytest("--junitxml=junit.xml", "--longeff-device=cpu", "--longeff-energy=none",
                                "--longeff-idle-s=0")
    result.assert_outcomes(passed=1)
    root = ET.parse(pytester.path / "junit.xml").getroot()
    (suite,) = root.iter("testsuite")
    for case in suite.iter("testcase"):
        assert {child.tag for child in case} <= XUNIT2_TESTCASE_CHILDREN
        assert set(case.attrib) <= XUNIT2_TESTCASE_ATTRS
    assert next(child.tag for child in suite) == "properties"  # the schema puts suite properties first
    props = {str(p.get("name")): str(p.get("value")) for p in suite.iter("property")}
    assert float(props["longeff_window_spin_time_s[test_w.py::test_work]"]) > 0
    assert props["longeff_window_spin_energy_method[test_w.py::test_work]"] == "none"
    assert "None" not in props.values()

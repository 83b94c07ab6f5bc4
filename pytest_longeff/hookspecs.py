"""The hooks that fill a session's four registries: model families, tasks, energy meters and task metrics.

Implement one in a ``conftest.py`` or an installed plugin to widen what a session can run or measure; the plugin
implements all four itself for the built-ins, so its own entries and yours go through the same path.

When: each hook is called once per session, in ``pytest_configure``, before the ``--longeff-*`` options are resolved
(so ``--longeff-families``, ``--longeff-tasks`` and ``--longeff-energy`` accept the names they add) and before any
test is collected. None is ``firstresult``: every implementation is called, and what they return is merged by name
in the order they were registered (installed plugins, then conftest files from the outermost in), so a later entry
replaces an earlier one of the same name, except that a built-in energy meter or task metric cannot be replaced (a
usage error). The result is the session's registry (:class:`pytest_longeff.config.registry.Extensions`), kept for
that session only: an in-process ``pytester`` run, or the next session in the same interpreter, starts from the
hooks again. Each example below is a complete ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_longeff.energy import MeterBuilder
    from pytest_longeff.models.families import Family
    from pytest_longeff.tasks.metrics import Metric
    from pytest_longeff.tasks.specs import TaskSpec

hookspec = pytest.hookspec


@hookspec
def pytest_longeff_families() -> Iterable[Family]:  # type: ignore[empty-body]
    """Return model families to add to the session's registry, each keyed by its ``name``; select them with
    ``--longeff-families``.

    A family satisfies :class:`pytest_longeff.models.families.Family` (``build``, ``label``, ``model_inputs``,
    ``prepare``, ``attention``, ``checkpoint``); subclassing a built-in one is the short way:

    .. code-block:: python

        from pytest_longeff.models.families import LEDFamily


        class MyLED(LEDFamily):
            name = "myled"


        def pytest_longeff_families():
            return [MyLED()]

    then ``pytest --longeff-families=myled``.
    """


@hookspec
def pytest_longeff_tasks() -> Iterable[TaskSpec]:  # type: ignore[empty-body]
    """Return SCROLLS-format tasks to add to the session's registry, each a
    :class:`pytest_longeff.tasks.specs.TaskSpec` keyed by its ``name``; select them with ``--longeff-tasks``.

    A task's ``metric`` names an entry of the session's metric table (a built-in, ``rouge``, ``f1`` or
    ``exact_match``, or one from :func:`pytest_longeff_metrics`):

    .. code-block:: python

        from pytest_longeff import TaskSpec


        def pytest_longeff_tasks():
            return [TaskSpec("my_qa", "qa", "f1", has_query=True)]

    then ``pytest --longeff-tasks=my_qa``.
    """


@hookspec
def pytest_longeff_meters() -> Mapping[str, MeterBuilder]:  # type: ignore[empty-body]
    """Return energy meters to add to the session's meter table, as ``{name: builder}``; select one with
    ``--longeff-energy NAME``.

    A builder takes a :class:`pytest_longeff.MeterRequest` (the device, the window clock, ...) and returns
    ``(meter, warnings)``: a :class:`pytest_longeff.Meter` and messages shown once; it raises
    :class:`pytest_longeff.MeterUnavailable` with a message saying how to fix it when the meter cannot work here. The
    session calls the builder once, when it starts, through
    ``make_meter(name, device, meters=<the session's table>)``. The built-in names (``auto``, ``nvml``,
    ``nvml-power``, ``rapl``, ``estimate``, ``none``) cannot be replaced; names must be non-empty without surrounding
    blanks:

    .. code-block:: python

        from pytest_longeff import MeterUnavailable
        from pytest_longeff.energy import EstimateMeter


        def build_cpu_estimate(request):
            if request.target.kind != "cpu":
                raise MeterUnavailable(f"cpu-estimate measures the CPU only, not {request.device}")
            return EstimateMeter(clock=request.clock), []


        def pytest_longeff_meters():
            return {"cpu-estimate": build_cpu_estimate}

    then ``pytest --longeff-energy=cpu-estimate --longeff-device=cpu``.
    """


@hookspec
def pytest_longeff_metrics() -> Mapping[str, Callable[[str, str], float] | Metric]:  # type: ignore[empty-body]
    """Return task metrics to add to the session's metric table, as ``{name: metric}``, for a task's ``metric`` to
    name (see :func:`pytest_longeff_tasks`).

    A metric is a function ``(prediction, reference) -> float`` in 0..1, scored like the built-ins: the best value
    over an id's references, averaged over ids, reported x100 as both ``name`` and ``score`` in the cell's
    ``accuracy`` section. (A :class:`pytest_longeff.tasks.metrics.Metric` is also accepted, for several
    components.) The session scores every cell of a task with this metric through
    ``score_predictions(metric, predictions, references, <the session's table>)``. The built-in names (``rouge``,
    ``f1``, ``exact_match``) cannot be replaced; names must be non-empty without surrounding blanks:

    .. code-block:: python

        from pytest_longeff import TaskSpec


        def first_word(prediction, reference):
            return float(prediction.split()[:1] == reference.split()[:1])


        def pytest_longeff_metrics():
            return {"first_word": first_word}


        def pytest_longeff_tasks():
            return [TaskSpec("my_first_word", "qa", "first_word", has_query=True)]

    then ``pytest --longeff-tasks=my_first_word``.
    """

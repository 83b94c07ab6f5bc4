"""pytest hooks, options and thin fixtures of pytest-longeff; the work lives in plain modules.

A benchmark test asks for ``longeff_record`` (the plugin parametrizes it over the matrix, ids like
``led-base-4096-gov_report``, and runs the cell in the fixture) or for ``longeff_window`` (to measure its own work).
With a baseline, the fixture has the gate judge each measurement once (:mod:`pytest_longeff.gate.plugin`) and the
plugin enforces that judgement after the body. The record stays typed until the test's final report, which sets its
outcome and serialises it once; the reporting role of this process (:mod:`pytest_longeff.report.roles`) writes or
ships it, and on the controller owns the run-level gate. The gate, the sharding and the resume logic live in their
own modules, imported only in a run that asks for them.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from pytest_longeff import hookspecs
from pytest_longeff.cell.outcome import (
    CELL_RECORD_KEY,
    GATE_SECTION_KEY,
    WINDOWS_KEY,
    current_record,
    final_record,
    is_final,
    measured_windows,
)
from pytest_longeff.config.caches import batch_cache, cache_dir
from pytest_longeff.config.registry import Extensions, builtin_meters, gather
from pytest_longeff.config.settings import Settings, add_options, resolve
from pytest_longeff.errors import CellSkip, LongeffError, LongeffWarning
from pytest_longeff.matrix import Cell, build_matrix, check_id_tokens
from pytest_longeff.report.junit import per_testcase, properties
from pytest_longeff.report.roles import (
    PREDICTIONS_ATTR,
    RECORD_ATTR,
    Role,
    carried_input,
    cell_of,
    is_worker,
    make_role,
)

if TYPE_CHECKING:
    from pytest_longeff.cell.progress import Progress
    from pytest_longeff.cell.resources import LongeffSession
    from pytest_longeff.ci.resume import ResumePlan
    from pytest_longeff.ci.shard import Selection
    from pytest_longeff.energy.factory import MeterBuilder
    from pytest_longeff.gate.check import Gate
    from pytest_longeff.gate.plugin import GateRun
    from pytest_longeff.measure.recorder import WindowRecorder
    from pytest_longeff.models.families import Family
    from pytest_longeff.tasks.metrics import Metric
    from pytest_longeff.tasks.specs import TaskSpec

SETTINGS_KEY = pytest.StashKey[Settings]()
EXTENSIONS_KEY = pytest.StashKey[Extensions]()
ROLE_KEY = pytest.StashKey[Role]()
GATE_KEY: pytest.StashKey[Gate] = pytest.StashKey()
SESSION_KEY = pytest.StashKey["LongeffSession | None"]()
SESSION_ERROR_KEY = pytest.StashKey[str]()
SELECTION_KEY = pytest.StashKey["Selection"]()
CARRIED_KEY = pytest.StashKey[tuple[frozenset[str], str]]()  # ids of cells carried over, and the skip reason
PROGRESS_KEY = pytest.StashKey["Progress | None"]()
CONFIG_KEYS: tuple[pytest.StashKey[Any], ...] = (SETTINGS_KEY, EXTENSIONS_KEY, ROLE_KEY, GATE_KEY, SESSION_KEY,
                                                 SESSION_ERROR_KEY, SELECTION_KEY, CARRIED_KEY, PROGRESS_KEY)
CELL_FIXTURE = "longeff_cell"
ROLE_NAME = "longeff-role"


# -- registration -------------------------------------------------------------------------------------------------
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register pytest-longeff's own hook specifications."""
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``--longeff-*`` options and their ini settings."""
    add_options(parser)


def pytest_longeff_families() -> list[Family]:
    """Contribute the built-in model families."""
    from pytest_longeff.models.families import BUILTIN_FAMILIES

    return list(BUILTIN_FAMILIES)


def pytest_longeff_tasks() -> list[TaskSpec]:
    """Contribute the built-in tasks."""
    from pytest_longeff.tasks.specs import BUILTIN_TASKS

    return list(BUILTIN_TASKS)


def pytest_longeff_meters() -> Mapping[str, MeterBuilder]:
    """Contribute the built-in energy meters."""
    return builtin_meters()


def pytest_longeff_metrics() -> Mapping[str, Metric]:
    """Contribute the built-in task metrics."""
    from pytest_longeff.tasks.metrics import BUILTIN_METRICS

    return BUILTIN_METRICS


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Resolve the settings, load the gate, shard and resume plan, and register this process's role."""
    ext = config.stash[EXTENSIONS_KEY] = gather(config)
    settings = resolve(config, tuple(ext.families), tuple(ext.tasks), tuple(ext.meters))
    try:
        check_id_tokens([*settings.families, *settings.sizes, *settings.tasks, *map(str, settings.lengths)])
    except ValueError as exc:
        raise pytest.UsageError(f"pytest-longeff: {exc}") from None
    check_attention(settings, ext.families)
    config.stash[SETTINGS_KEY] = settings
    run_gate = _gate(config, settings) if settings.baseline else None
    selection, plan = _plan(config, settings)
    role = config.stash[ROLE_KEY] = make_role(config, settings, selection, plan, run_gate)
    config.pluginmanager.register(role, ROLE_NAME)


def check_attention(settings: Settings, families: Mapping[str, Family]) -> None:
    """Refuse ``--longeff-attn-implementation`` for a selected family that does not support it, and
    ``flash_attention_2`` where flash-attn cannot run, as usage errors that say what to choose instead."""
    from pytest_longeff.models.common import flash_attention_problem, resolve_attn

    if settings.attn_implementation == "auto":
        return
    for name in settings.families:
        try:
            resolve_attn(families[name], settings.attn_implementation)
        except ValueError as exc:
            raise pytest.UsageError(f"--longeff-attn-implementation: {exc}") from None
    if settings.attn_implementation == "flash_attention_2":
        if problem := flash_attention_problem():
            raise pytest.UsageError(f"--longeff-attn-implementation flash_attention_2: {problem}; use sdpa or eager")
        if settings.precision not in ("bf16", "fp16"):
            raise pytest.UsageError(f"--longeff-attn-implementation flash_attention_2 runs in half precision only: add "
                                    f"--longeff-precision bf16 (or fp16); --longeff-precision is {settings.precision}")


def _gate(config: pytest.Config, settings: Settings) -> GateRun | None:
    """Load the gate (the baseline, the rules, the acknowledged changes) in every process, and make the run-level
    gate the controller owns (None on an xdist worker)."""
    from pytest_longeff.gate.plugin import GateRun, load_gate

    gate = config.stash[GATE_KEY] = load_gate(settings, config.invocation_params.dir)
    return None if is_worker(config) else GateRun(gate)


def _plan(config: pytest.Config, settings: Settings) -> tuple[Selection | None, ResumePlan | None]:
    """This run's shard (:mod:`pytest_longeff.ci.shard`) and what ``--longeff-resume`` carries over
    (:mod:`pytest_longeff.ci.resume`; an xdist worker gets the carried ids from the controller), each module imported
    only when its option is given."""
    cwd, selection, plan = config.invocation_params.dir, None, None
    try:
        if settings.shard:
            from pytest_longeff.ci.shard import run_selection

            selection = run_selection(settings, os.environ, cwd)
        if settings.resume and not is_worker(config):
            from pytest_longeff.ci.resume import run_plan

            plan = run_plan(settings, selection, cwd)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if selection is not None:
        config.stash[SELECTION_KEY] = selection
    carried = carried_input(config) if is_worker(config) else (plan.ids, plan.reason) if plan is not None else None
    if carried is not None:
        config.stash[CARRIED_KEY] = carried
    return selection, plan


def pytest_unconfigure(config: pytest.Config) -> None:
    """Release what the role holds (the controller's report lock), unregister it (with the run-level gate it owns)
    and clear this plugin's stash keys (the session's registries with them)."""
    if (role := config.stash.get(ROLE_KEY, None)) is not None:
        role.close()
        config.pluginmanager.unregister(role, ROLE_NAME)
    for key in CONFIG_KEYS:
        if key in config.stash:
            del config.stash[key]


# -- collection -----------------------------------------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize tests that use the cell fixture over the settings' matrix of cells."""
    if CELL_FIXTURE not in metafunc.fixturenames:
        return
    s = metafunc.config.stash[SETTINGS_KEY]
    cells = build_matrix(s.families, s.sizes, s.lengths, s.tasks)
    metafunc.parametrize(CELL_FIXTURE, [pytest.param(c, id=c.id) for c in cells], scope="function")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect other shards' tests, skip cells carried over by ``--longeff-resume``, group cells by model."""
    selection = config.stash.get(SELECTION_KEY, None)
    if selection is not None:
        # Other shards' tests are deselected, as `-k` would: they show in the summary's "deselected" count.
        keep = [selection.keeps(c.id if (c := cell_of(i)) is not None else None, i.nodeid) for i in items]
        if not all(keep):
            config.hook.pytest_deselected(items=[i for i, k in zip(items, keep, strict=True) if not k])
            items[:] = [i for i, k in zip(items, keep, strict=True) if k]
    carried, reason = config.stash.get(CARRIED_KEY, (frozenset(), ""))
    for item in items:
        if (cell := cell_of(item)) is not None and cell.id in carried:
            # Skipped before any fixture runs: no session is started for cells that are all carried over.
            item.add_marker(pytest.mark.skip(reason=reason))
    # Cells sharing a model run together (stable sort keeps the matrix order otherwise), so each model is built
    # once and the cache stays small, whatever order other plugins left.
    def key(item: pytest.Item) -> tuple[int, tuple[str, str]]:
        cell = cell_of(item)
        return (0, cell.model_key) if cell is not None else (1, ("", ""))

    if any(cell_of(i) is not None for i in items):
        order = {k: n for n, k in enumerate(dict.fromkeys(key(i) for i in items))}
        items.sort(key=lambda i: order[key(i)])


# -- fixtures -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def longeff_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved pytest-longeff settings of this session."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def longeff_session(pytestconfig: pytest.Config, longeff_settings: Settings) -> Iterator[LongeffSession | None]:
    """Device, energy meter (with its idle baseline), prepared inputs and model caches shared by all cells; None
    when it could not start (every test using it then fails with the reason)."""
    from pytest_longeff.cell.resources import LongeffSession
    from pytest_longeff.errors import CellUnavailable

    ext = pytestconfig.stash[EXTENSIONS_KEY]
    try:
        session = LongeffSession(longeff_settings, cache_dir(pytestconfig), ext.families, ext.tasks,
                                 meters=ext.meters, metrics=ext.metrics)
    except CellUnavailable as exc:
        # Every cell reports this (with its record) instead of one traceback and an empty report.
        pytestconfig.stash[SESSION_ERROR_KEY] = str(exc)
        pytestconfig.stash[SESSION_KEY] = None
        yield None
        return
    pytestconfig.stash[SESSION_KEY] = session
    role = pytestconfig.stash[ROLE_KEY]
    try:
        role.session_started(session)
        for message in session.warnings:
            warnings.warn(message, LongeffWarning, stacklevel=1)
        yield session
    finally:
        role.session_finished(session)
        session.close()


def _started(config: pytest.Config, session: LongeffSession | None, what: str) -> LongeffSession:
    if session is None:
        pytest.fail(f"{what}: {config.stash.get(SESSION_ERROR_KEY, 'the session could not start')}", pytrace=False)
    return session


@pytest.fixture
def longeff_record(request: pytest.FixtureRequest, longeff_cell: Cell,
                   longeff_session: LongeffSession | None) -> dict[str, Any]:
    """Run the cell and return its record in dict form (DESIGN §6 keys: ``train``, ``inference``, ``accuracy``,
    ...): a copy for the test body, while the typed record stays with the item until its final report. With a
    baseline the gate judges the measurement here (once; a suspect one is measured again). A cell that does not fit
    the memory budget is skipped with that reason (a failure when it passed in the baseline); one that cannot be
    measured as asked is an error; either way its record reaches the report."""
    from pytest_longeff.cell.run import run_cell
    from pytest_longeff.record.sections import CellRecord, Identity

    config, c = request.config, longeff_cell
    s = config.stash[SETTINGS_KEY]
    device = longeff_session.device if longeff_session is not None else s.device
    record = CellRecord(Identity(c.id, c.family, c.size, c.seq_len, c.task, s.profile, device))
    request.node.stash[CELL_RECORD_KEY] = record
    session = _started(config, longeff_session, c.id)
    gate = config.stash.get(GATE_KEY, None)
    progress = _progress(config, c.id)
    t0 = time.perf_counter()
    skip_reason = failure = None
    try:
        run_cell(session, c, record, batch_cache(config), gate.baseline_batch(c.id) if gate is not None else None,
                 progress)
        record.cell_wall_s = time.perf_counter() - t0  # this measurement's; a measurement made again has its own
        if gate is not None:  # each measurement judged once; the section of the one that stands is enforced later
            from pytest_longeff.gate.plugin import settled

            record, section = settled(gate, session, c, record, s.remeasure, lambda label: _progress(config, label))
            request.node.stash[CELL_RECORD_KEY] = record
            if section is not None:
                request.node.stash[GATE_SECTION_KEY] = section
    except CellSkip as exc:
        skip_reason = str(exc)
    except (LongeffError, FileNotFoundError) as exc:
        failure = f"{c.id}: {exc}"
    finally:
        if record.cell_wall_s is None:
            record.cell_wall_s = time.perf_counter() - t0
        if progress is not None:
            progress.finish()
    # Raised outside the except blocks: what the user must fix, said once and plainly, with no chained traceback.
    if skip_reason is not None:
        failure = gate.skip_regression(c.id, skip_reason) if gate is not None else None
        if failure is None:
            pytest.skip(skip_reason)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    return record.to_dict()


def _progress(config: pytest.Config, label: str) -> Progress | None:
    """``on_step=`` for ``run_cell``, started for this cell, when the terminal wants progress
    (:mod:`pytest_longeff.cell.progress`); else None."""
    from pytest_longeff.cell.progress import Progress

    if PROGRESS_KEY not in config.stash:
        config.stash[PROGRESS_KEY] = Progress.for_config(config)
    progress = config.stash[PROGRESS_KEY]
    if progress is not None:
        progress.start(label)
    return progress


@pytest.fixture
def longeff_window(request: pytest.FixtureRequest, longeff_session: LongeffSession | None) -> WindowRecorder:
    """Measure named windows of your own work with the session's device, meter and idle baseline::

        def test_decode(longeff_window):
            with longeff_window("decode"):
                model.generate(...)
            summary = longeff_window.measure("prefill", lambda: model(**inputs), repeats=5, warmup=1)

    Each run is one repeat; see :class:`pytest_longeff.measure.recorder.WindowRecorder`. The windows land in the test's
    record (id: the test's node id; a ``windows`` section), in JUnit and under the gate as
    ``window_<name>_time_s``, ``window_<name>_energy_j``, ``window_<name>_energy_net_j`` and
    ``window_<name>_peak_memory_bytes``."""
    from pytest_longeff.measure.recorder import WindowRecorder

    session = _started(request.config, longeff_session, request.node.nodeid)
    if session.meter_error is not None:
        pytest.fail(f"{request.node.nodeid}: {session.meter_error}", pytrace=False)
    recorder = request.node.stash[WINDOWS_KEY] = WindowRecorder(session.device, session.meter, session.idle)
    return recorder


# -- after the body: the gate's judgement enforced; then the outcome into the record --------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Enforce the gate's judgement once the body ran: a regression fails the test (so it holds under ``python -O``
    and for every benchmark that uses the fixtures, whatever its body asserts). The cell was judged in its fixture;
    windows the body measured are judged here, once."""
    result = yield  # a failing body propagates: its own failure stands, the gate is not consulted
    gate, session = item.config.stash.get(GATE_KEY, None), item.config.stash.get(SESSION_KEY, None)
    if gate is None or session is None:
        return result
    from pytest_longeff.gate.check import gate_failures

    section = item.stash.get(GATE_SECTION_KEY, None)
    if measured_windows(item) is not None and (record := current_record(item)) is not None:
        from pytest_longeff.gate.plugin import judge_windows

        section = item.stash[GATE_SECTION_KEY] = judge_windows(gate, record, session.facts(), section)
    if failures := gate_failures(section):
        cell = item.stash.get(CELL_RECORD_KEY, None)
        pytest.fail(f"{cell.id if cell is not None else item.nodeid}: regression against the baseline:\n  "
                    + "\n  ".join(failures), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the test's finished record (serialised here, once) to its final report, the cell's predictions beside
    it, and, per testcase, the record's figures to JUnit properties."""
    report: pytest.TestReport = yield
    record, predictions = final_record(item, report, call) if is_final(report) else (None, None)
    if record is not None:
        # Travels with the report (also from xdist workers) to the controller, which writes it.
        setattr(report, RECORD_ATTR, record)
        if predictions is not None:
            setattr(report, PREDICTIONS_ATTR, predictions)
        if per_testcase(item.config):
            item.user_properties.extend(properties(record))  # junitxml reads them from the teardown report
    return report

"""pytest hooks, options and thin fixtures of pytest-longeff; the work lives in plain modules.

A benchmark test asks for ``longeff_record`` (the plugin parametrizes it over the matrix, ids like
``led-base-4096-gov_report``, and runs the cell in the fixture) or for ``longeff_window`` (to measure its own work).
After the test body, the plugin gates the record against a baseline; the reporting role of this process
(:mod:`pytest_longeff.report.roles`) writes or ships the record.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
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
)
from pytest_longeff.config.caches import batch_cache, cache_dir
from pytest_longeff.config.registry import Extensions, gather, release
from pytest_longeff.config.settings import Settings, add_options, resolve
from pytest_longeff.errors import CellSkip, LongeffError, LongeffWarning
from pytest_longeff.matrix import Cell, build_matrix, check_id_tokens
from pytest_longeff.report.junit import per_testcase, properties
from pytest_longeff.report.roles import CARRIED_INPUT, RECORD_ATTR, Role, cell_of, is_worker, make_role

if TYPE_CHECKING:
    from pytest_longeff.cell.progress import Progress
    from pytest_longeff.cell.resources import LongeffSession
    from pytest_longeff.ci.resume import ResumePlan
    from pytest_longeff.ci.shard import Selection
    from pytest_longeff.gate.check import Gate
    from pytest_longeff.measure.recorder import WindowRecorder
    from pytest_longeff.models.families import Family
    from pytest_longeff.record.sections import CellRecord
    from pytest_longeff.tasks.specs import TaskSpec

SETTINGS_KEY = pytest.StashKey[Settings]()
EXTENSIONS_KEY = pytest.StashKey[Extensions]()
ROLE_KEY = pytest.StashKey[Role]()
GATE_KEY = pytest.StashKey["Gate"]()
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


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Resolve the settings, load the gate, shard and resume plan, and register this process's role."""
    ext = config.stash[EXTENSIONS_KEY] = gather(config)
    settings = resolve(config, tuple(ext.families), tuple(ext.tasks))
    try:
        check_id_tokens([*settings.families, *settings.sizes, *settings.tasks, *map(str, settings.lengths)])
    except ValueError as exc:
        raise pytest.UsageError(f"pytest-longeff: {exc}") from None
    config.stash[SETTINGS_KEY] = settings
    if settings.baseline:
        _load_gate(config, settings)
    selection = _selection(config, settings)
    plan = _resume_plan(config, settings, selection)
    if plan is not None and plan.records:
        from pytest_longeff.gate.plugin import GateRun

        if isinstance(gate_run := config.pluginmanager.get_plugin(GateRun.NAME), GateRun):
            # Carried-over cells never run, but the run-level gate (FDR, suite rule) judges the whole matrix.
            gate_run.records.update({str(r.get("id")): r for r in plan.records})
    role = config.stash[ROLE_KEY] = make_role(config, settings, selection, plan)
    config.pluginmanager.register(role, ROLE_NAME)


def _load_gate(config: pytest.Config, settings: Settings) -> None:
    """The baseline, the rules and the acknowledged changes; on the controller also the run-level gate (FDR over
    every gated pair, the suite rule), which fails the session once all records are in."""
    from pytest_longeff.gate.plugin import GateRun

    try:
        from pytest_longeff.gate.check import Gate

        gate = config.stash[GATE_KEY] = Gate.load(settings.baseline or "", settings.fail_on or "",
                                                  settings.to_dict(), config.invocation_params.dir)
    except ValueError as exc:
        about_ack = bool(settings.acknowledged) and str(settings.acknowledged) in str(exc)
        raise pytest.UsageError(f"{'--longeff-acknowledged' if about_ack else '--longeff-baseline'}: {exc}") from None
    if not is_worker(config):
        config.pluginmanager.register(GateRun(gate, config), GateRun.NAME)


def _selection(config: pytest.Config, settings: Settings) -> Selection | None:
    """This run's shard of the matrix (``--longeff-shard``), or None for the whole matrix."""
    if not settings.shard:
        return None
    from pytest_longeff.ci.shard import ShardError, select

    durations = Path(settings.durations) if settings.durations else None
    if durations is not None and not durations.is_absolute():
        durations = config.invocation_params.dir / durations
    cells = build_matrix(settings.families, settings.sizes, settings.lengths, settings.tasks)
    try:
        selection = select(settings.shard, os.environ, cells, durations, settings.durations)
    except ValueError as exc:
        option = "--longeff-shard" if isinstance(exc, ShardError) else "--longeff-durations"
        raise pytest.UsageError(f"{option}: {exc}") from None
    config.stash[SELECTION_KEY] = selection
    return selection


def _resume_plan(config: pytest.Config, settings: Settings, selection: Selection | None) -> ResumePlan | None:
    """What ``--longeff-resume`` carries over: read once, here, before the run writes its report. An xdist worker
    gets the carried ids from the controller instead (the file may be the one the controller rewrites)."""
    if is_worker(config):
        raw = getattr(config, "workerinput", {}).get(CARRIED_INPUT)
        if raw:
            ids, reason = json.loads(raw)
            config.stash[CARRIED_KEY] = (frozenset(ids), reason)
        return None
    if not settings.resume:
        return None
    from pytest_longeff.ci.resume import load_plan
    from pytest_longeff.measure.machine import light_facts
    from pytest_longeff.report.roles import header_settings, header_software

    cells = {c.id for c in build_matrix(settings.families, settings.sizes, settings.lengths, settings.tasks)}
    if selection is not None:
        cells &= selection.cells
    light = light_facts(settings.device)
    try:
        plan = load_plan(settings.resume, config.invocation_params.dir, header_settings(settings, selection),
                         header_software(light), light, cells)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[CARRIED_KEY] = (plan.ids, plan.reason)
    return plan


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister the role and the run gate, release extensions and clear this plugin's stash keys."""
    if (role := config.stash.get(ROLE_KEY, None)) is not None:
        config.pluginmanager.unregister(role, ROLE_NAME)
    from pytest_longeff.gate.plugin import RUN_VERDICT_KEY, GateRun

    if (gate_run := config.pluginmanager.get_plugin(GateRun.NAME)) is not None:
        config.pluginmanager.unregister(gate_run, GateRun.NAME)
    if RUN_VERDICT_KEY in config.stash:
        del config.stash[RUN_VERDICT_KEY]
    if (ext := config.stash.get(EXTENSIONS_KEY, None)) is not None:
        release(ext)
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
        session = LongeffSession(longeff_settings, cache_dir(pytestconfig), ext.families, ext.tasks)
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
    ...). A cell that does not fit the memory budget is skipped with that reason (a failure when it passed in the
    baseline); one that cannot be measured as asked is an error; either way its record reaches the report."""
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
        if gate is not None and s.remeasure:
            record = _remeasured(config, session, gate, c, record)
            request.node.stash[CELL_RECORD_KEY] = record
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


def _remeasured(config: pytest.Config, session: LongeffSession, gate: Gate, c: Cell,
                first: CellRecord) -> CellRecord:
    """The measurement of the cell that stands: ``first``, or, while the gate finds the latest suspect, the least
    suspect of it and up to ``--longeff-remeasure`` new ones (:mod:`pytest_longeff.gate.remeasure`), with the others in
    its ``remeasured`` section."""
    from pytest_longeff.cell.run import run_cell
    from pytest_longeff.gate.remeasure import settle
    from pytest_longeff.record.sections import CellRecord

    facts = session.facts()

    def again() -> CellRecord:  # the fixture's progress line is the same object: it finishes it
        record, t0 = CellRecord(first.identity), time.perf_counter()
        run_cell(session, c, record, None, None, _progress(config, f"{first.id} (measured again)"),
                 first.batch)  # the first measurement's batch: no second search
        record.cell_wall_s = time.perf_counter() - t0
        return record

    final, remeasured = settle(first, lambda r: gate.judge(r.to_dict(), facts)[0], again,
                               config.stash[SETTINGS_KEY].remeasure, CellRecord.to_dict)
    final.remeasured = remeasured
    return final


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


# -- after the body: the gate; then the outcome into the record -----------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Gate the record once the body ran: a regression fails the test (so it holds under ``python -O`` and for
    every benchmark that uses the fixtures, whatever its body asserts)."""
    result = yield  # a failing body propagates: its own failure stands, the gate is not consulted
    gate, session = item.config.stash.get(GATE_KEY, None), item.config.stash.get(SESSION_KEY, None)
    record = current_record(item) if gate is not None and session is not None else None
    if gate is not None and session is not None and record is not None:
        section, failures = gate.judge(record, session.facts())
        item.stash[GATE_SECTION_KEY] = section
        if failures:
            pytest.fail(f"{record['id']}: regression against the baseline:\n  " + "\n  ".join(failures),
                        pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the test's record to its final report (and, per testcase, to JUnit properties)."""
    report: pytest.TestReport = yield
    record = final_record(item, report, call) if is_final(report) else None
    if record is not None:
        # Travels with the report (also from xdist workers) to the controller, which writes it.
        setattr(report, RECORD_ATTR, record)
        if per_testcase(item.config):
            item.user_properties.extend(properties(record))  # junitxml reads them from the teardown report
    return report

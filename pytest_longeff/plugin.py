"""pytest hooks, options and thin fixtures of pytest-longeff; the work lives in plain modules.

A benchmark test asks for the ``longeff_record`` fixture; the plugin parametrizes it over the matrix
(ids like ``led-base-4096-gov_report``), runs the cell in the fixture, and the controller's reporter writes the
JSON report as each cell finishes and prints the accuracy-efficiency matrix at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_longeff import hookspecs
from pytest_longeff.matrix import Cell, build_matrix, check_id_tokens
from pytest_longeff.settings import Settings, add_options, resolve

if TYPE_CHECKING:
    from pytest_longeff.models import Family
    from pytest_longeff.report import JsonReport
    from pytest_longeff.runner import LongeffSession
    from pytest_longeff.tasks import TaskSpec

SETTINGS_KEY = pytest.StashKey[Settings]()
FAMILIES_KEY = pytest.StashKey[dict[str, "Family"]]()
TASKS_KEY = pytest.StashKey[dict[str, "TaskSpec"]]()
RECORD_KEY = pytest.StashKey[dict[str, Any]]()
BASELINE_KEY = pytest.StashKey[dict[str, Any]]()
SESSION_ERROR_KEY = pytest.StashKey[str]()
CELL_FIXTURE = "longeff_cell"


# -- registration -------------------------------------------------------------------------------------------------
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_longeff_families() -> list[Family]:
    from pytest_longeff.models import BUILTIN_FAMILIES

    return list(BUILTIN_FAMILIES)


def pytest_longeff_tasks() -> list[TaskSpec]:
    from pytest_longeff.tasks import BUILTIN_TASKS

    return list(BUILTIN_TASKS)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    families: dict[str, Family] = {}
    for group in config.hook.pytest_longeff_families():
        for fam in group:
            families[fam.name] = fam
    tasks: dict[str, TaskSpec] = {}
    for group in config.hook.pytest_longeff_tasks():
        for task in group:
            tasks[task.name] = task
    settings = resolve(config, tuple(families), tuple(tasks))
    try:
        check_id_tokens([*settings.families, *settings.sizes, *settings.tasks, *map(str, settings.lengths)])
    except ValueError as exc:
        raise pytest.UsageError(f"pytest-longeff: {exc}") from None
    config.stash[SETTINGS_KEY] = settings
    if settings.baseline:
        from pytest_longeff.report import load_report

        try:
            config.stash[BASELINE_KEY] = load_report(Path(settings.baseline))
        except ValueError as exc:
            raise pytest.UsageError(f"--longeff-baseline: {exc}") from None
    config.stash[FAMILIES_KEY] = families
    config.stash[TASKS_KEY] = tasks
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(LongeffReporter(config, settings), "longeff-reporter")


# -- collection -----------------------------------------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CELL_FIXTURE not in metafunc.fixturenames:
        return
    s = metafunc.config.stash[SETTINGS_KEY]
    cells = build_matrix(s.families, s.sizes, s.lengths, s.tasks)
    metafunc.parametrize(CELL_FIXTURE, [pytest.param(c, id=c.id) for c in cells], scope="function")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Cells sharing a model run together (stable sort keeps the matrix order otherwise), so each model is built
    # once and the cache stays small, whatever order other plugins left.
    def key(item: pytest.Item) -> tuple[int, tuple[str, str]]:
        cell = _cell_of(item)
        return (0, cell.model_key) if cell is not None else (1, ("", ""))

    for item in items if config.pluginmanager.hasplugin("xdist") else []:
        cell = _cell_of(item)
        if cell is not None:
            # With `-n N --dist loadgroup`, xdist keeps the cells of one model on one worker (one build each).
            item.add_marker(pytest.mark.xdist_group(f"{cell.family}_{cell.size}"))
    if any(_cell_of(i) is not None for i in items):
        order = {k: n for n, k in enumerate(dict.fromkeys(key(i) for i in items))}
        items.sort(key=lambda i: order[key(i)])


def _cell_of(item: pytest.Item) -> Cell | None:
    callspec = getattr(item, "callspec", None)
    cell = callspec.params.get(CELL_FIXTURE) if callspec is not None else None
    return cell if isinstance(cell, Cell) else None


# -- fixtures -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def longeff_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved pytest-longeff settings of this session."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def longeff_session(pytestconfig: pytest.Config, longeff_settings: Settings) -> Iterator[LongeffSession | None]:
    """Device, energy meter (with its idle baseline), tokenizer, data and model caches shared by all cells."""
    from pytest_longeff.runner import CellUnavailable, LongeffSession

    cache_dir = _cache_dir(pytestconfig)
    try:
        session = LongeffSession(longeff_settings, cache_dir)
    except CellUnavailable as exc:
        # Every cell reports this (with its record) instead of one traceback and an empty report.
        pytestconfig.stash[SESSION_ERROR_KEY] = str(exc)
        yield None
        return
    session.families = pytestconfig.stash[FAMILIES_KEY]
    session.tasks = pytestconfig.stash[TASKS_KEY]
    session.open_meter()
    reporter = pytestconfig.pluginmanager.get_plugin("longeff-reporter")
    if isinstance(reporter, LongeffReporter):
        reporter.session_started(session.environment(), environment_lines(session.environment(), session),
                                 session.warnings)
    yield session
    stats = session_stats(session)
    if isinstance(reporter, LongeffReporter):
        reporter.add_stats(stats)
    workeroutput = getattr(pytestconfig, "workeroutput", None)
    if workeroutput is not None:
        # xdist: the only channel back to the controller, which owns the report.
        workeroutput["longeff_session"] = json.dumps(
            {"stats": stats, "env": session.environment(),
             "env_lines": environment_lines(session.environment(), session), "warnings": session.warnings})
    session.close()


def session_stats(session: LongeffSession) -> dict[str, float]:
    """Counters of one session (one xdist worker): model builds, cache hits, time in measured windows."""
    return {
        "model_builds": session.stats.model_builds,
        "model_cache_hits": session.stats.model_cache_hits,
        "model_build_s": session.stats.model_build_s,
        "tokenize_cache_hits": session.stats.tokenize_cache_hits,
        "tokenize_misses": session.stats.tokenize_misses,
        "measured_s": session.stats.measured_s,
        "session_wall_s": time.perf_counter() - session.started,
    }


def _cache_dir(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("longeff"))
    path = config.rootpath / ".longeff-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def longeff_record(request: pytest.FixtureRequest, longeff_cell: Cell,
                   longeff_session: LongeffSession | None) -> dict[
    str, Any
]:
    """Run the cell and return its record (DESIGN §6 keys: ``train``, ``inference``, ``accuracy``, ...).

    A cell that does not fit the memory budget is skipped with that reason; one that cannot be measured as asked
    is an error; either way its record reaches the report."""
    from pytest_longeff.data import DataError
    from pytest_longeff.runner import BatchCache, CellSkip, CellUnavailable, run_cell

    config = request.config
    s = config.stash[SETTINGS_KEY]
    record: dict[str, Any] = {
        "id": longeff_cell.id, "family": longeff_cell.family, "size": longeff_cell.size,
        "seq_len": longeff_cell.seq_len, "task": longeff_cell.task, "profile": s.profile,
        "device": longeff_session.device if longeff_session is not None else s.device, "status": None,
        "reason": None,
    }
    request.node.stash[RECORD_KEY] = record
    if longeff_session is None:
        pytest.fail(f"{longeff_cell.id}: {config.stash.get(SESSION_ERROR_KEY, 'the session could not start')}",
                    pytrace=False)
    cache = getattr(config, "cache", None)
    batch_cache = None if cache is None else BatchCache(lambda k: cache.get(k, None), cache.set)
    t0 = time.perf_counter()
    skip_reason = failure = None
    try:
        run_cell(longeff_session, longeff_cell, record, batch_cache)
    except CellSkip as exc:
        skip_reason = str(exc)
    except (DataError, CellUnavailable, FileNotFoundError) as exc:
        failure = f"{longeff_cell.id}: {exc}"
    finally:
        record["cell_wall_s"] = time.perf_counter() - t0
    # Raised outside the except blocks: what the user must fix, said once and plainly, with no chained traceback.
    baseline = config.stash.get(BASELINE_KEY, None)
    if skip_reason is not None and baseline is not None and any(
            r.get("id") == longeff_cell.id and r.get("status") == "passed" for r in baseline.get("records", [])):
        failure = f"{longeff_cell.id}: regression against the baseline: it passed there, but now {skip_reason}"
    elif skip_reason is not None:
        pytest.skip(skip_reason)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    if baseline is not None and s.fail_on:
        from pytest_longeff.gate import gate_record, parse_fail_on

        record["gate"] = gate_record(parse_fail_on(s.fail_on), baseline, record, longeff_session.environment(),
                                     s.baseline or "", s.to_dict())
    for name, value in _junit_properties(record):
        request.node.user_properties.append((name, value))
    return record


def _junit_properties(record: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("longeff_batch_size", record.get("batch_size"))]
    for part in ("train", "inference"):
        section = record.get(part) or {}
        for key in ("samples_per_s", "time_s", "energy_j", "energy_method", "peak_memory_bytes"):
            out.append((f"longeff_{part}_{key}", section.get(key)))
    out.append(("longeff_inference_j_per_sample", (record.get("inference") or {}).get("j_per_sample")))
    out.append(("longeff_score", (record.get("accuracy") or {}).get("score")))
    return out


# -- outcome -> record ----------------------------------------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    record = item.stash.get(RECORD_KEY, None)
    if record is None:
        return report
    final = report.when == "call" or (report.when == "setup" and not report.passed)
    if final:
        if report.passed:
            record["status"], record["reason"] = "passed", None
        elif report.skipped:
            record["status"] = "skipped"
            longrepr = report.longrepr
            record["reason"] = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        else:
            record["status"] = "error" if report.when == "setup" else "failed"
            record["reason"] = call.excinfo.exconly() if call.excinfo is not None else str(report.longrepr)
        # Travels with the report (also from xdist workers) to the controller, which writes it.
        report.longeff_record = dict(record)
    return report


def light_environment(settings: Settings) -> dict[str, Any]:
    """Machine facts known without importing torch, so a report has them from its first write (the session's
    fuller facts replace them once a cell runs)."""
    import platform
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    from pytest_longeff.measure import cpu_model

    return {"device": settings.device, "cpu": cpu_model(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": version("torch"), "transformers": version("transformers")}


def environment_lines(env: dict[str, Any], session: LongeffSession) -> list[str]:
    """Machine facts for the terminal: what ran where, and which meter measured it."""
    lines = [f"device {env.get('device')}" + (f" ({env['accelerator']})" if env.get("accelerator") else "") +
             f"; CPU {env.get('cpu')}, {env.get('cpu_threads')} torch threads; torch {env.get('torch')}, "
             f"transformers {env.get('transformers')}"]
    if session.meter is None:
        lines.append(f"energy meter unavailable: {session.meter_error}")
    else:
        meter = f"energy meter {session.meter.method}"
        if session.idle is not None:
            idle = session.idle
            meter += (f", idle {idle.power_w:.1f} W over {idle.time_s:.1f} s" if idle.valid and idle.power_w is not
                      None else f", idle not measured ({idle.note})")
        lines.append(meter)
        described = env.get("meter") or {}
        for gpu in described.get("gpus", []) if isinstance(described, dict) else []:
            lines.append(f"GPU {gpu.get('nvml_index')}: {gpu.get('name')}, driver {described.get('driver_version')}, "
                         f"power limit {gpu.get('power_limit_w')} W, SM clock {gpu.get('sm_clock_mhz')} MHz")
    return lines


# -- controller: reports --------------------------------------------------------------------------------------------
class LongeffReporter:
    """Controller-side reporting: the JSON report (written after each cell) and the terminal matrix."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.report: JsonReport | None = None
        self.started = time.perf_counter()
        self.env: dict[str, Any] = light_environment(settings)
        self.have_session_env = False
        self.cells = 0
        self.env_lines: list[str] = []
        self.warnings: list[str] = []
        self.totals: dict[str, float] = {}

    def _json(self) -> JsonReport:
        if self.report is None:
            from pytest_longeff import __version__
            from pytest_longeff.report import JsonReport

            path = Path(self.settings.json_path)
            if not path.is_absolute():
                path = self.config.invocation_params.dir / path
            header = {"machine": self.env, "software": {"pytest_longeff": __version__, "pytest": pytest.__version__},
                      "settings": self.settings.to_dict()}
            self.report = JsonReport(path, header)
        return self.report

    def session_started(self, env: dict[str, Any], env_lines: list[str], warnings: list[str]) -> None:
        if self.have_session_env:
            return  # the first worker's facts stand for all (workers share the machine)
        self.have_session_env = True
        self.env = env
        self.warnings = list(warnings)
        report = self._json()
        report.header["machine"] = self.env
        report.header["software"].update({k: self.env[k] for k in ("torch", "transformers", "python")})
        # Printed in the terminal summary: output written during a test's setup would be captured.
        self.env_lines = env_lines

    def add_stats(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.totals[key] = self.totals.get(key, 0) + value
        self._write_session()

    def _write_session(self) -> None:
        report = self._json()
        wall = time.perf_counter() - self.started
        report.session.update(self.totals)
        report.session["wall_s"] = wall
        if "measured_s" in self.totals:
            # Per worker (one in a serial run): its own session time minus its time inside measured windows.
            report.session["outside_windows_s"] = self.totals["session_wall_s"] - self.totals["measured_s"]
        report.write()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        raw = getattr(node, "workeroutput", {}).get("longeff_session")
        if raw:
            info = json.loads(raw)
            self.session_started(info["env"], info["env_lines"], info["warnings"])
            self.add_stats(info["stats"])

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        # The xdist controller collects nothing itself, so there the settings are said up front.
        if config.getoption("numprocesses", None):
            return self._settings_lines("cells run by the workers")
        return []

    def pytest_report_collectionfinish(self, config: pytest.Config, items: list[pytest.Item]) -> list[str]:
        # Said only when benchmark cells were collected: unrelated suites in the same environment stay quiet.
        self.cells = sum(_cell_of(i) is not None for i in items)
        if not self.cells:
            return []
        return self._settings_lines(f"{self.cells} cell{'s' if self.cells != 1 else ''} collected")

    def _settings_lines(self, what: str) -> list[str]:
        s = self.settings
        return [
            f"longeff: profile {s.profile}, {what} from {'/'.join(s.families)} x "
            f"{'/'.join(s.sizes)} x {'/'.join(map(str, s.lengths))} x {'/'.join(s.tasks)}",
            f"longeff: training budget {s.train_budget.spec}, memory budget {s.memory_budget_bytes / 2**30:.2f} GiB "
            f"({s.memory_budget_source}), energy {s.energy}, report {s.json_path}",
        ]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "longeff_record", None)
        if isinstance(record, dict):
            self._json().add(record)

    def pytest_sessionfinish(self) -> None:
        if self.report is None or not self.report.records:
            return
        from pytest_longeff.findings import findings
        from pytest_longeff.report import atomic_write_text, render_csv, render_markdown

        self.report.session["findings"] = [f.to_dict() for f in findings(self.report.records)]
        self.report.write()
        atomic_write_text(self.report.path.with_suffix(".csv"), render_csv(self.report.records))
        atomic_write_text(self.report.path.with_suffix(".md"),
                          render_markdown(self.report.records, self.report.header["settings"]))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.report is None or not self.report.records:
            return
        from pytest_longeff.report import method_notes, render_matrix

        tr = terminalreporter
        tr.section("longeff: accuracy-efficiency matrix")
        tr.write_line(render_matrix(self.report.records))
        for note in method_notes(self.report.records, self.report.header["settings"]):
            tr.write_line(f"  {note}")
        for line in self.env_lines:
            tr.write_line(f"  {line}")
        for warning in self.warnings:
            tr.write_line(f"  warning: {warning}", yellow=True)
        from pytest_longeff.findings import findings

        decided = [f for f in findings(self.report.records) if f.verdict != "cannot tell"]
        if decided:
            tr.write_line("  the seed study's findings on this matrix:")
            for finding in decided:
                tr.write_line(f"    {finding.verdict}: {finding.claim} ({finding.evidence})")
        else:
            tr.write_line("  the seed study's findings: these cells cannot tell (details in the JSON's session)")
        gated = [r["gate"] for r in self.report.records if r.get("gate")]
        if gated:
            counts: dict[str, int] = {}
            for gate in gated:
                if gate.get("refused"):
                    counts["refused"] = counts.get("refused", 0) + 1
                for c in gate.get("checks", []):
                    counts[c["status"]] = counts.get(c["status"], 0) + 1
            tr.write_line(f"  gate against {self.settings.baseline} ({self.settings.fail_on}): " +
                          ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        tr.write_line(f"  reports: {self.report.path} (also .csv and .md beside it)")

"""Replay the gate on reports of unchanged code: false-alarm rate, and detection rate of injected slowdowns.

    .venv/bin/python benchmarks/gate_replay.py --runs 5                 # the tiny default matrix, 5 runs (20 pairs)
    .venv/bin/python benchmarks/gate_replay.py --quick --runs 4         # 2 cells per run, 12 pairs: minutes on a CPU
    .venv/bin/python benchmarks/gate_replay.py reports/a.json reports/b.json reports/c.json ...   # existing reports
    .venv/bin/python benchmarks/gate_replay.py --quick --runs 4 --keep replay/ --fail-on "train_samples_per_s:30%"
    .venv/bin/python benchmarks/gate_replay.py --harness --runs 5 --keep replay/   # the gate's defaults, in-process

Every ordered pair (base, new) of the runs is gated as ``pytest-longeff compare`` gates it (per-cell checks, FDR,
suite rule) at ``--fail-on`` (default: the plugin's default). Any failure of an unchanged pair is a false alarm.
Then each new report's throughput figures (medians, quartiles, means and intervals) are scaled down by 5, 10 and
20 % (latencies up accordingly) and the share of pairs the gate fails is the detection rate. Not a timed test.

``--harness`` runs the cells in-process instead of through pytest (one fresh process per run, as pytest would be),
with the default machine-speed reference (:mod:`pytest_longeff.measure.reference`) around each cell, and measures
each cell ``1 + --remeasure`` times back to back. The replay is then done three ways: at the defaults
(drift-corrected, and a cell the per-cell gate finds suspect is measured again and the gate judges the figures
pooled over every measurement, by the plugin's own :func:`pytest_longeff.gate.remeasure.settle`, as
``--longeff-remeasure`` does right after the first); drift-corrected with one measurement per cell; and uncorrected with one measurement per cell. An
injected slowdown applies to every measurement of a cell (a regression of the code is found again); pytest-generated
reports hold one measurement.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_longeff.choices import DEFAULT_FAIL_ON
from pytest_longeff.ci.compare import compare_docs
from pytest_longeff.config.settings import argparse_text
from pytest_longeff.gate.check import Rule, gate_record, parse_fail_on
from pytest_longeff.gate.remeasure import settle
from pytest_longeff.record.io import load_report

QUICK = ["--longeff-families=led,bigbird", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
         "--longeff-eval-samples=2", "--longeff-batch-size=2", "--longeff-train-budget=steps=6"]
COMMON = ["--longeff-device=cpu", "--longeff-energy=none", "--longeff-idle-s=0", "-p", "no:randomly", "-q"]
HARNESS = {"families": "led,bigbird", "sizes": "base", "lengths": "1024,2048", "tasks": "qasper", "eval-samples": "4",
           "batch-size": "2", "train-budget": "steps=12", "device": "cpu", "energy": "none", "idle-s": "0"}
SLOWDOWNS = (0.05, 0.10, 0.20)
RATE_STATS = (("train", "samples_per_s_stats"), ("inference", "samples_per_s_stats"))


def generate(runs: int, quick: bool, out: Path) -> list[Path]:
    """Run the benchmark matrix ``runs`` times into ``out``; the reports' paths."""
    paths = []
    root = Path(__file__).resolve().parent
    for i in range(runs):
        path = out / f"run-{i}.json"
        cmd = [sys.executable, "-m", "pytest", str(root / "test_cells.py"), f"--longeff-json={path}",
               *(QUICK if quick else []), *COMMON]
        print(f"run {i + 1}/{runs}: {' '.join(cmd[3:])}", flush=True)
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        paths.append(path)
    return paths


class _Options:
    """Just enough of ``pytest.Config`` for :func:`pytest_longeff.config.settings.resolve`: parsed option values."""

    def __init__(self, given: Mapping[str, str]) -> None:
        from pytest_longeff.config.settings import OPTIONS

        self.values = {opt.dest: (True if opt.parse is None else opt.parse(given[opt.name]))
                       for opt in OPTIONS if opt.name in given}

    def getoption(self, dest: str) -> Any:
        return self.values.get(dest)

    def getini(self, dest: str) -> Any:
        return None


def harness_run(path: Path, given: Mapping[str, str], cache: Path, again: int) -> None:
    """One run of the cells in this process (the machine-speed reference around each, as by default); each cell is
    measured ``1 + again`` times back to back, the later measurements kept under ``_again`` for the replay's
    re-measurement (as ``--longeff-remeasure`` would take them, right after the first). A report-shaped JSON at
    ``path`` (machine facts, settings, records)."""
    import json

    from pytest_longeff.cell.resources import LongeffSession
    from pytest_longeff.cell.run import run_cell
    from pytest_longeff.config.settings import resolve
    from pytest_longeff.energy import BUILTIN_METERS
    from pytest_longeff.matrix import build_matrix
    from pytest_longeff.models.families import BUILTIN_FAMILIES
    from pytest_longeff.record.sections import CellRecord, Identity
    from pytest_longeff.tasks.metrics import BUILTIN_METRICS
    from pytest_longeff.tasks.specs import BUILTIN_TASKS

    families, tasks = {f.name: f for f in BUILTIN_FAMILIES}, {t.name: t for t in BUILTIN_TASKS}
    s = resolve(_Options(given), tuple(families), tuple(tasks))  # type: ignore[arg-type]
    session = LongeffSession(s, cache, families, tasks, meters=BUILTIN_METERS, metrics=BUILTIN_METRICS)

    def measure(c: Any, first: CellRecord | None = None) -> CellRecord:
        record = CellRecord(Identity(c.id, c.family, c.size, c.seq_len, c.task, s.profile, session.device))
        run_cell(session, c, record, None, batch=first.batch if first is not None else None)  # as the plugin does
        record.status = "passed"
        return record

    def as_dict(record: CellRecord) -> dict[str, Any]:
        return record.to_dict()

    records = []
    try:
        for c in build_matrix(s.families, s.sizes, s.lengths, s.tasks):
            first = measure(c)
            records.append({**as_dict(first), "_again": [as_dict(measure(c, first)) for _ in range(again)]})
        doc = {"harness": "benchmarks/gate_replay.py", "machine": session.facts(), "settings": s.to_dict(),
               "records": records}
    finally:
        session.close()
    path.write_text(json.dumps(doc, default=str), encoding="utf-8")


def generate_harness(runs: int, out: Path, given: Mapping[str, str], again: int) -> list[Path]:
    """``runs`` harness runs, each in a fresh process (as each pytest run is); the reports' paths."""
    paths = []
    for i in range(runs):
        path = out / f"harness-{i}.json"
        cmd = [sys.executable, __file__, "--one-run", str(path), "--cache", str(out / "cache"), f"--again={again}",
               *(f"--set={k}={v}" for k, v in given.items())]
        print(f"harness run {i + 1}/{runs}", flush=True)
        subprocess.run(cmd, check=False)
        paths.append(path)
    return paths


def _each_measurement(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measurement in ``doc``: each record and the later measurements of its cell (``_again``)."""
    return [m for rec in doc.get("records", []) for m in (rec, *rec.get("_again", []))]


def without_reference(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` whose records carry no machine-speed reference (the gate then compares uncorrected)."""
    out = copy.deepcopy(dict(doc))
    for rec in _each_measurement(out):
        rec.pop("reference", None)
    return out


def _scale_stats(stats: Any, factor: float) -> None:
    if not isinstance(stats, dict):
        return
    for key in ("median", "q1", "q3", "mean", "iqr"):
        if isinstance(stats.get(key), (int, float)):
            stats[key] *= factor
    if isinstance(stats.get("ci95"), list):
        stats["ci95"] = sorted(v * factor for v in stats["ci95"])


def slowed(doc: Mapping[str, Any], slowdown: float) -> dict[str, Any]:
    """A copy of ``doc`` whose throughput is ``slowdown`` lower (and per-sample latency correspondingly higher) in
    every measurement: a regression of the code, which a re-measurement finds again."""
    out = copy.deepcopy(dict(doc))
    for rec in _each_measurement(out):
        for section, key in RATE_STATS:
            part = rec.get(section)
            if isinstance(part, dict):
                _scale_stats(part.get(key), 1 - slowdown)
                if isinstance(part.get("samples_per_s"), (int, float)):
                    part["samples_per_s"] *= 1 - slowdown
        latency = (rec.get("inference") or {}).get("latency_s")
        if isinstance(latency, dict):
            _scale_stats(latency.get("stats"), 1 / (1 - slowdown))
    return out


def remeasured(base: Mapping[str, Any], new: Mapping[str, Any], rules: Sequence[Rule],
               limit: int) -> dict[str, Any]:
    """``new`` as the plugin with ``--longeff-remeasure limit`` and ``base`` as the baseline would have recorded it:
    a cell the per-cell gate finds suspect is measured again, the first measurement stands in the record and the
    gate judges the figures pooled over every measurement (:func:`pytest_longeff.gate.remeasure.settle`)."""
    machine = new.get("machine") or {}
    records = []
    for rec in new.get("records", []):
        queue: list[dict[str, Any]] = list(rec.get("_again", []))
        first: dict[str, Any] = {k: v for k, v in rec.items() if k != "_again"}

        def judge(r: dict[str, Any]) -> dict[str, Any]:
            return gate_record(rules, base, r, machine, "", None)

        final, section = settle(first, judge, functools.partial(queue.pop, 0), min(limit, len(queue)), dict)
        records.append({**final, "remeasured": section} if section else final)
    return {**new, "records": records}


def replay(docs: Sequence[Mapping[str, Any]], fail_on: str, limit: int) -> dict[str, tuple[int, int]]:
    """(failed pairs, pairs) for unchanged code and per injected slowdown; suspect cells re-measured up to
    ``limit`` times where the reports hold further measurements."""
    rules = parse_fail_on(fail_on)
    pairs = list(itertools.permutations(range(len(docs)), 2))
    counts: dict[str, tuple[int, int]] = {}
    for label, slowdown in [("unchanged", 0.0), *((f"slowdown {s:.0%}", s) for s in SLOWDOWNS)]:
        failed = 0
        for a, b in pairs:
            new = remeasured(docs[a], slowed(docs[b], slowdown) if slowdown else docs[b], rules, limit)
            failed += compare_docs(docs[a], new, rules).fails()
        counts[label] = (failed, len(pairs))
    return counts


def run_speeds(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per run, the geometric mean over cells of its train and inference throughput and of its reference, relative
    to the first run: how far whole runs drift, and whether the reference drifts with them."""
    import math

    paths = {"train": ("train", "samples_per_s_stats", "median"),
             "inference": ("inference", "samples_per_s_stats", "median"), "reference": ("reference", "ops_per_s")}

    def geo(doc: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
        from pytest_longeff.record.sections import lookup

        vals = [v for r in doc.get("records", []) if isinstance(v := lookup(r, *path), (int, float)) and v > 0]
        return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else None

    first = {k: geo(docs[0], p) for k, p in paths.items()}
    lines = []
    for i, doc in enumerate(docs):
        parts = []
        for k, p in paths.items():
            v, f = geo(doc, p), first[k]
            parts.append(f"{k} {'n/a' if v is None or f is None else f'{v / f:.3f}'}")
        lines.append(f"  run {i}: " + ", ".join(parts) + " (x run 0)")
    return lines


def _print_replay(docs: Sequence[Mapping[str, Any]], fail_on: str, label: str, limit: int) -> None:
    print(f"  {label}:")
    for case, (failed, total) in replay(docs, fail_on, limit).items():
        what = "false alarms" if case == "unchanged" else "detected"
        print(f"    {case:>14}: {failed}/{total} pairs failed ({what}: {failed / total:.0%})")


def main(argv: list[str] | None = None) -> int:
    """Generate or read the reports, replay the gate, print the rates."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("reports", nargs="*", type=Path, help="existing reports of unchanged code (else generated)")
    p.add_argument("--runs", type=int, default=5, help="runs to generate (ordered pairs: runs x (runs - 1))")
    p.add_argument("--quick", action="store_true", help="2 tiny cells per run instead of the default matrix")
    p.add_argument("--harness", action="store_true",
                   help="run the cells in-process, each measured 1 + --remeasure times (for the re-measurement)")
    p.add_argument("--remeasure", type=int, default=1,
                   help="further measurements a suspect cell may take, as --longeff-remeasure (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help=f"a longeff option for --harness runs (default {HARNESS})")
    p.add_argument("--one-run", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--again", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--keep", type=Path, help="keep the generated reports in this folder (to replay them again)")
    p.add_argument("--fail-on", default=DEFAULT_FAIL_ON,
                   help=argparse_text(f"the gate's rules (default {DEFAULT_FAIL_ON})"))
    args = p.parse_args(argv)
    given = {**HARNESS, **dict(item.split("=", 1) for item in args.set)}
    if args.one_run is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
        harness_run(args.one_run, given, args.cache, args.again)
        return 0
    with tempfile.TemporaryDirectory(prefix="longeff-replay-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        paths = args.reports or (generate_harness(args.runs, out, given, args.remeasure) if args.harness
                                 else generate(args.runs, args.quick, out))
        docs = [_load(path) for path in paths if path.exists()]
    if len(docs) < 2:
        print("need at least 2 reports", file=sys.stderr)
        return 2
    cells = sum(r.get("status") == "passed" for r in docs[0].get("records", []))
    print(f"{len(docs)} reports, {cells} passed cells each, fail-on {args.fail_on}")
    print("\n".join(run_speeds(docs)))
    again = any(r.get("_again") for d in docs for r in d.get("records", []))
    if again and args.remeasure:
        _print_replay(docs, args.fail_on, f"the defaults: drift-corrected, suspect cells measured again "
                      f"(up to {args.remeasure})", args.remeasure)
    if any("reference" in r for d in docs for r in d.get("records", [])):
        _print_replay(docs, args.fail_on, "drift-corrected, one measurement per cell", 0)
        docs = [without_reference(d) for d in docs]
    _print_replay(docs, args.fail_on, "uncorrected, one measurement per cell", 0)
    return 0


def _load(path: Path) -> dict[str, Any]:
    """A report: the harness's own (no schema header) as plain JSON, others validated by ``load_report``."""
    import json

    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc if "harness" in doc else load_report(path)


if __name__ == "__main__":
    sys.exit(main())

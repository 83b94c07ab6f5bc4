#!/usr/bin/env python3
"""Mutation testing of the pure modules with mutmut 3, on a temporary copy of the repository.

Usage: scripts/mutation.sh [module ...] [--jobs N] [--show] [--keep] [--fail-under PCT]

Each module is mutated on its own and checked only against its own test files (``MODULES`` below), so a run
stays short. The working tree is never touched: the tracked and untracked-but-not-ignored files are copied
into a temporary directory, a ``setup.cfg`` with a ``[mutmut]`` section is written there, and mutmut's
``mutants/`` directory and every cache live and die with that copy. Mutants listed in
``tests/support/equivalent_mutants.txt`` (name, reason and the changed lines) are left out of the score when they
survive and their diff still matches. Not part of CI; see docs/validation/mutation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS_FILE = ROOT / "tests" / "support" / "equivalent_mutants.txt"

# Module (under pytest_longeff/, dotted for a subpackage: "energy.ticks") -> the test files that check it. To cover
# another module, add one line.
MODULES: dict[str, list[str]] = {
    "tasks.metrics": ["tests/unit/tasks/test_metrics.py"],
    "stats": ["tests/unit/test_stats.py"],
    "cell.search": ["tests/unit/cell/test_search.py"],
    "cell.budget": ["tests/unit/cell/test_budget.py"],
    "units": ["tests/unit/test_units.py"],
    "record.sections": ["tests/unit/record/test_sections.py"],
    "energy.arithmetic": ["tests/unit/energy/test_arithmetic.py", "tests/unit/energy/test_uncertainty.py"],
    "energy.ticks": ["tests/unit/energy/test_ticks.py", "tests/unit/energy/test_uncertainty.py"],
    # The gate (with its drift-correcting reference): tests/acceptance/test_gate_run.py is left out, its pytester runs
    # take minutes, too long to rerun for every mutant.
    "gate.check": ["tests/unit/gate/test_gate.py", "tests/unit/gate/test_check.py"],
    "gate.suite": ["tests/unit/gate/test_suite.py", "tests/unit/gate/test_check.py"],
    # The escaping layers: each medium's function, and the CI outputs and page that use them.
    "text": ["tests/unit/test_text.py"],
    "report.github": ["tests/unit/report/test_github.py", "tests/unit/report/test_github_outputs.py",
                      "tests/unit/report/test_escaping.py"],
    "report.page": ["tests/unit/report/test_page.py", "tests/unit/report/test_page_sections.py",
                    "tests/unit/report/test_escaping.py"],
    "ci.shard": ["tests/unit/ci/test_shard.py"],
    "record.figures": ["tests/unit/record/test_figures.py"],
}

PACKAGE = "pytest_longeff"
_WIDTH = max(14, *(len(m) + 2 for m in MODULES))
_RESULT_LINE = re.compile(r"^\s*(?P<name>[\w.]+__mutmut_\d+): (?P<status>.+?)\s*$")


@dataclass
class Equivalent:
    name: str
    reason: str = ""
    changed: list[str] = field(default_factory=list)
    """The mutant's changed lines, ``-``/``+`` followed by the stripped source line."""


def read_equivalents(path: Path) -> dict[str, Equivalent]:
    """Entries of the equivalents file: an unindented mutant name, then indented ``why:``, ``-`` and ``+`` lines."""
    entries: dict[str, Equivalent] = {}
    current: Equivalent | None = None
    if not path.exists():
        return entries
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if not raw[0].isspace():
            current = entries.setdefault(raw.strip(), Equivalent(raw.strip()))
            continue
        line = raw.strip()
        if current is None:
            raise SystemExit(f"{path}: indented line before any mutant name: {raw!r}")
        if line.startswith("why:"):
            current.reason = (current.reason + " " + line[4:].strip()).strip()
        elif line[:1] in "-+":
            current.changed.append(line[0] + " " + line[1:].strip())
    return entries


def changed_lines(diff: str) -> list[str]:
    lines = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")) or line[:1] not in "-+":
            continue
        lines.append(line[0] + " " + line[1:].strip())
    return lines


def copy_tree(destination: Path) -> None:
    """Copy what git would see (tracked plus untracked, not ignored) into ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if name.startswith(("mutants/", ".venv/")) or name == "setup.cfg":
            continue
        source = ROOT / name
        if not source.is_file():  # deleted in the working tree but still tracked
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    pyproject = destination / "pyproject.toml"
    if "mutmut" in tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}):
        # mutmut prefers [tool.mutmut] over setup.cfg; drop it from the copy so the settings below apply.
        text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", pyproject.read_text(encoding="utf-8"))
        pyproject.write_text(text, encoding="utf-8")


def mutmut(copy: Path, *args: str, log: Path | None = None) -> str:
    command = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(command, cwd=copy, check=True, capture_output=True, text=True).stdout
    with log.open("w") as out:
        code = subprocess.run(command, check=False, cwd=copy, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.stdout.write(log.read_text(errors="replace")[-4000:])
        raise SystemExit(f"mutmut {' '.join(args)} failed with exit status {code}; log: {log}")
    return ""


# One process for all diffs (``mutmut show`` per mutant costs a second or two each). Uses mutmut's internals, so
# it falls back to ``mutmut show`` when they move.
_DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in json.load(sys.stdin)}))
"""


def mutant_diffs(copy: Path, names: list[str]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", _DIFFS], check=False, cwd=copy, input=json.dumps(names), capture_output=True, text=True
    )
    if done.returncode == 0:
        return dict(json.loads(done.stdout))
    return {name: mutmut(copy, "show", name) for name in names}


@dataclass
class ModuleResult:
    module: str
    statuses: dict[str, str]
    diffs: dict[str, str]
    equivalents: list[str]
    stale: list[str]

    def count(self, status: str) -> int:
        return sum(1 for s in self.statuses.values() if s == status)

    @property
    def undetected(self) -> list[str]:
        return [n for n, s in self.statuses.items() if s not in ("killed", "timeout") and n not in self.equivalents]


def source_path(module: str) -> str:
    """The file of a dotted module name under the package: ``energy.ticks`` -> ``pytest_longeff/energy/ticks.py``."""
    return f"{PACKAGE}/{module.replace('.', '/')}.py"


def module_name(argument: str) -> str:
    """A module as given on the command line (``units``, ``energy.ticks``, ``energy/ticks.py``,
    ``pytest_longeff/energy/ticks.py``, or a last component such as ``ticks`` when only one module ends so) as a
    ``MODULES`` key; returned unchanged when it matches none, for the caller to report."""
    name = argument.removesuffix(".py").replace("/", ".").strip(".").removeprefix(f"{PACKAGE}.")
    if name in MODULES:
        return name
    tails = [m for m in MODULES if m.rsplit(".", 1)[-1] == name]
    return tails[0] if len(tails) == 1 else name


def run_module(copy: Path, module: str, jobs: int, equivalents: dict[str, Equivalent]) -> ModuleResult:
    source = source_path(module)
    (copy / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths = {PACKAGE}\n"
        f"only_mutate = {source}\n"
        # Some tests load a benchmark script by path (tests/unit/gate/test_suite.py: benchmarks/gate_replay.py).
        "also_copy =\n    benchmarks\n"
        # The plugin (entry point "longeff") is not needed by these tests: leaving it out keeps the runs fast and
        # independent of plugin code that is not under test.
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -p\n    no:longeff\n"
        "pytest_add_cli_args_test_selection =\n" + "".join(f"    {t}\n" for t in MODULES[module]),
        encoding="utf-8",
    )
    shutil.rmtree(copy / "mutants", ignore_errors=True)
    mutmut(copy, "run", "--max-children", str(jobs), log=copy / f"mutmut-{module}.log")
    statuses = {}
    for line in mutmut(copy, "results", "--all", "true").splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            statuses[match["name"]] = match["status"]
    diffs = mutant_diffs(copy, [name for name, status in statuses.items() if status != "killed"])
    prefix = f"{PACKAGE}.{module}."
    listed, stale = [], []
    for name, entry in equivalents.items():
        if not name.startswith(prefix):
            continue
        if statuses.get(name) == "survived" and changed_lines(diffs[name]) == entry.changed:
            listed.append(name)
        else:
            stale.append(name)
    return ModuleResult(module, statuses, diffs, listed, stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="module", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel mutant runs")
    parser.add_argument("--show", action="store_true", help="print the diff of every undetected mutant")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    parser.add_argument("--fail-under", type=float, default=0.0, metavar="PCT", help="exit 1 below this score")
    args = parser.parse_args(argv)
    modules = [module_name(m) for m in args.modules] or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)} (add one to MODULES)")
    equivalents = read_equivalents(EQUIVALENTS_FILE)
    version = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('mutmut'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()

    copy = Path(tempfile.mkdtemp(prefix="longeff-mutation-"))
    try:
        copy_tree(copy)
        results = []
        for module in modules:
            print(f"== {module}: mutating {source_path(module)} against {' '.join(MODULES[module])}", flush=True)
            results.append(run_module(copy, module, args.jobs, equivalents))
    finally:
        if args.keep:
            print(f"temporary copy kept at {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)

    print(f"\nmutmut {version}")
    header = (
        f"{'module':<{_WIDTH}}" + f"{'mutants':>8}{'killed':>8}{'survived':>9}{'timeout':>8}{'other':>6}{'equiv':>6}"
    )
    header += f"{'score':>8}"
    print(header)
    print("-" * len(header))
    totals = [0, 0, 0, 0, 0, 0]
    for r in results:
        n, killed, survived, timeout = len(r.statuses), r.count("killed"), r.count("survived"), r.count("timeout")
        other, eq = n - killed - survived - timeout, len(r.equivalents)
        for i, v in enumerate((n, killed, survived, timeout, other, eq)):
            totals[i] += v
        score = 100.0 * killed / (n - eq) if n - eq else 100.0
        print(f"{r.module:<{_WIDTH}}{n:>8}{killed:>8}{survived:>9}{timeout:>8}{other:>6}{eq:>6}{score:>7.1f}%")
    n, killed, _, _, _, eq = totals
    overall = 100.0 * killed / (n - eq) if n - eq else 100.0
    print("-" * len(header))
    print(
        f"{'overall':<{_WIDTH}}{totals[0]:>8}{totals[1]:>8}{totals[2]:>9}{totals[3]:>8}{totals[4]:>6}{totals[5]:>6}"
        f"{overall:>7.1f}%"
    )
    print("score = killed / (mutants - listed equivalents); 'other' = no tests, suspicious, segfault, ...")

    for r in results:
        for name in r.stale:
            print(
                f"warning: {name} is listed as equivalent but was {r.statuses.get(name, 'not generated')} "
                "or its diff changed; update tests/support/equivalent_mutants.txt"
            )
        for name in r.undetected:
            print(f"undetected: {name} ({r.statuses[name]})")
            if args.show:
                print("\n".join("    " + line for line in r.diffs[name].splitlines()[1:]))
    return 1 if overall < args.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())

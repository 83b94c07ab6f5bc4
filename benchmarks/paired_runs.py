"""Run the benchmark of two checkouts in pairs on this machine and compare their wall times and figures, cell by cell.

    .venv/bin/python benchmarks/paired_runs.py --a ../old-checkout --b . --pairs 2
    .venv/bin/python benchmarks/paired_runs.py --a ../old --b . --pairs 3 -- -k "led and 1024"

Each checkout runs ``python -m pytest benchmarks`` in its own folder with its own package first on ``sys.path`` (so
one environment serves both) and its own batch-size cache; runs alternate A B A B ..., after one uncounted warm-up
run each (``--warmup 0`` to count the first, fresh batch searches included). Prints every run's wall time, the
ratio B/A pair by pair (median, min, max: on a shared machine compare medians of ratios, never single runs), and for
the last pair's reports:

* figures that must come out the same (scores, batch sizes, FLOPs, statuses): how many cells agree, and each that
  does not;
* time-based figures (throughputs, times, latencies): the median ratio B/A over cells, with its range;
* peak memory: the median ratio B/A over cells.

Figures are read at the paths of B's table of figures; a figure A's records do not have is left out and named.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXACT = ("score", "batch_size", "train_flops_per_step")


def run_once(checkout: Path, out: Path, pytest_args: list[str]) -> float:
    """Wall seconds of one run of ``checkout``'s benchmark, writing its JSON report to ``out``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:randomly", f"--longeff-json={out}",
           "--longeff-plots=none", *pytest_args]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"{checkout}: pytest exited {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall


def _value(record: dict[str, Any], path: list[str]) -> Any:
    node: Any = record
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Lines comparing the cells two reports share, figure by figure (the table of figures is this checkout's)."""
    sys.path.insert(0, str(ROOT))
    from pytest_longeff.record.figures import FIGURES

    cells_a = {r["id"]: r for r in a["records"] if r.get("kind", "cell") == "cell"}
    cells_b = {r["id"]: r for r in b["records"] if r.get("kind", "cell") == "cell"}
    shared = sorted(cells_a.keys() & cells_b.keys())
    lines = [(f"cells: {len(shared)} in both, {len(cells_a.keys() - shared)} only in A, "
             f"{len(cells_b.keys() - shared)} only in B")]
    statuses = sum(cells_a[c].get("status") == cells_b[c].get("status") for c in shared)
    lines.append(f"  status: {statuses}/{len(shared)} cells the same")
    for fig in FIGURES:
        pairs = [(_value(cells_a[c], list(fig.path)), _value(cells_b[c], list(fig.path)), c) for c in shared]
        pairs = [(x, y, c) for x, y, c in pairs if isinstance(x, (int, float)) and isinstance(y, (int, float))]
        if not pairs:
            lines.append(f"  {fig.name}: not in both reports' records")
            continue
        if fig.name in EXACT:
            differ = [f"{c} ({x} vs {y})" for x, y, c in pairs if x != y]
            lines.append(f"  {fig.name}: {len(pairs) - len(differ)}/{len(pairs)} cells the same"
                         + (f"; differ: {', '.join(differ[:6])}" if differ else ""))
        elif fig.time_based or fig.unit == "B":
            ratios = sorted(y / x for x, y, _ in pairs if x > 0)
            if ratios:
                lines.append(f"  {fig.name}: B/A median {statistics.median(ratios):.3f} "
                             f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f}) over {len(ratios)} cells")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the pairs, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, required=True, help="checkout A (the reference)")
    parser.add_argument("--b", type=Path, required=True, help="checkout B (the change)")
    parser.add_argument("--pairs", type=int, default=2, help="counted pairs (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs of each first (default 1)")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to both pytest runs")
    args = parser.parse_args(argv)
    a, b = args.a.resolve(), args.b.resolve()
    with tempfile.TemporaryDirectory(prefix="longeff-pairs-") as tmp:
        out = Path(tmp)
        for k in range(args.warmup):
            for name, checkout in (("A", a), ("B", b)):
                wall = run_once(checkout, out / f"{name}-warmup.json", args.pytest_args)
                print(f"warm-up {k + 1} {name}: {wall:.1f} s", flush=True)
        walls: dict[str, list[float]] = {"A": [], "B": []}
        for k in range(args.pairs):
            for name, checkout in (("A", a), ("B", b)):
                walls[name].append(run_once(checkout, out / f"{name}.json", args.pytest_args))
                print(f"pair {k + 1} {name}: {walls[name][-1]:.1f} s", flush=True)
        ratios = sorted(y / x for x, y in zip(walls["A"], walls["B"], strict=True))
        med_a, med_b = statistics.median(walls["A"]), statistics.median(walls["B"])
        print(f"wall time: A median {med_a:.1f} s, B median {med_b:.1f} s;"
              f" B/A pair by pair median {statistics.median(ratios):.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f})")
        docs = [json.loads((out / f"{n}.json").read_text()) for n in ("A", "B")]
        print("figures of the last pair:")
        for line in compare_reports(*docs):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

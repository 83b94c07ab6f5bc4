"""Run the benchmark matrix and print the figures the suite is judged by.

    .venv/bin/python benchmarks/suite_figures.py                 # the default 64 cells, batch sizes searched anew
    .venv/bin/python benchmarks/suite_figures.py --cached        # reuse batch sizes found by an earlier run
    .venv/bin/python benchmarks/suite_figures.py -- -k "led and 4096" --longeff-memory-budget 256MiB

Prints: wall time of the run (target for the default on a 2-core CPU: under 5 minutes), model builds against the
distinct (family, size) pairs, probes per searched cell (median, max) beside a doubling-then-bisection search
replayed on the same cells, and the share of wall time spent outside measured windows.

The doubling comparison replays each cell on the straight line through its own measured probes (peak memory
against batch size), with the same budget and largest batch: it says how many probes the classic search would
have needed on that cell's measured memory curve, not a second set of real probes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_longeff.cell.search import doubling_bisect  # noqa: E402 - importable only once ROOT is on sys.path
from pytest_longeff.record.sections import is_cell  # noqa: E402


def _line(log: list[dict[str, Any]]) -> tuple[float, float] | None:
    points = sorted({(p["batch_size"], p["peak_memory_bytes"]) for p in log
                     if p.get("peak_memory_bytes") and not p.get("lower_bound")})  # a probe stopped early: no point
    if len(points) < 2:
        return None
    (b0, m0), (b1, m1) = points[0], points[-1]
    slope = (m1 - m0) / (b1 - b0)
    return m0 - slope * b0, slope


def _replay_doubling(record: dict[str, Any]) -> int | None:
    line = _line(record["batch_search"].get("probe_log") or [])
    settings = record.get("_settings", {})
    if line is None:
        return None
    fixed, slope = line
    result = doubling_bisect(lambda b: int(fixed + slope * b), int(record["memory_budget_bytes"]),
                             max_batch=int(settings["max_batch"]))
    return len(result.probes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cached", action="store_true", help="reuse cached batch sizes (default: search anew)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "longeff.json"
        cmd = [sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:randomly", f"--longeff-json={report}",
               *([] if args.cached else ["--longeff-batch-reset"]), *args.pytest_args]
        print("running:", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - t0
        tail = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
        print(f"pytest exit {proc.returncode}: {tail[0]}")
        if not report.is_file():
            print(proc.stdout[-4000:])
            return 1
        doc = json.loads(report.read_text())
    # Cell records only: `pytest benchmarks` also runs the window example, whose records have kind "window".
    records = [r for r in doc["records"] if is_cell(r)]
    session, settings = doc["session"], doc["settings"]
    pairs = {(r["family"], r["size"]) for r in records}
    print(f"wall time: {wall:.1f} s for {len(records)} cells (perf_counter around the pytest process; the "
          f"session itself reports {session.get('wall_s', float('nan')):.1f} s)")
    print(f"model builds: {session.get('model_builds')} for {len(pairs)} distinct (family, size) pairs; "
          f"model cache hits {session.get('model_cache_hits')}")
    searched = [r for r in records if (r.get("batch_search") or {}).get("source") == "searched"]
    if searched:
        probes = [r["batch_search"]["probes"] for r in searched]
        for r in searched:
            r["_settings"] = settings
        replay = [n for n in (_replay_doubling(r) for r in searched) if n is not None]
        print(f"probes per searched cell ({len(searched)} cells): median {statistics.median(probes):g}, "
              f"max {max(probes)}")
        if replay:
            print(f"doubling-then-bisection replayed on the same cells' measured memory lines ({len(replay)} "
                  f"cells): median {statistics.median(replay):g}, max {max(replay)}")
    else:
        print("probes: no cell searched (all batch sizes cached or fixed)")
    outside, worker_wall = session.get("outside_windows_s"), session.get("session_wall_s")
    if outside is not None and worker_wall:
        print(f"outside measured windows: {outside:.1f} s = {100 * outside / worker_wall:.0f} % of the cells' "
              "session time, summed over workers (model builds, data, batch search, scoring, reporting)")
    return 0 if proc.returncode == 0 else proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())

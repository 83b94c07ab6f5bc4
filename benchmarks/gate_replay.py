"""Replay the gate on reports of unchanged code: false-alarm rate, and detection rate of injected slowdowns.

    .venv/bin/python benchmarks/gate_replay.py --runs 5                 # the tiny default matrix, 5 runs (20 pairs)
    .venv/bin/python benchmarks/gate_replay.py --quick --runs 4         # 2 cells per run, 12 pairs: minutes on a CPU
    .venv/bin/python benchmarks/gate_replay.py reports/a.json reports/b.json reports/c.json ...   # existing reports
    .venv/bin/python benchmarks/gate_replay.py --quick --runs 4 --keep replay/ --fail-on "train_samples_per_s:30%"

Every ordered pair (base, new) of the runs is gated as ``pytest-longeff compare`` gates it (per-cell checks, FDR,
suite rule) at ``--fail-on`` (default: the plugin's default). Any failure of an unchanged pair is a false alarm.
Then each new report's throughput figures (medians, quartiles, means and intervals) are scaled down by 5, 10 and
20 % (latencies up accordingly) and the share of pairs the gate fails is the detection rate. Not a timed test.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_longeff.compare import compare_docs
from pytest_longeff.gate import DEFAULT_FAIL_ON, parse_fail_on
from pytest_longeff.report import load_report

QUICK = ["--longeff-families=led,bigbird", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
         "--longeff-eval-samples=2", "--longeff-batch-size=2", "--longeff-train-budget=steps=6"]
COMMON = ["--longeff-device=cpu", "--longeff-energy=none", "--longeff-idle-s=0", "-p", "no:randomly", "-q"]
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


def _scale_stats(stats: Any, factor: float) -> None:
    if not isinstance(stats, dict):
        return
    for key in ("median", "q1", "q3", "mean", "iqr"):
        if isinstance(stats.get(key), (int, float)):
            stats[key] *= factor
    if isinstance(stats.get("ci95"), list):
        stats["ci95"] = sorted(v * factor for v in stats["ci95"])


def slowed(doc: Mapping[str, Any], slowdown: float) -> dict[str, Any]:
    """A copy of ``doc`` whose throughput is ``slowdown`` lower (and per-sample latency correspondingly higher)."""
    out = copy.deepcopy(dict(doc))
    for rec in out.get("records", []):
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


def replay(docs: Sequence[Mapping[str, Any]], fail_on: str) -> dict[str, tuple[int, int]]:
    """(failed pairs, pairs) for unchanged code and per injected slowdown."""
    rules = parse_fail_on(fail_on)
    pairs = list(itertools.permutations(range(len(docs)), 2))
    counts: dict[str, tuple[int, int]] = {}
    for label, slowdown in [("unchanged", 0.0), *((f"slowdown {s:.0%}", s) for s in SLOWDOWNS)]:
        failed = sum(compare_docs(docs[a], slowed(docs[b], slowdown) if slowdown else docs[b], rules).fails()
                     for a, b in pairs)
        counts[label] = (failed, len(pairs))
    return counts


def main(argv: list[str] | None = None) -> int:
    """Generate or read the reports, replay the gate, print the rates."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("reports", nargs="*", type=Path, help="existing reports of unchanged code (else generated)")
    p.add_argument("--runs", type=int, default=5, help="runs to generate (ordered pairs: runs x (runs - 1))")
    p.add_argument("--quick", action="store_true", help="2 tiny cells per run instead of the default matrix")
    p.add_argument("--keep", type=Path, help="keep the generated reports in this folder (to replay them again)")
    p.add_argument("--fail-on", default=DEFAULT_FAIL_ON, help=f"the gate's rules (default {DEFAULT_FAIL_ON})")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="longeff-replay-") as tmp:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        paths = args.reports or generate(args.runs, args.quick, args.keep or Path(tmp))
        docs = [load_report(path) for path in paths if path.exists()]
    if len(docs) < 2:
        print("need at least 2 reports", file=sys.stderr)
        return 2
    cells = sum(r.get("status") == "passed" for r in docs[0].get("records", []))
    print(f"{len(docs)} reports, {cells} passed cells each, fail-on {args.fail_on}")
    for label, (failed, total) in replay(docs, args.fail_on).items():
        what = "false alarms" if label == "unchanged" else "detected"
        print(f"  {label:>14}: {failed}/{total} pairs failed ({what}: {failed / total:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

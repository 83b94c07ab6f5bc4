"""Replay ``pytest-longeff ab`` on the 4-cell gate workload: A/A, real slowdowns and a work regression.

    .venv/bin/python benchmarks/ab_replay.py --replays 10                    # every scenario, 10 jobs each
    .venv/bin/python benchmarks/ab_replay.py --replays 3 --scenarios aa,slow20 --out replay-ab/
    .venv/bin/python benchmarks/ab_replay.py --replays 2 -- --pairs 6        # options after -- go to `ab`

The head is real code, not multiplied figures: a directory whose ``conftest.py`` is
``benchmarks/regressions/slower_families.py``, so the head's LED and Big Bird layers do extra matrix products
(a share of a ``tokens x tokens`` product per layer; ``slow10``, ``slow20``: sized here, before the replays, to
about 10 % and 20 % of a training step by paired timing of the four cells' models) or an extra copy the clock cannot
resolve (``work``). ``aa``: the head is the base's code.
Each job is a fresh ``pytest-longeff ab`` at its defaults (the default 10 % tolerance) with its own seed; the
replay prints, per scenario, the run verdicts (regression / no regression / inconclusive), the false alarms per
(cell, figure) after the FDR and the suite rule (A/A), the work verdicts, the process pairs used and the job's wall
time against one side's plain ``pytest`` run of the same cells; then, from the A/A jobs, where the noise lives
(within a process pair, between pairs: :func:`spread`). Not a timed test: a benchmark that prints figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = ["test_cells.py", "-k", "base and qasper and (1024 or 2048)", "--longeff-families=led,bigbird",
            "--longeff-batch-size=2", "--longeff-device=cpu", "--longeff-energy=none", "--longeff-idle-s=0",
            "--longeff-eval-samples=4", "--longeff-train-budget=steps=12", "-p", "no:randomly"]
SCENARIOS = ("aa", "slow20", "slow10", "work")


def _sides(tmp: Path) -> tuple[Path, Path]:
    base, head = tmp / "base", tmp / "head"
    for side in (base, head):
        side.mkdir()
        shutil.copy(ROOT / "benchmarks" / "test_cells.py", side / "test_cells.py")
    shutil.copy(ROOT / "benchmarks" / "regressions" / "slower_families.py", head / "conftest.py")
    return base, head


def _slower_module() -> Any:
    spec = importlib.util.spec_from_file_location("slower_families",
                                                  ROOT / "benchmarks" / "regressions" / "slower_families.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def calibrate(targets: tuple[float, ...],
              trials: tuple[int, ...] = (25, 35, 50, 70, 90)) -> dict[float, tuple[int, float]]:
    """For each target slowdown, the share of the extra ``L x L`` product per layer (percent of rows) whose paired
    timing over the workload's four models comes closest, and the slowdown measured for it (geometric mean over the
    models)."""
    import torch

    from pytest_longeff.models.families import BUILTIN_FAMILIES

    torch.set_num_threads(1)  # as the sides of an `ab` job measure on this machine
    slower = _slower_module()
    slowdown: dict[int, list[float]] = {n: [] for n in trials}
    for family in BUILTIN_FAMILIES:
        for length in (1024, 2048):
            x = torch.randint(5, 500, (2, length))
            y = torch.randint(5, 500, (2, 16))
            plain = family.build("base", "tiny", 512, 4096, None)
            for n in trials:
                os.environ["LONGEFF_REGRESSION"] = f"matmul:{n}"
                extra = slower._slower(family, "matmul", n).build("base", "tiny", 512, 4096, None)
                for model in (plain, extra):
                    family.prepare(model, length)
                times: dict[int, list[float]] = {0: [], 1: []}
                for rep in range(30):  # interleaved, alternating order
                    for which in ((0, 1) if rep % 2 else (1, 0)):
                        model = (plain, extra)[which]
                        t0 = time.perf_counter()
                        model(input_ids=x, attention_mask=torch.ones_like(x), labels=y).loss.backward()
                        times[which].append(time.perf_counter() - t0)
                        model.zero_grad(set_to_none=True)
                slowdown[n].append(statistics.median(times[1][4:]) / statistics.median(times[0][4:]))
    os.environ.pop("LONGEFF_REGRESSION", None)
    measured = {n: statistics.geometric_mean(v) - 1 for n, v in slowdown.items()}
    print("calibration (percent of an L x L product per layer -> step slowdown): "
          + ", ".join(f"{n}: {s:+.1%}" for n, s in measured.items()), flush=True)
    return {t: min(((n, s) for n, s in measured.items()), key=lambda ns: abs(ns[1] - t)) for t in targets}


def one_side_s(base: Path, runs: int = 2) -> float:
    """Median wall time of one side's plain pytest run of the workload."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", *WORKLOAD, "-q", "--longeff-json=one.json"], cwd=base,
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def job(base: Path, head: Path, regression: str, seed: int, out: Path, ab_args: list[str],
        workload: list[str] | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One `pytest-longeff ab` job (of ``workload``, default :data:`WORKLOAD`, with ``env`` added to this
    environment); its report with the exit code and wall time."""
    env = {**os.environ, **(env or {}), "LONGEFF_REGRESSION": regression}
    out.unlink(missing_ok=True)  # a job that writes no report must not read an earlier replay's
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest_longeff.cli", "ab", "--base", str(base), "--head", str(head),
                           "--seed", str(seed), "--json", str(out), *ab_args, "--", *(workload or WORKLOAD)], env=env,
                          check=False, capture_output=True, text=True)
    report = json.loads(out.read_text()) if out.exists() else {}
    return {**report, "exit": done.returncode, "job_s": time.perf_counter() - t0, "stderr": done.stderr[-2000:]}


def summary(scenario: str, reports: list[dict[str, Any]], one_side: float) -> dict[str, Any]:
    """Counts over one scenario's jobs."""
    verdicts = [r.get("verdict", "error") for r in reports]
    cells = [c for r in reports for c in (r.get("cells") or {}).values()]
    timed = [v for c in cells for v in c.get("verdicts") or [] if "p_worse" in v]
    work = [v for c in cells for v in c.get("verdicts") or [] if v.get("figure") == "work"]
    suite = [s for r in reports for s in r.get("suite") or []]
    train = [s["change"] for s in suite if s.get("figure") == "train_samples_per_s" and s.get("change") is not None]
    per_pair = [r["job_s"] / r["pairs_done"] for r in reports if r.get("pairs_done")]
    return {"scenario": scenario, "jobs": len(reports), "regression": verdicts.count("regression"),
            "no regression": verdicts.count("no regression"), "inconclusive": verdicts.count("inconclusive"),
            "cell regressions": sum(v["verdict"] == "regression" for v in timed),
            "cell checks": len(timed), "suite regressions": sum(s["verdict"] == "regression" for s in suite),
            "work regressions": sum(v["verdict"] == "regression" for v in work), "work checks": len(work),
            "median train change": statistics.median(train) if train else None,
            "median pairs": statistics.median(r.get("pairs_done", 0) for r in reports) if reports else None,
            "median job s": statistics.median(r["job_s"] for r in reports) if reports else None,
            "median s a pair": statistics.median(per_pair) if per_pair else None,
            "job / one side": (statistics.median(r["job_s"] for r in reports) / one_side) if reports else None}


def _cost(answer: Any) -> float | None:
    """One side's time per unit in a round (None unless both are finite numbers above 0)."""
    if not isinstance(answer, dict):
        return None
    t: Any = answer.get("time_s")
    units: Any = answer.get("units")

    def positive(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0

    return t / units if positive(t) and positive(units) else None


def spread(reports: list[dict[str, Any]], min_pairs: int = 3) -> list[dict[str, Any]]:
    """Where the noise of the A/A jobs' timed figures lives, per (cell, window), as medians over the jobs of each
    job's figures: the standard deviation of the rounds' log ratios head/base within a process pair (pooled over the
    pairs), that of the pairs' means, and their excess over what round-to-round noise alone would give the means
    (``between / (within / sqrt(n))``, n the harmonic mean of the pairs' round counts).

    With no difference lasting as long as a pair of processes, the excess is about 1: simulated with independent
    rounds, 10 jobs of 4 to 10 pairs of 4 rounds, the median over the jobs lies within 0.7-1.25 in 90 % of replays.
    A side that gains from going first in a round adds to the spread within pairs but cancels in a pair's mean (the
    order is balanced within a pair), which lowers the excess. A job's cell and window count once it has
    ``min_pairs`` pairs of two rounds or more.
    """
    found: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
    for report in reports:
        for cell_id, cell in (report.get("cells") or {}).items():
            for window in ("train", "inference"):
                pairs: dict[Any, list[float]] = {}
                for r in cell.get("rounds") or []:
                    if r.get("window") != window or not isinstance(r.get("pair"), int):
                        continue
                    b, h = _cost(r.get("base")), _cost(r.get("head"))
                    if b is not None and h is not None:
                        pairs.setdefault(r["pair"], []).append(math.log(h / b))
                full = [v for v in pairs.values() if len(v) >= 2]
                if len(full) < min_pairs:
                    continue
                dof = sum(len(v) - 1 for v in full)
                within = math.sqrt(sum(statistics.variance(v) * (len(v) - 1) for v in full) / dof)
                between = statistics.stdev(statistics.fmean(v) for v in full)
                n = statistics.harmonic_mean([len(v) for v in full])
                excess = between / (within / math.sqrt(n)) if within > 0 else None
                found.setdefault((cell_id, window), []).append((within, between, excess))
    rows = []
    for (cell_id, window), v in sorted(found.items()):
        excesses = [x[2] for x in v if x[2] is not None]
        rows.append({"cell": cell_id, "window": window, "jobs": len(v),
                     "within pair sd": statistics.median(x[0] for x in v),
                     "between pairs sd": statistics.median(x[1] for x in v),
                     "excess": statistics.median(excesses) if excesses else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replays", type=int, default=10, help="jobs per scenario (default 10)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"among {', '.join(SCENARIOS)}")
    p.add_argument("--out", type=Path, help="keep every job's report here")
    p.add_argument("--from", dest="from_dir", type=Path, metavar="DIR",
                   help="run nothing: print the tables again from the reports an earlier replay kept in DIR (--out)")
    args, ab_args = p.parse_known_args(argv)
    if args.from_dir is not None:
        return reprint(args.from_dir)
    ab_args = [a for a in ab_args if a != "--"]
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        p.error(f"--scenarios: unknown {', '.join(unknown)}; accepted: {', '.join(SCENARIOS)}")
    tmp = Path(tempfile.mkdtemp(prefix="ab-replay-"))
    out = args.out or tmp / "reports"
    out.mkdir(parents=True, exist_ok=True)
    base, head = _sides(tmp)
    sized = calibrate((0.10, 0.20)) if {"slow10", "slow20"} & set(chosen) else {}
    regressions = {"aa": "none", "work": "copy:1"}
    for target, name in ((0.10, "slow10"), (0.20, "slow20")):
        if target in sized:
            regressions[name] = f"matmul:{sized[target][0]}"
            print(f"{name}: matmul:{sized[target][0]} (paired timing: {sized[target][1]:+.1%} a step)", flush=True)
    one_side = one_side_s(base)
    print(f"one side's plain pytest run of the workload: {one_side:.1f} s (median of 2)", flush=True)
    rows = []
    aa_reports: list[dict[str, Any]] = []
    for scenario in chosen:
        reports = []
        for i in range(args.replays):
            r = job(base, head, regressions[scenario], i, out / f"{scenario}-{i}.json", ab_args)
            reports.append(r)
            print(f"{scenario} {i + 1}/{args.replays}: {r.get('verdict', 'error')} (exit {r['exit']}, "
                  f"{r.get('pairs_done', 0)} pairs, {r['job_s']:.0f} s)", flush=True)
        rows.append(summary(scenario, reports, one_side))
        if scenario == "aa":
            aa_reports = reports
    kept = {"regressions": regressions, "one_side_s": one_side, "rows": rows,
            "aa_reports": [f"aa-{i}.json" for i in range(len(aa_reports)) if (out / f"aa-{i}.json").exists()]}
    (out / "summary.json").write_text(json.dumps(kept, indent=1))
    _print(rows, spread(aa_reports))
    print(f"reports: {out}")
    return 0


def _print(rows: list[dict[str, Any]], noise: list[dict[str, Any]]) -> None:
    from tabulate import tabulate

    print(tabulate([list(r.values()) for r in rows], list(rows[0]), floatfmt=".3g") if rows else "no scenario")
    if noise:
        print("\nA/A noise, log ratio head/base per unit (each column the median over the jobs of each job's figure):")
        print(tabulate([list(r.values()) for r in noise], list(noise[0]), floatfmt=".3g", missingval="n/a"))


def reprint(folder: Path) -> int:
    """``--from DIR``: the summary an earlier replay wrote, and the noise table from the A/A reports it names."""
    where = folder / "summary.json"
    try:
        kept = json.loads(where.read_text())
        if not isinstance(kept, dict) or not isinstance(kept.get("rows"), list):
            raise ValueError("not a replay's summary (no list of rows)")
        rows = [r for r in kept["rows"] if isinstance(r, dict)]
        names = kept.get("aa_reports")
        files = [folder / str(n) for n in names] if isinstance(names, list) else sorted(folder.glob("aa-*.json"))
        aa = []
        for where in files:
            report = json.loads(where.read_text())
            if not isinstance(report, dict) or not isinstance(report.get("cells") or {}, dict) or not all(
                    isinstance(c, dict) and isinstance(c.get("rounds") or [], list)
                    and all(isinstance(r, dict) for r in c.get("rounds") or [])
                    for c in (report.get("cells") or {}).values()):
                raise ValueError("not an A/B report (cells and their rounds must be objects)")
            aa.append(report)
    except (OSError, ValueError) as exc:
        print(f"--from {folder}: {where.name}: {exc}; give the folder a replay kept its reports in with --out "
              "(summary.json and aa-N.json)", file=sys.stderr)
        return 2
    one_side = kept.get("one_side_s")
    print(f"regressions: {kept.get('regressions')}; one side's plain run: "
          + (f"{one_side:.1f} s" if isinstance(one_side, (int, float)) else "n/a"))
    _print(rows, spread(aa))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

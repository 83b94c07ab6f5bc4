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
time against one side's plain ``pytest`` run of the same cells. Not a timed test: a benchmark that prints figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
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


def calibrate(targets: tuple[float, ...], trials: tuple[int, ...] = (25, 35, 50, 70, 90)) -> dict[float, tuple[int, float]]:
    """For each target slowdown, the share of the extra ``L x L`` product per layer (percent of rows) whose paired
    timing over the workload's four models comes closest, and the slowdown measured for it (geometric mean over the models)."""
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


def job(base: Path, head: Path, regression: str, seed: int, out: Path, ab_args: list[str]) -> dict[str, Any]:
    """One `pytest-longeff ab` job; its report with the exit code and wall time."""
    env = {**os.environ, "LONGEFF_REGRESSION": regression}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest_longeff.cli", "ab", "--base", str(base), "--head", str(head),
                           "--seed", str(seed), "--json", str(out), *ab_args, "--", *WORKLOAD], env=env, check=False,
                          capture_output=True, text=True)
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
    return {"scenario": scenario, "jobs": len(reports), "regression": verdicts.count("regression"),
            "no regression": verdicts.count("no regression"), "inconclusive": verdicts.count("inconclusive"),
            "cell regressions": sum(v["verdict"] == "regression" for v in timed),
            "cell checks": len(timed), "suite regressions": sum(s["verdict"] == "regression" for s in suite),
            "work regressions": sum(v["verdict"] == "regression" for v in work), "work checks": len(work),
            "median train change": statistics.median(train) if train else None,
            "median pairs": statistics.median(r.get("pairs_done", 0) for r in reports) if reports else None,
            "median job s": statistics.median(r["job_s"] for r in reports) if reports else None,
            "job / one side": (statistics.median(r["job_s"] for r in reports) / one_side) if reports else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replays", type=int, default=10, help="jobs per scenario (default 10)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"among {', '.join(SCENARIOS)}")
    p.add_argument("--out", type=Path, help="keep every job's report here")
    args, ab_args = p.parse_known_args(argv)
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
    for scenario in chosen:
        reports = []
        for i in range(args.replays):
            r = job(base, head, regressions[scenario], i, out / f"{scenario}-{i}.json", ab_args)
            reports.append(r)
            print(f"{scenario} {i + 1}/{args.replays}: {r.get('verdict', 'error')} (exit {r['exit']}, "
                  f"{r.get('pairs_done', 0)} pairs, {r['job_s']:.0f} s)", flush=True)
        rows.append(summary(scenario, reports, one_side))
    (out / "summary.json").write_text(json.dumps({"regressions": regressions, "one_side_s": one_side, "rows": rows},
                                                 indent=1))
    from tabulate import tabulate

    print(tabulate([list(r.values()) for r in rows], list(rows[0]), floatfmt=".3g") if rows else "no scenario")
    print(f"reports: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

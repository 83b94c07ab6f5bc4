"""Where the A/A noise of ``pytest-longeff ab`` lives under other settings of the sides' processes, in alternating
jobs.

    .venv/bin/python benchmarks/ab_noise.py                        # huge pages (ab's default) against 4 KiB pages
    .venv/bin/python benchmarks/ab_noise.py --jobs 5 -k "bigbird and base and qasper and 1024" --out noise/
    .venv/bin/python benchmarks/ab_noise.py --setting "hash seed 0:PYTHONHASHSEED=0" --setting "as set:"

Each job is an A/A ``pytest-longeff ab`` (the replay's base and head, :mod:`ab_replay`) of one cell, at a fixed
number of process pairs so that every job's spread has the same footing; a setting is environment variables the
job's sides start with (``ab`` passes its environment to both). The settings' jobs alternate, in turn order
reversed from one job to the next, so a machine that drifts during the comparison drifts under every setting.
Per setting and window, medians over its jobs (:func:`ab_replay.spread`): the spread of the rounds' log ratios
head/base within a process pair, that of the pairs' means, their excess over round noise (about 1 when nothing
lasts a process pair), and what lasts a process pair once round noise is taken out
(``sqrt(between² - within² / n)``). Not a timed test: a benchmark that prints figures.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_longeff.ab.sides import HUGE_PAGES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_replay import WORKLOAD, _sides, job, spread  # the replay's sides, job and noise table

#: ab's own default (its sides start with glibc's malloc on transparent huge pages) against glibc's 4 KiB pages.
DEFAULT_SETTINGS = (("huge pages", {"GLIBC_TUNABLES": HUGE_PAGES}),
                    ("4 KiB pages", {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}))
DEFAULT_K = "led and base and qasper and 1024"


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    """``LABEL:VAR=VALUE[,VAR=VALUE...]`` (``LABEL:`` alone: the environment as it is); ValueError says why."""
    label, sep, assignments = text.partition(":")
    if not sep or not label.strip():
        raise ValueError(f"--setting {text!r}: expected LABEL:VAR=VALUE[,VAR=VALUE...] (LABEL: alone for the "
                         "environment as it is)")
    env: dict[str, str] = {}
    for item in filter(None, (a.strip() for a in assignments.split(","))):
        var, eq, value = item.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise ValueError(f"--setting {text!r}: {item!r} is not VAR=VALUE with a variable name")
        env[var] = value
    return label.strip(), env


def lasting(within: float, between: float, rounds: float) -> float:
    """The part of the pairs' spread that round noise does not explain: ``sqrt(max(0, between² - within² / n))``."""
    return math.sqrt(max(0.0, between ** 2 - within ** 2 / rounds))


def table(by_setting: dict[str, list[dict[str, Any]]], rounds: int) -> list[dict[str, Any]]:
    """Per setting, cell and window: the medians of :func:`ab_replay.spread` over the setting's jobs, each job's
    spread between pairs, and the lasting part (from the medians)."""
    rows = []
    for label, reports in by_setting.items():
        for row in spread(reports):
            per_job = [r["between pairs sd"] for one in reports for r in spread([one])
                       if (r["cell"], r["window"]) == (row["cell"], row["window"])]
            rows.append({"setting": label, **row,
                         "lasting": lasting(row["within pair sd"], row["between pairs sd"], rounds),
                         "between, each job": " ".join(f"{x:.3f}" for x in per_job)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", action="append", metavar="LABEL:VAR=VALUE[,...]",
                   help="a setting of the sides' environment (repeat; default: 'huge pages' "
                   "GLIBC_TUNABLES=glibc.malloc.hugetlb=1 against '4 KiB pages' GLIBC_TUNABLES=glibc.malloc.hugetlb=0)")
    p.add_argument("--jobs", type=int, default=3, help="A/A jobs per setting (default 3)")
    p.add_argument("--pairs", type=int, default=8, help="process pairs per job, fixed (default 8)")
    p.add_argument("--rounds", type=int, default=4, help="rounds per cell in each pair (default 4, ab's default)")
    p.add_argument("-k", dest="k", default=DEFAULT_K, help=f"the cells, as pytest -k (default {DEFAULT_K!r})")
    p.add_argument("--out", type=Path, help="keep every job's report here")
    args = p.parse_args(argv)
    try:
        settings = [parse_setting(s) for s in args.setting] if args.setting else list(DEFAULT_SETTINGS)
    except ValueError as exc:
        p.error(str(exc))
    if len({label for label, _ in settings}) < len(settings):
        p.error("--setting: every setting needs a label of its own")
    if args.jobs < 2 or args.pairs < 3 or args.rounds < 2:
        p.error("--jobs must be at least 2, --pairs at least 3 and --rounds at least 2 (a spread needs them)")
    workload = list(WORKLOAD)
    workload[workload.index("-k") + 1] = args.k
    tmp = Path(tempfile.mkdtemp(prefix="ab-noise-"))
    out = args.out or tmp / "reports"
    out.mkdir(parents=True, exist_ok=True)
    base, head = _sides(tmp)
    ab_args = ["--pairs", str(args.pairs), "--min-pairs", str(args.pairs), "--rounds", str(args.rounds)]
    by_setting: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in settings}
    started = time.perf_counter()
    for j in range(args.jobs):
        for label, env in settings if j % 2 == 0 else settings[::-1]:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower() or "setting"
            r = job(base, head, "none", j, out / f"{slug}-{j}.json", ab_args, workload, env)
            if not r.get("cells"):
                print(f"{label} {j + 1}/{args.jobs}: no report (exit {r['exit']}): {r['stderr'][-400:]}",
                      file=sys.stderr)
                continue
            by_setting[label].append(r)
            between = ", ".join(f"{x['window']} {x['between pairs sd']:.3f}" for x in spread([r]))
            print(f"{label} {j + 1}/{args.jobs}: {r.get('pairs_done', 0)} pairs, {r['job_s']:.0f} s; between pairs: "
                  f"{between} ({time.perf_counter() - started:.0f} s in all)", flush=True)
    from tabulate import tabulate

    rows = table(by_setting, args.rounds)
    (out / "noise.json").write_text(json.dumps({"settings": [[label, env] for label, env in settings],
                                                "k": args.k, "pairs": args.pairs, "rows": rows}, indent=1))
    print("\nA/A noise, log ratio head/base per unit (medians over each setting's jobs):")
    print(tabulate([list(r.values()) for r in rows], list(rows[0]), floatfmt=".3g", missingval="n/a")
          if rows else "no job gave a report")
    print(f"reports: {out}")
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())

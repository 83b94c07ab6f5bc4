r"""``pytest-longeff ab``: base and head measured side by side in one job, decided when the evidence is enough.

    pytest-longeff ab --base ../base --head . [--fail-on SPEC] [--json OUT] -- benchmarks -k "led and 1024"

Both sides collect the same cells with their own code (``pytest --collect-only`` with the arguments after the
options, in their own directory) and measure them in the same job on the same machine. Per process pair (a fresh
base process and a fresh head process, over execnet gateways): every selected cell is prepared on both sides at the
base's batch size, then measured in rounds of paired windows, a few training steps and a few fixed-token
generations, in randomized ABBA order (``--schedule interleaved``) or at the same time with the cores split between
the sides (``--schedule duet``). Pairs go on until every gated figure and the suite are decided, a regression is
decided (from ``--min-pairs`` on; not with ``--keep-going``) or ``--pairs`` is spent
(:mod:`pytest_longeff.ab.stats`); the work counters of a step and a token are compared exactly.

Exit codes: 0 no regression; 1 a regression; 2 a usage error or a side that cannot run; 3 inconclusive (the
measurements could not resolve the tolerance; the report says the smallest change they could).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_longeff.ab.judge import DEFAULT_FAIL_ON, gated_under, judge_cells, parse_rules
from pytest_longeff.ab.report import EXIT_USAGE, KIND, SCHEMA_VERSION, exit_code
from pytest_longeff.ab.sides import Env, Side, SideError, both, close_both
from pytest_longeff.ab.stats import INCONCLUSIVE, REGRESSION

SIDES = ("base", "head")
JUDGED_AT_STOP = "judged at the job's stop, as at the budget's end"


@dataclass(frozen=True)
class Plan:
    """How much to measure: process pairs (at least ``min_pairs``, at most ``pairs``), rounds per cell in each pair,
    and each window's length in seconds (set from the base's warm-up in the first pair, then fixed)."""

    pairs: int = 10
    min_pairs: int = 4
    rounds: int = 4
    window_s: float = 0.25
    schedule: str = "interleaved"
    seed: int = 0
    threads_per_side: int | None = None
    keep_going: bool = False
    """Measure on after a timed regression is decided, until every figure is decided or the budget is spent. By
    default the job stops there: a decided regression is final (not revisited), and a slowdown near the tolerance
    would otherwise hold the job to the whole budget for the figures it left undecided. An exact regression (work,
    batch size, a cell the head breaks) always stops the job."""

    def cpus(self, pair: int) -> tuple[list[int] | None, list[int] | None]:
        """The CPU cores of the base's and the head's process in process pair ``pair`` (None: unpinned, where the
        platform cannot pin). Interleaved: both on the same one core (what else runs on that core slows both sides
        alike, and neither side's process wanders to a busier one), rotating over the cores from pair to pair.
        Duet: the cores split in halves, the halves swapped from pair to pair. Pinning is skipped where the torch
        threads asked for do not fit."""
        if not hasattr(os, "sched_getaffinity"):
            return None, None
        cores = sorted(os.sched_getaffinity(0))
        if self.schedule == "duet":
            half = len(cores) // 2
            if half < self.threads():
                return None, None
            a, b = cores[:half], cores[half:2 * half]
            return (a, b) if pair % 2 == 0 else (b, a)
        if self.threads() > 1:
            return None, None
        core = [cores[pair % len(cores)]]
        return core, core

    def threads(self) -> int:
        """Torch threads per side: as given, else one when the sides take turns (measured here: less noise than
        every core, whose threads stall on any other process) and half the cores each in duet."""
        if self.threads_per_side:
            return self.threads_per_side
        return max(1, (os.cpu_count() or 2) // 2) if self.schedule == "duet" else 1


def _start(base: Env, head: Env, swap: bool) -> tuple[Side, Side]:
    """A fresh process per side (started in alternating order, so neither side always comes first)."""
    if swap:
        h = Side(head)
        try:
            return Side(base), h
        except SideError:
            h.close()
            raise
    b = Side(base)
    try:
        return b, Side(head)
    except SideError:
        b.close()
        raise


class AbJob:
    """One A/B job: the sides, the plan, the cells' rounds and verdicts, and the report they make."""

    def __init__(self, base: Env, head: Env, pytest_args: Sequence[str], plan: Plan, rules: dict[str, float],
                 say: Callable[[str], None]) -> None:
        self.base, self.head, self.args, self.plan, self.rules, self.say = base, head, list(pytest_args), plan, \
            rules, say
        self.rules, energy = gated_under(plan.schedule, rules)
        if energy:
            say(f"ab: duet: {', '.join(energy)} not gated (a device-wide energy meter reads both sides at once)")
        self.rng = random.Random(plan.seed)
        self.cells: dict[str, dict[str, Any]] = {}
        self.sides_info: dict[str, Any] = {"base": {**base.describe()}, "head": {**head.describe()}}
        self.judged: dict[str, Any] = {"verdict": INCONCLUSIVE, "suite": [], "undecided": 0, "errors": []}
        self.started = time.perf_counter()
        self.pairs_done = 0
        self.stopped = f"the budget of --pairs {plan.pairs} process pairs spent"

    def run(self) -> dict[str, Any]:
        """Measure pair after pair until decided or the budget is spent; the report."""
        for j in range(self.plan.pairs):
            sides = _start(self.base, self.head, swap=j % 2 == 1)
            try:
                self._collect(sides, j)
                order = [c for c in self.cells if not self.cells[c].get("error")]
                for cell in self.rng.sample(order, len(order)):
                    self._cell(sides, cell, j)
            finally:
                close_both(sides)
            self.pairs_done = j + 1
            final = self.pairs_done == self.plan.pairs
            self.judged = judge_cells(self.rules, self.cells, final)
            self.say(self._progress())
            if self.pairs_done >= self.plan.min_pairs and self.judged["undecided"] == 0:
                if not final:  # at the budget's end, the default text (the budget spent) stands
                    self.stopped = "nothing left to decide"
                break
            if self.judged.get("exact_regression"):  # more rounds cannot undo a change of work or of the batch
                self.say("ab: the work counters or the batch size changed: a regression however the clock reads")
                self.stopped = "an exact regression (work counters, batch size or a cell the head breaks)"
                break
            if not any(not c.get("error") for c in self.cells.values()):
                self.stopped = "no cell can run"
                break
            if self.pairs_done >= self.plan.min_pairs and self.judged["verdict"] == REGRESSION and not final \
                    and not self.plan.keep_going:  # a (cell, figure) beyond the tolerance after the FDR, or the suite
                self.say("ab: a regression is decided: the job stops here (--keep-going would measure on until "
                         "every figure is decided)")
                self.stopped = "a regression decided before the budget's end (--keep-going was not given)"
                break
        if self.pairs_done < self.plan.pairs and self.judged["undecided"]:  # stopped early (errors, a regression):
            # no more pairs will come, so the undecided figures are judged once, as with the budget spent
            undecided = {key for key, v in self._verdicts() if v.get("verdict") == INCONCLUSIVE}
            self.judged = judge_cells(self.rules, self.cells, True)
            for key, v in self._verdicts():
                if key in undecided:
                    v["note"] = "; ".join(filter(None, (v.get("note"), JUDGED_AT_STOP)))
        return self.report()

    def _verdicts(self) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        """Every verdict, the cells' and the suite's, by (cell id, "" for the suite; figure)."""
        out = [((cid, str(v.get("figure"))), v) for cid, c in self.cells.items() for v in c.get("verdicts") or []]
        return out + [(("", str(v.get("figure"))), v) for v in self.judged.get("suite") or []]

    def _progress(self) -> str:
        undecided = self.judged["undecided"]
        state = "all decided" if not undecided else f"{undecided} undecided"
        return (f"ab: pair {self.pairs_done}/{self.plan.pairs} done, {time.perf_counter() - self.started:.0f} s: "
                f"{state}, verdict so far: {self.judged['verdict']}")

    def _collect(self, sides: tuple[Side, Side], pair: int) -> None:
        threads = self.plan.threads()
        cpus = self.plan.cpus(pair)
        answers = both(sides, "collect", tuple({"args": self.args, "threads": threads, "cpus": c} for c in cpus))
        first = pair == 0
        for name, answer in zip(SIDES, answers, strict=True):
            self.sides_info[name].setdefault("cpus_by_pair", []).append(answer.get("cpus"))
            self.sides_info[name].setdefault("cpus_between_windows_by_pair", []).append(
                answer.get("cpus_between_windows"))
        if first:
            self._check_same(answers)
            for name, side, answer in zip(SIDES, sides, answers, strict=True):
                self.sides_info[name].update({"hello": side.hello, "settings": answer["settings"],
                                              "machine": answer["machine"], "code": answer["code"],
                                              "threads": answer["threads"], "device": answer["device"]})
            self.cells = {c: {"rounds": []} for c in answers[0]["cells"] if c in set(answers[1]["cells"])}
            self.say(f"ab: {len(self.cells)} cells; base {self.base.directory} ({answers[0]['code'][:12]}), "
                     f"head {self.head.directory} ({answers[1]['code'][:12]}); schedule {self.plan.schedule}")
            hello = sides[0].hello
            self.say(f"ab: the sides' heap: GLIBC_TUNABLES={hello.get('glibc_tunables') or '(unset)'}, "
                     f"{hello.get('libc') or 'C library unknown'}, transparent huge pages "
                     f"{hello.get('thp') or 'unavailable'} (huge pages need glibc 2.35 or later and THP madvise or "
                     "always)")

    def _check_same(self, answers: tuple[dict[str, Any], dict[str, Any]]) -> None:
        from pytest_longeff.record.io import settings_diff

        a, b = answers
        differ = settings_diff(a["settings"], b["settings"])
        if differ is not None:
            raise SideError(f"the sides resolved other settings ({differ}): give both the same options")
        only = sorted(set(a["cells"]) ^ set(b["cells"]))
        if only:
            self.say(f"ab: {len(only)} cells exist on one side only and are left out (e.g. {only[0]})")
        if not set(a["cells"]) & set(b["cells"]):
            raise SideError(f"no cell is selected on both sides by `pytest --collect-only {' '.join(self.args)}`")

    def _cell(self, sides: tuple[Side, Side], cell: str, pair: int) -> None:
        entry = self.cells[cell]
        try:
            if "batch" not in entry:
                self._first_prepare(sides, cell, entry)
            else:
                both(sides, "prepare", ({"cell": cell, "batch": entry["batch"], "tokens": entry["tokens"],
                                         "count": False},) * 2)
            for r in range(self.plan.rounds):
                self._round(sides, cell, entry, pair, r)
            both(sides, "release", ({"cell": cell},) * 2)
        except SideError as exc:
            if exc.sides == ("head",):  # the base runs it: the head broke the cell, a regression however timed
                entry["head_error"] = str(exc)
            entry["error"] = str(exc)
            self.say(f"ab: {cell}: {exc}; the other cells go on")
            try:
                both(sides, "release", ({"cell": cell},) * 2)
            except SideError:
                pass

    def _first_prepare(self, sides: tuple[Side, Side], cell: str, entry: dict[str, Any]) -> None:
        """The base chooses the batch; the head runs at it and reports its own choice (a smaller one is a memory
        regression); both count their work; window lengths come from the base's warm-up."""
        b = sides[0].call("prepare", cell=cell, batch=None, tokens=None, count=True)
        h = sides[1].call("prepare", cell=cell, batch=b["batch"], tokens=b["tokens"], count=True)
        entry.update(batch=b["batch"], tokens=b["tokens"], model=b.get("model"), params=b.get("params"),
                     searched={"base": b["searched_batch"], "head": h["searched_batch"]},
                     work={"base": b["work"], "head": h["work"]},
                     steps=max(1, round(self.plan.window_s / max(b["step_s"], 1e-6))),
                     repeats=max(1, round(self.plan.window_s / max(b["generate_s"], 1e-6))))
        if isinstance(h["searched_batch"], int) and h["searched_batch"] < b["batch"]:
            entry["memory_regression"] = (f"the head's batch-size search finds {h['searched_batch']}, the base's "
                                          f"{b['batch']}, under the same memory budget")

    def _round(self, sides: tuple[Side, Side], cell: str, entry: dict[str, Any], pair: int, r: int) -> None:
        for window, op, args in (("train", "train", {"steps": entry["steps"]}),
                                 ("inference", "infer", {"repeats": entry["repeats"]})):
            args = {"cell": cell, **args}
            if self.plan.schedule == "duet":
                a, b = both(sides, op, (args, args))
                order = "duet"
            else:  # ABBA: each pair of rounds runs both orders, the first chosen at random
                key = f"_first_{window}"
                first = self.rng.random() < 0.5 if r % 2 == 0 else entry.get(key, True)
                entry[key] = not first
                seq = (0, 1) if first else (1, 0)
                got = {i: sides[i].call(op, **args) for i in seq}
                a, b = got[0], got[1]
                order = "AB" if first else "BA"
            entry["rounds"].append({"pair": pair, "round": r, "window": window, "order": order, "base": a,
                                    "head": b})

    def report(self) -> dict[str, Any]:
        """The job's report: both sides, the plan, every round and every verdict."""
        for c in self.cells.values():
            for key in [k for k in c if k.startswith("_first")]:
                c.pop(key)
        return {"kind": KIND, "schema_version": SCHEMA_VERSION, "sides": self.sides_info, "plan": asdict(self.plan),
                "pytest_args": self.args, "rules": self.rules, "pairs_done": self.pairs_done, "stopped": self.stopped,
                "environment": {"GLIBC_TUNABLES": self.sides_info["base"].get("hello", {}).get("glibc_tunables")},
                "wall_s": time.perf_counter() - self.started, "cells": self.cells, **self.judged}



def parser() -> argparse.ArgumentParser:
    """The ``ab`` subcommand's options; everything else goes to ``pytest --collect-only`` on both sides."""
    p = argparse.ArgumentParser(
        prog="pytest-longeff ab", description="Measure base and head side by side in one job and gate the head. "
        "Arguments after the options (or after --) select the cells as pytest would (default: benchmarks). "
        "Exit 0: no regression; 1: regression; 2: usage error or a side cannot run; 3: inconclusive.")
    p.add_argument("--base", required=True, metavar="ENV", help="the base: a checkout directory (with its .venv, "
                   "else this interpreter) or a Python interpreter with pytest-longeff installed")
    p.add_argument("--head", required=True, metavar="ENV", help="the head, as --base")
    p.add_argument("--fail-on", default=DEFAULT_FAIL_ON, metavar="SPEC",
                   help=f"figures and tolerated change for the worse (default {DEFAULT_FAIL_ON})".replace("%", "%%"))
    p.add_argument("--pairs", type=_at_least(1), default=Plan.pairs, metavar="N",
                   help=f"most process pairs (default {Plan.pairs})")
    p.add_argument("--min-pairs", type=_at_least(2), default=Plan.min_pairs, metavar="N",
                   help=f"fewest process pairs before a decision (default {Plan.min_pairs})")
    p.add_argument("--rounds", type=_at_least(1), default=Plan.rounds, metavar="N",
                   help=f"paired rounds per cell in each process pair (default {Plan.rounds})")
    p.add_argument("--window-s", type=float, default=Plan.window_s, metavar="S",
                   help=f"length of each measured window, from the base's warm-up (default {Plan.window_s})")
    p.add_argument("--schedule", choices=("interleaved", "duet"), default=Plan.schedule,
                   help="sides take turns in randomized ABBA order, or run at once with the cores split "
                   f"(default {Plan.schedule})")
    p.add_argument("--threads", type=_at_least(1), metavar="N",
                   help="torch threads per side (default: 1 when interleaved, half the cores each in duet)")
    p.add_argument("--keep-going", action="store_true",
                   help="after a timed regression is decided (at --min-pairs or later), measure on until every "
                   "figure is decided or --pairs is spent (default: stop there; a decided regression is final; an "
                   "exact one, of work, batch size or a cell the head breaks, always stops the job)")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomized order (default 0)")
    p.add_argument("--json", type=Path, default=Path("reports/longeff-ab.json"), metavar="OUT",
                   help="the report (default reports/longeff-ab.json)")
    p.add_argument("--markdown", type=Path, metavar="OUT.md", help="also write the verdicts as Markdown")
    return p


def _at_least(n: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {n}, got {text!r}") from None
        if value < n:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {n}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    """Run ``ab``; the exit code."""
    from pytest_longeff.ab.render import render
    from pytest_longeff.record.io import atomic_write_text

    args, rest = parser().parse_known_args(argv)
    rest = [a for a in rest if a != "--"] or ["benchmarks"]
    try:
        rules = parse_rules(args.fail_on)
        base, head = Env.parse("base", args.base), Env.parse("head", args.head)
        if args.min_pairs > args.pairs:
            raise ValueError(f"--min-pairs {args.min_pairs} exceeds --pairs {args.pairs}")
        if not 0 < args.window_s <= 3600:
            raise ValueError(f"--window-s must be > 0 and at most 3600 seconds, got {args.window_s}")
    except ValueError as exc:
        print(f"pytest-longeff ab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    plan = Plan(args.pairs, args.min_pairs, args.rounds, args.window_s, args.schedule, args.seed, args.threads,
                args.keep_going)
    job = AbJob(base, head, rest, plan, rules, lambda line: print(line, file=sys.stderr, flush=True))
    try:
        report = job.run()
    except Exception as exc:  # noqa: BLE001 - whatever stopped the job, what was measured is written
        why = str(exc) if isinstance(exc, SideError) else f"{type(exc).__name__}: {exc}"
        print(f"pytest-longeff ab: {why}", file=sys.stderr)
        report = {**job.report(), "error": why, "stopped": "an error (the report's error)"}
        if job.pairs_done == 0:
            _write(args.json, report)
            return EXIT_USAGE
        if report.get("verdict") != "regression":  # stopped short of the plan: never "no regression"
            report["verdict"] = "inconclusive"
    _write(args.json, report)
    print(render(report), end="")
    if args.markdown is not None:
        atomic_write_text(args.markdown, render(report, "github", heading="## pytest-longeff A/B gate\n\n"))
    return exit_code(report)


def _write(path: Path, report: dict[str, Any]) -> None:
    from pytest_longeff.record.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1, default=str) + "\n")
    print(f"ab: report written to {path}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

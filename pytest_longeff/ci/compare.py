r"""``pytest-longeff compare BASE.json NEW.json``: the regression gate outside pytest, on two saved reports.

    pytest-longeff compare baseline.json reports/longeff.json --fail-on "train_samples_per_s:10%" \
        [--acknowledged acknowledged.toml] [--markdown gate.md]

Prints a table of changes per (cell, metric) with the per-cell verdict (as the pytest gate gives it) and the
run-level one (Benjamini-Hochberg FDR), then the suite rule per metric. Exit codes:

* 0: no regression (acknowledged ones included), every check and the suite rule resolved within the tolerance;
* 1: a regression: a per-cell failure, an FDR regression, a failed suite rule, or a cell that passed in the
  baseline and is now skipped or errored;
* 2: refused or unusable input: a report that cannot be read or has another ``schema_version``, reports from
  another machine or software stack or measured under other settings (the message says which keys differ), a
  wrong ``--fail-on`` or acknowledged file;
* 3: inconclusive: no regression found, but a check or the suite rule could not resolve its tolerance (intervals
  too wide, or no interval for a noisy figure); never reported as "no regression". Measure side by side with
  ``pytest-longeff ab`` to decide.

Refreshing the baseline on purpose is a copy of a good run's report: ``cp reports/longeff.json baseline.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_longeff.choices import DEFAULT_FAIL_ON
from pytest_longeff.gate.acknowledge import Ack, load_acknowledged
from pytest_longeff.gate.check import Rule, gate_record, parse_fail_on, refusal
from pytest_longeff.gate.suite import RunVerdict

EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
HEADERS = ["cell", "metric", "baseline", "current", "change", "tolerance", "per-cell", "q (FDR)", "run"]
SUITE_HEADERS = ["metric", "cells", "geomean change", "tolerance", "p", "suite"]


@dataclass(frozen=True)
class Comparison:
    """Two reports compared: every per-cell check (by cell id), the run-level verdict."""

    checks: tuple[tuple[str, Mapping[str, Any]], ...]
    run: RunVerdict

    def fails(self) -> bool:
        """Whether the new report regressed (a per-cell failure or a failing run-level verdict)."""
        return self.run.fails() or any(c.get("status") == "failed" for _, c in self.checks)

    def inconclusive(self) -> bool:
        """Whether no regression was found but some check or suite rule could not resolve its tolerance."""
        return not self.fails() and (bool(self.run.inconclusive)
                                     or any(c.get("status") == "inconclusive" for _, c in self.checks))

    def verdict(self) -> str:
        """REGRESSION, INCONCLUSIVE or "no regression"."""
        return "REGRESSION" if self.fails() else "INCONCLUSIVE" if self.inconclusive() else "no regression"


def compare_docs(base: Mapping[str, Any], new: Mapping[str, Any], rules: Sequence[Rule],
                 acks: Sequence[Ack] = ()) -> Comparison:
    """The gate on two reports; a refusal (other machine or settings) is in ``run.refused``."""
    from pytest_longeff.gate.check import judge_run

    run = judge_run(rules, base, new.get("records", []), acks, new.get("machine") or {}, new.get("settings") or {})
    if run.refused is not None:
        return Comparison((), run)
    checks: list[tuple[str, Mapping[str, Any]]] = []
    for rec in new.get("records", []):
        if rec.get("status") in ("passed", "failed"):
            section = gate_record(rules, base, rec, new.get("machine") or {}, "", None, acks)
            checks.extend((str(rec.get("id")), c) for c in section["checks"])
    return Comparison(tuple(checks), run)


def _num(value: Any, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def change_rows(comparison: Comparison) -> list[list[str]]:
    """One row per per-cell check, regressions first, with the run-level (FDR) verdict beside it."""
    fdr = {(v.pair.cell, v.pair.metric): v for v in comparison.run.fdr}
    rows = []
    for cell, c in comparison.checks:
        v = fdr.get((cell, str(c.get("metric"))))
        rows.append([cell, str(c.get("metric")), _num(c.get("baseline")), _num(c.get("current")),
                     _num(c.get("change"), "+.1%"), _num(c.get("tolerance"), ".0%"), str(c.get("status")),
                     "" if v is None else f"{v.q:.3g}", "" if v is None else v.verdict])

    def rank(row: list[str]) -> int:
        return 0 if "failed" in row[6] or row[8] == "regression" else 1 if "acknowledged" in (row[6], row[8]) else 2

    return sorted(rows, key=rank)


def suite_rows(run: RunVerdict) -> list[list[str]]:
    """One row per metric of the suite rule."""
    return [[s.metric, str(s.cells), "n/a" if s.ratio is None else f"{s.ratio - 1:+.1%}", f"{s.tolerance:.0%}",
             _num(s.p, ".3g"), s.verdict + (f" ({s.reason})" if s.reason else "")] for s in run.suite]


def render(comparison: Comparison, fmt: str = "simple") -> str:
    """The changes and the suite verdicts as text tables (``fmt``: a tabulate format, "github" for Markdown). Every
    string from the reports (cell ids, metrics, reasons, notes) is escaped for the medium:
    :func:`text.for_terminal` and, over the whole text, :func:`text.safe_lines`; :func:`text.markdown_cell` and
    :func:`text.markdown_text` for Markdown."""
    from tabulate import tabulate

    from pytest_longeff.text import for_terminal, markdown_cell, markdown_text, safe_lines

    markdown = fmt == "github"
    cell, line = (markdown_cell, markdown_text) if markdown else (for_terminal, for_terminal)
    verdict = comparison.verdict()
    if verdict == "INCONCLUSIVE":
        verdict += (" (no regression found, but the measurements cannot resolve the tolerance; decide with "
                    "`pytest-longeff ab`)")
    parts = [f"longeff gate: {verdict}",
             tabulate([[cell(v) for v in row] for row in change_rows(comparison)], HEADERS, tablefmt=fmt,
                      disable_numparse=True),
             tabulate([[cell(v) for v in row] for row in suite_rows(comparison.run)], SUITE_HEADERS, tablefmt=fmt,
                      disable_numparse=True)]
    parts.extend(line(f"note: {n}") for n in comparison.run.notes)
    text = "\n\n".join(parts) + "\n"
    return text if markdown else safe_lines(text)


def parser() -> argparse.ArgumentParser:
    """The ``compare`` subcommand's arguments."""
    p = argparse.ArgumentParser(prog="pytest-longeff compare", description="The regression gate on two reports. "
                                "Exit 0: no regression; 1: regression; 2: refused or unusable input; "
                                "3: inconclusive (cannot resolve the tolerance).")
    p.add_argument("base", type=Path, help="the baseline JSON report")
    p.add_argument("new", type=Path, help="the JSON report to gate")
    p.add_argument("--fail-on", default=DEFAULT_FAIL_ON, metavar="SPEC",
                   help=f"metrics and tolerated change for the worse (default {DEFAULT_FAIL_ON})".replace("%", "%%"))
    p.add_argument("--acknowledged", type=Path, metavar="FILE", help="accepted regressions (TOML or JSON)")
    p.add_argument("--markdown", type=Path, metavar="OUT.md", help="also write the tables as Markdown")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``compare``; returns the exit code (0 no regression, 1 regression, 2 refused or unusable input, 3
    inconclusive)."""
    from pytest_longeff.record.io import load_report

    args = parser().parse_args(argv)
    try:
        base, new = load_report(args.base), load_report(args.new)
        rules = parse_fail_on(args.fail_on)
        acks = load_acknowledged(args.acknowledged) if args.acknowledged else ()
    except ValueError as exc:
        print(f"pytest-longeff compare: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    why = refusal(base, new.get("machine") or {}, new.get("settings") or {})
    if why is not None:
        from pytest_longeff.text import for_terminal

        print(f"pytest-longeff compare: refused: {for_terminal(why)}", file=sys.stderr)
        return EXIT_UNUSABLE
    comparison = compare_docs(base, new, rules, acks)
    print(render(comparison), end="")
    if args.markdown is not None:
        from pytest_longeff.record.io import atomic_write_text

        atomic_write_text(args.markdown, "## pytest-longeff gate\n\n" + render(comparison, "github"))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from pytest_longeff.report.github import annotations_from_checks

        from pytest_longeff.text import print_command

        for line in annotations_from_checks(comparison.checks, comparison.run):
            print_command(line)  # made escaped, and on purpose a workflow command: past the CLI's last guard
    return EXIT_REGRESSION if comparison.fails() else EXIT_INCONCLUSIVE if comparison.inconclusive() else EXIT_OK


if __name__ == "__main__":  # python -m pytest_longeff.ci.compare, until the pytest-longeff command dispatches here
    raise SystemExit(main())

"""The accuracy axis of a run: each (family, size, task)'s score at each input length, and the checks the tiny
profile's pretrained checkpoints are held to.

    .venv/bin/python benchmarks/length_scores.py                      # the default run's report
    .venv/bin/python benchmarks/length_scores.py reports/other.json

Reads a JSON report (default ``reports/longeff.json``, which the README's first command writes) and prints the
SCROLLS score of every passed cell by input length, then: in how many summarization series the longest input beats
the shortest, the mean summarization score at the shortest and longest length, and Qasper's mean F1. The targets
for the default run (the study's trade-off in miniature): the longest beats the shortest in at least 9 of 12
series, the mean summarization score at 4096 is at least twice that at 1024 and above 5, Qasper's mean F1 is
above 5.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_longeff.record.io import load_report  # noqa: E402
from pytest_longeff.record.sections import is_cell  # noqa: E402
from pytest_longeff.report.findings import SUMMARIZATION_TASKS  # noqa: E402 - importable only once ROOT is on sys.path


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / "reports" / "longeff.json"
    doc = load_report(path)
    series: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for r in doc["records"]:
        if is_cell(r) and r.get("status") == "passed" and (r.get("accuracy") or {}).get("score") is not None:
            series[(r["family"], r["size"], r["task"])][int(r["seq_len"])] = float(r["accuracy"]["score"])
    if not series:
        print(f"{path}: no passed cells with scores")
        return 1
    lengths = sorted({n for row in series.values() for n in row})
    meanings = {r.get("accuracy_meaning") for r in doc["records"] if is_cell(r) and r.get("accuracy_meaning")}
    print(f"{path}: SCROLLS score x100 by input length ({len(series)} series)")
    for meaning in sorted(meanings):
        print(f"  accuracy: {meaning}")
    print(f"  {'family':<8} {'size':<6} {'task':<16}" + "".join(f"{n:>8}" for n in lengths))
    for (family, size, task), row in sorted(series.items()):
        cells = "".join(f"{row[n]:8.1f}" if n in row else f"{'n/a':>8}" for n in lengths)
        print(f"  {family:<8} {size:<6} {task:<16}{cells}")
    short, long = lengths[0], lengths[-1]
    checks: list[tuple[str, bool]] = []
    summ = {k: v for k, v in series.items() if k[2] in SUMMARIZATION_TASKS and short in v and long in v}
    if summ and short != long:
        beats = sum(v[long] > v[short] for v in summ.values())
        mean_short = statistics.fmean(v[short] for v in summ.values())
        mean_long = statistics.fmean(v[long] for v in summ.values())
        print(f"summarization: {long} tokens beat {short} in {beats} of {len(summ)} series; mean score "
              f"{mean_short:.1f} at {short}, {mean_long:.1f} at {long}")
        checks += [(f"longest beats shortest in at least 3/4 of the series ({beats}/{len(summ)})",
                    4 * beats >= 3 * len(summ)),
                   (f"mean at {long} at least twice the mean at {short} and above 5", mean_long >= 2 * mean_short
                    and mean_long > 5)]
    qa = [s for k, v in series.items() if k[2] == "qasper" for s in v.values()]
    if qa:
        print(f"qasper: mean F1 {statistics.fmean(qa):.1f} over {len(qa)} cells")
        checks.append(("qasper mean F1 above 5", statistics.fmean(qa) > 5))
    for words, ok in checks:
        print(f"  {'met' if ok else 'MISSED'}: {words}")
    return 0 if checks and all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Time to render every output of a 64-cell report: CSV, Markdown, the terminal matrix, the plots (PNG + SVG) and
the HTML page.

    .venv/bin/python benchmarks/render_outputs.py [REPORT.json]

Without a report it uses the project's small real report (tests/support/data/report_small.json) and replicates its cells
into the default 64-cell matrix (2 families x 2 sizes x 4 lengths x 4 tasks), scaling the figures by length so
the curves are not flat. The target is under 5 s on a 2-core CPU.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_longeff.record.sections import is_cell

ROOT = Path(__file__).resolve().parent.parent
FAMILIES, SIZES = ("led", "bigbird"), ("base", "large")
LENGTHS, TASKS = (1024, 2048, 3072, 4096), ("gov_report", "summ_screen_fd", "qmsum", "qasper")


def synthesise(doc: dict[str, Any]) -> dict[str, Any]:
    """A 64-cell report made from ``doc``'s passed cells: one record per default cell, with new ids."""
    cells = [r for r in doc["records"] if r.get("status") == "passed" and is_cell(r)]
    records = []
    for i, (family, size, length, task) in enumerate(itertools.product(FAMILIES, SIZES, LENGTHS, TASKS)):
        r = copy.deepcopy(cells[i % len(cells)])
        r.update(id=f"{family}-{size}-{length}-{task}", family=family, size=size, seq_len=length, task=task)
        scale = length / 1024
        for part in ("train", "inference"):
            stats = r[part]["samples_per_s_stats"]
            stats["median"] /= scale
            stats["ci95"] = [v / scale for v in stats["ci95"]]
        r["accuracy"]["score"] = float(i % 7)
        records.append(r)
    return {**doc, "records": records}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the figures' helper process)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str]) -> int:
    """Render everything once into a temporary folder and print the time of each output."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    small = ROOT / "tests" / "support" / "data" / "report_small.json"
    parser.add_argument("report", nargs="?", type=Path, default=small,
                        help="a JSON report whose cells are replicated to 64 (default: the tests' two-cell report)")
    source = parser.parse_args(argv).report
    doc = synthesise(json.loads(source.read_text(encoding="utf-8")))
    from pytest_longeff.report import page as html_report
    from pytest_longeff.report import tables as report
    from pytest_longeff.report.plots import draw as plots

    cells = doc["records"]
    times: dict[str, float] = {}
    cpu_start = _cpu()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        steps: dict[str, Callable[[], object]] = {
            "csv": lambda: (out / "r.csv").write_text(report.render_csv(cells)),
            "markdown": lambda: (out / "r.md").write_text(report.render_markdown(cells, doc["settings"])),
            "terminal": lambda: [report.render_matrix(cells, width=w) for w in (80, None)],
            "plots": lambda: plots.render_all(doc, out / "plots"),
            "html": lambda: html_report.write_html(doc, out / "r.html", plots_dir=out / "plots"),
        }
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name] = time.perf_counter() - start
        total, cpu = sum(times.values()), _cpu() - cpu_start
        start = time.perf_counter()  # for comparison, outside the total: the figures drawn in this process alone
        plots.render_all(doc, out / "plots-alone", jobs=1)
        alone = time.perf_counter() - start
    # CPU time beside wall time: on a shared 2-core machine other processes stretch the wall time.
    print(f"render {len(cells)} cells: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()) +
          f"; total {total:.2f} s wall, {cpu:.2f} s CPU with the figures' helper process (target < 5 s; plots "
          f"include importing matplotlib); the figures drawn in one process instead: {alone:.2f} s")
    return 0 if total < 5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

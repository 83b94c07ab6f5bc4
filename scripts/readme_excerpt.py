"""The README's excerpt of the terminal matrix and its figure, rendered from a saved tiny-profile run.

    .venv/bin/python scripts/readme_excerpt.py            # print the excerpt
    .venv/bin/python scripts/readme_excerpt.py --write    # rewrite the excerpt between the README's markers
    .venv/bin/python scripts/readme_excerpt.py --figure   # redraw docs/assets/readme-tradeoff.png

The run is ``docs/assets/tiny-run.json``: 16 cells of the tiny profile (LED and Big Bird base, gov_report and
qasper, 1024-4096 tokens) on 2 CPU cores, made with

    .venv/bin/pytest benchmarks/test_cells.py --longeff-sizes base --longeff-tasks gov_report,qasper \
        --longeff-json run/longeff.json

(its output paths then set to the defaults). The excerpt is the matrix exactly as the terminal prints it at a
width of 120 columns, for the gov_report cells, with the note saying how energy was measured. A test
(``tests/house/test_docs.py``) renders it again and compares it with the README, so a change to the terminal
matrix shows as a diff of the README; ``LONGEFF_UPDATE_PINNED=1`` there, or ``--write`` here, rewrites it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "docs" / "assets" / "tiny-run.json"
README = ROOT / "README.md"
FIGURE = ROOT / "docs" / "assets" / "readme-tradeoff.png"
FIGURE_NAME = "tradeoff-inference-gov_report"
TASK = "gov_report"
WIDTH = 120
START, END = "<!-- matrix-excerpt:start -->", "<!-- matrix-excerpt:end -->"
KEPT_NOTES = ("energy:",)


def _run() -> dict[str, Any]:
    # Read as plain JSON, not through load_report: the excerpt renders data, and stays readable when the report
    # schema moves on.
    doc: dict[str, Any] = json.loads(RUN.read_text(encoding="utf-8"))
    return doc


def excerpt() -> str:
    """The excerpt: the terminal matrix of the run's gov_report cells at 120 columns, and how energy was measured."""
    from pytest_longeff.record.sections import is_cell
    from pytest_longeff.report.tables import method_notes, render_matrix

    doc = _run()
    cells = [r for r in doc["records"] if is_cell(r) and r.get("task") == TASK]
    # As the terminal prints them (and `pytest-longeff show`): the table, then each note indented by two spaces.
    table = render_matrix(cells, WIDTH).splitlines()
    notes = [f"  {note}" for note in method_notes(cells, doc.get("settings") or {}) if note.startswith(KEPT_NOTES)]
    return "\n".join([*table, *notes]) + "\n"


def block(text: str) -> str:
    """The README block holding ``text``, between the markers."""
    return f"{START}\n```text\n{text}```\n{END}"


def readme_block(readme: str) -> str | None:
    """The excerpt block in ``readme`` (markers included), or None when it has none."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        return None
    return readme[start:end + len(END)]


def write_readme() -> bool:
    """Rewrite the README's block with a fresh excerpt; whether it changed."""
    readme = README.read_text(encoding="utf-8")
    old = readme_block(readme)
    if old is None:
        raise SystemExit(f"{README.name}: no {START} ... {END} block")
    new = block(excerpt())
    README.write_text(readme.replace(old, new), encoding="utf-8")
    return new != old


def draw_figure() -> Path:
    """Redraw the README's figure (the plots extra)."""
    from pytest_longeff.report.plots.draw import figures

    for name, fig in figures(_run()):
        if name == FIGURE_NAME:
            fig.savefig(FIGURE, format="png", dpi=100, metadata={"Software": None})
            return FIGURE
    raise SystemExit(f"{RUN.name} has no figure {FIGURE_NAME}")


def main(argv: list[str] | None = None) -> int:
    """Print the excerpt, or rewrite the README's block (``--write``) or figure (``--figure``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--write", action="store_true", help="rewrite the excerpt in README.md")
    ap.add_argument("--figure", action="store_true", help=f"redraw {FIGURE.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    if args.figure:
        print(draw_figure().relative_to(ROOT))
    if args.write:
        print(f"{README.name}: excerpt {'updated' if write_readme() else 'unchanged'}")
    if not (args.write or args.figure):
        print(excerpt(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

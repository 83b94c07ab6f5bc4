"""A plot helper process: ``python -m pytest_longeff.report.plots K/N REPORT.json DIR`` draws figures K, K+N, ...
of the report (K >= 1) into DIR and removes the report, a temporary copy made by :mod:`.pool`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_longeff.record.io import read_json
from pytest_longeff.report.plots.draw import render_part


def main(argv: Sequence[str]) -> int:
    """Draw one part of a report's figures (the helper's side). The copy is read within the limits of every file from
    elsewhere (:func:`pytest_longeff.record.io.read_json`); a helper that fails is redrawn by the run."""
    k, n = (int(x) for x in argv[0].split("/"))
    path = Path(argv[1])
    try:
        doc = read_json(path)
    finally:
        path.unlink(missing_ok=True)
    render_part(doc, Path(argv[2]), k, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

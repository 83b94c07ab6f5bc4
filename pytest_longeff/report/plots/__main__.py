"""A plot helper process: ``python -m pytest_longeff.report.plots K/N REPORT.json DIR`` draws figures K, K+N, ...
of the report (K >= 1) into DIR and removes the report, a temporary copy made by :mod:`.pool`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_longeff.report.plots.draw import render_part


def main(argv: Sequence[str]) -> int:
    """Draw one part of a report's figures (the helper's side)."""
    k, n = (int(x) for x in argv[0].split("/"))
    path = Path(argv[1])
    doc = json.loads(path.read_text(encoding="utf-8"))
    path.unlink(missing_ok=True)
    render_part(doc, Path(argv[2]), k, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Helper processes that draw part of a report's figures (``plots.render_all``): drawing is CPU-bound Python, so a
second interpreter on a second core halves the wall time. A helper that fails, hangs or cannot start has its
figures drawn by the run itself; its copy of the report is removed whatever happens.

    python -m pytest_longeff.plot_helpers K/N REPORT.json DIR     # draw figures K, K+N, ... (K >= 1)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 300.0  # a helper that has not finished by then is stopped and its figures drawn by the run


@dataclass
class Helper:
    """A running helper and the temporary copy of the report it reads."""

    process: subprocess.Popen[bytes]
    report: Path

    def finished(self) -> int:
        """The exit status; a helper still running after :data:`TIMEOUT_S` is stopped (-1)."""
        try:
            return self.process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -1

    def close(self) -> None:
        """Stop the helper if it still runs (an error in the run: its folder may go away) and remove the copy."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.report.unlink(missing_ok=True)


def start_part(doc: Mapping[str, Any], out_dir: Path, k: int, n: int) -> Helper | None:
    """A helper drawing part ``k`` of ``n``; None if it cannot start (the caller draws that part)."""
    fd, name = tempfile.mkstemp(suffix=".json", prefix="longeff-plot-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)  # exactly what the run draws from, or no helper at all
    except (TypeError, ValueError):
        Path(name).unlink(missing_ok=True)
        return None
    try:  # quiet: a helper's failure is redrawn by the run, not printed
        process = subprocess.Popen([sys.executable, "-m", "pytest_longeff.plot_helpers", f"{k}/{n}", name,
                                    str(out_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        Path(name).unlink(missing_ok=True)
        return None
    return Helper(process, Path(name))


def main(argv: Sequence[str]) -> int:
    """Draw one part of a report's figures (the helper's side)."""
    from pytest_longeff.plots import render_part

    k, n = (int(x) for x in argv[0].split("/"))
    path = Path(argv[1])
    doc = json.loads(path.read_text(encoding="utf-8"))
    path.unlink(missing_ok=True)
    render_part(doc, Path(argv[2]), k, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

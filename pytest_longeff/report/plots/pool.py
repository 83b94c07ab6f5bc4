"""Helper processes that draw part of a report's figures (``plots.render_all``): drawing is CPU-bound Python, so a
second interpreter on a second core halves the wall time. A helper that fails, hangs or cannot start has its
figures drawn by the run itself; its copy of the report is removed whatever happens.

The helper's side is ``python -m pytest_longeff.report.plots K/N REPORT.json DIR`` (``__main__.py``), which draws
figures K, K+N, ... (K >= 1); this module starts it and never imports the drawing code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
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
        process = subprocess.Popen([sys.executable, "-m", "pytest_longeff.report.plots", f"{k}/{n}", name,
                                    str(out_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        Path(name).unlink(missing_ok=True)
        return None
    return Helper(process, Path(name))

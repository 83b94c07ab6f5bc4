"""Code run in a fresh Python process: what a CPU memory figure reads depends on what the process's heap already
holds, so tests that compare such figures run each side from the same fresh start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def run_fresh(code: str, *args: str, beside: str | None = None, timeout: float = 300) -> str:
    """Run ``code`` with ``args`` in a new interpreter; its last line of stdout (the child's error if it failed).
    With ``beside`` (a test's ``__file__``) the child can import that test module's helpers by its name, and
    ``support`` from tests/, as the test itself does."""
    env = dict(os.environ)
    if beside is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(beside).resolve().parent), str(TESTS), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False,
                         timeout=timeout, env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]

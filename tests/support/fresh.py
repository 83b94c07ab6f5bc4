"""Code run in a fresh Python process: what a CPU memory figure reads depends on what the process's heap already
holds, so tests that compare such figures run each side from the same fresh start."""

from __future__ import annotations

import subprocess
import sys


def run_fresh(code: str, *args: str, timeout: float = 300) -> str:
    """Run ``code`` with ``args`` in a new interpreter; its last line of stdout (the child's error if it failed)."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False,
                         timeout=timeout)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]

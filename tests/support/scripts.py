"""The benchmark scripts under ``benchmarks/``, loaded as modules so their functions can be tested."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(stem: str) -> ModuleType:
    """``benchmarks/<stem>.py`` as a module (registered in ``sys.modules``, as dataclasses need)."""
    spec = importlib.util.spec_from_file_location(f"longeff_script_{stem}", BENCHMARKS / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module

"""The benchmark matrix: one test per (family, size, input length, task) cell.

Run ``pytest benchmarks`` for the whole default matrix, or select with ``-k``: ``pytest benchmarks -k "led and
4096"``. Options (``pytest --help``, group "longeff") narrow or widen the matrix and set the budgets.
"""

from __future__ import annotations

from typing import Any

from pytest_longeff import check_record


def test_cell(longeff_record: dict[str, Any]) -> None:
    """The cell ran end to end and every figure it reports is a real measurement or marked unmeasured."""
    check_record(longeff_record)

"""Work counters against counts worked out by hand: a matrix product's FLOPs and output bytes, views and in-place
results that allocate nothing, and the diff of two pieces of code."""

from __future__ import annotations

import torch

from pytest_longeff.measure.work import count_work, totals_per_unit, work_diff


def test_counts_match_the_arithmetic() -> None:
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    with count_work("step", 1, "cpu") as work:
        c = a @ b  # aten.mm: 2*3*4*5 FLOPs, 3*5 float32 outputs
        c.t()  # a view: a call, no bytes
        c.add_(1.0)  # in place: a call, no bytes
    section = work.to_dict()
    assert section["ops"]["aten.mm"] == [1, 120, 60]
    assert section["ops"]["aten.t"] == [1, 0, 0]
    assert section["ops"]["aten.add_"] == [1, 0, 0]
    assert (section["calls"], section["flops"], section["output_bytes"]) == (3, 120, 60)
    assert section["syncs"] is None and section["cuda_allocated_bytes"] is None  # CUDA-only counts, not 0


def test_per_unit_totals_and_the_same_code_twice() -> None:
    x = torch.randn(8, 8)

    def code() -> torch.Tensor:
        return (x @ x).relu()

    with count_work("token", 4, "cpu") as one:
        code()
    with count_work("token", 4, "cpu") as two:
        code()
    assert work_diff(one.to_dict(), two.to_dict()) == []
    assert totals_per_unit(one.to_dict()) == {"calls": 0.5, "flops": 2 * 8**3 / 4, "output_bytes": 2 * 64 * 4 / 4}


def test_a_change_of_work_reads_as_a_profiler_diff() -> None:
    x = torch.randn(16, 16)
    with count_work("step", 1, "cpu") as base:
        x @ x
    with count_work("step", 1, "cpu") as head:
        x @ x
        x.clone()
    (change,) = work_diff(base.to_dict(), head.to_dict())
    assert change.op == "aten.clone"
    assert change.line() == "aten.clone: calls 0 -> 1, output_bytes 0 -> 1024"

"""Tests of pytest_longeff.cell.search: exactness, probe bounds, error handling, release."""

from __future__ import annotations

import random
import statistics
import sys
import types
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_longeff.cell.search import (
    OutOfMemory,
    Probe,
    SearchResult,
    doubling_bisect,
    is_oom,
    search_batch_size,
    worst_case_probes,
)

GIB = 2**30
BUDGET = 40 * GIB

OOM_ERRORS: tuple[Callable[[], BaseException], ...] = (
    lambda: OutOfMemory("simulated"),
    lambda: MemoryError(),
    lambda: RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    lambda: RuntimeError("CUDA error: out of memory"),
    lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:114] DefaultCPUAllocator: can't allocate memory"),
)


def check_invariants(result: SearchResult, calls: list[int], max_batch: int, *, bounded: bool = True) -> None:
    """What every search must satisfy, whatever the memory curve (the baseline is not ``bounded``)."""
    assert [probe.batch_size for probe in result.probes] == calls
    assert len(set(calls)) == len(calls), f"a size was probed twice: {calls}"
    assert all(1 <= size <= max_batch for size in calls), f"probe outside [1, {max_batch}]: {calls}"
    if bounded:
        assert len(calls) <= worst_case_probes(max_batch), f"{len(calls)} probes: {calls}"


def linear(fixed: int, per_sample: int, *, capacity: int | None, calls: list[int]) -> Callable[[int], int]:
    """A training step with memory ``fixed + per_sample * b``; beyond ``capacity`` it raises OOM."""

    def try_batch(batch_size: int) -> int:
        calls.append(batch_size)
        peak = fixed + per_sample * batch_size
        if capacity is not None and peak > capacity:
            raise OutOfMemory(f"{peak} bytes")
        return peak

    return try_batch


@settings(max_examples=300, deadline=None)
@given(max_batch=st.integers(1, 4096), data=st.data())
def test_any_monotone_predicate_gives_the_exact_answer_within_the_probe_bound(
    max_batch: int, data: st.DataObject
) -> None:
    # The peaks are drawn freely (subject only to the fit/no-fit split), so no memory model can be relied on.
    answer = data.draw(st.integers(0, max_batch), label="answer")
    start = data.draw(st.integers(1, max_batch), label="start")
    calls: list[int] = []

    def try_batch(batch_size: int) -> int:
        calls.append(batch_size)
        if batch_size <= answer:
            return data.draw(st.integers(0, BUDGET), label=f"peak at {batch_size}")
        if data.draw(st.booleans(), label=f"oom at {batch_size}"):
            raise data.draw(st.sampled_from(OOM_ERRORS))()
        return data.draw(st.integers(BUDGET + 1, 4 * BUDGET), label=f"peak at {batch_size}")

    result = search_batch_size(try_batch, BUDGET, max_batch=max_batch, start=start)

    assert result.batch_size == answer
    check_invariants(result, calls, max_batch)
    if answer:
        chosen = [probe for probe in result.probes if probe.batch_size == answer]
        assert chosen and chosen[0].fits and result.peak_memory_bytes == chosen[0].peak_memory_bytes
    else:
        assert result.peak_memory_bytes is None


@settings(max_examples=200, deadline=None)
@given(
    max_batch=st.sampled_from([64, 256, 1024, 4096]),
    per_sample=st.integers(2**20, 8 * GIB),
    fixed_share=st.floats(0, 0.75),
    answer=st.integers(2, 4096),
    slack=st.floats(0, 1, exclude_max=True),
    oom=st.booleans(),
)
def test_linear_memory_is_settled_in_four_probes_or_five_when_failures_raise(
    max_batch: int, per_sample: int, fixed_share: float, answer: int, slack: float, oom: bool
) -> None:
    # A realistic cell: at batch 1 at most 3/4 of the memory is fixed (weights, gradients, optimizer state),
    # and the answer lies well inside the range. 4 is the floor for an interior answer from start=1: both b and
    # b + 1 must be probed, and one reading at batch 1 cannot tell the fixed part from the per-sample part.
    answer = min(answer, max_batch // 16)
    fixed = int(per_sample * fixed_share / (1 - fixed_share))
    budget = fixed + per_sample * answer + int(per_sample * slack)
    calls: list[int] = []
    try_batch = linear(fixed, per_sample, capacity=budget if oom else None, calls=calls)

    result = search_batch_size(try_batch, budget, max_batch=max_batch)

    assert result.batch_size == answer
    check_invariants(result, calls, max_batch)
    assert len(calls) <= (5 if oom else 4), calls


@settings(max_examples=100, deadline=None)
@given(
    max_batch=st.integers(1, 4096),
    fixed=st.integers(0, 64 * GIB),
    per_sample=st.integers(1, 64 * GIB),
    budget=st.integers(1, 128 * GIB),
    oom=st.booleans(),
)
def test_any_linear_curve_gives_the_exact_answer(
    max_batch: int, fixed: int, per_sample: int, budget: int, oom: bool
) -> None:
    calls: list[int] = []
    try_batch = linear(fixed, per_sample, capacity=budget if oom else None, calls=calls)
    expected = min(max_batch, max(0, (budget - fixed) // per_sample))

    result = search_batch_size(try_batch, budget, max_batch=max_batch)

    assert result.batch_size == expected
    check_invariants(result, calls, max_batch)


def realistic_cells(count: int, seed: int) -> list[tuple[int, int, int, int]]:
    """(fixed, per_sample, budget, answer) like the default matrix: fixed share 0.2..0.7 at batch 1."""
    rng = random.Random(seed)
    cells = []
    for _ in range(count):
        per_sample = rng.randint(200 * 2**20, 20 * GIB)
        share = rng.uniform(0.2, 0.7)
        fixed = int(per_sample * share / (1 - share))
        answer = rng.randint(1, 48)
        budget = fixed + per_sample * answer + rng.randrange(per_sample)
        cells.append((fixed, per_sample, budget, answer))
    return cells


@pytest.mark.parametrize("oom", [False, True], ids=["failures-measured", "failures-raise"])
def test_median_probes_on_linear_curves(oom: bool) -> None:
    """Median over a sample: 4 (5 when failures raise) from start=1; at most 3 from a start near the answer,
    e.g. the result of the same model and length on another task, off by up to 2."""
    rng = random.Random(1)
    from_one: list[int] = []
    from_neighbour: list[int] = []
    for fixed, per_sample, budget, answer in realistic_cells(200, seed=0):
        capacity = budget if oom else None
        for start, counts in ((1, from_one), (max(1, answer + rng.randint(-2, 2)), from_neighbour)):
            calls: list[int] = []
            result = search_batch_size(
                linear(fixed, per_sample, capacity=capacity, calls=calls), budget, max_batch=256, start=start
            )
            assert result.batch_size == answer
            counts.append(len(calls))
    assert statistics.median(from_one) <= (5 if oom else 4)
    assert statistics.median(from_neighbour) <= 3


def test_fewer_probes_than_doubling_then_bisection() -> None:
    ours: list[int] = []
    baseline: list[int] = []
    for fixed, per_sample, budget, answer in realistic_cells(200, seed=2):
        for search, counts in ((search_batch_size, ours), (doubling_bisect, baseline)):
            calls: list[int] = []
            result = search(linear(fixed, per_sample, capacity=budget, calls=calls), budget, max_batch=256)
            assert result.batch_size == answer
            check_invariants(result, calls, 256, bounded=search is search_batch_size)
            counts.append(len(calls))
    assert statistics.fmean(ours) < statistics.fmean(baseline)


@settings(max_examples=100, deadline=None)
@given(max_batch=st.integers(1, 300), answer=st.integers(0, 300))
def test_doubling_bisect_is_exact(max_batch: int, answer: int) -> None:
    calls: list[int] = []
    # Memory of 10 + b bytes against a budget of 10 + answer: exactly the sizes up to `answer` fit.
    result = doubling_bisect(linear(10, 1, capacity=None, calls=calls), 10 + answer, max_batch=max_batch)
    assert result.batch_size == min(answer, max_batch)
    check_invariants(result, calls, max_batch, bounded=False)


def test_errors_other_than_oom_propagate_unchanged() -> None:
    error = ValueError("shape mismatch at batch 3")
    calls: list[int] = []

    def try_batch(batch_size: int) -> int:
        calls.append(batch_size)
        if batch_size == 3:
            raise error
        return batch_size * GIB

    with pytest.raises(ValueError) as caught:
        search_batch_size(try_batch, 100 * GIB, max_batch=64, start=3)
    assert caught.value is error
    assert calls == [3]


@pytest.mark.parametrize(
    "error",
    [RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"), MemoryError(), OutOfMemory("no room")],
    ids=["cuda-runtime-error", "memory-error", "out-of-memory"],
)
def test_oom_counts_as_not_fitting_and_release_follows_every_probe(error: BaseException) -> None:
    events: list[str] = []

    def try_batch(batch_size: int) -> int:
        events.append(f"try {batch_size}")
        if batch_size > 5:
            raise error
        return GIB + batch_size * GIB

    result = search_batch_size(try_batch, 100 * GIB, max_batch=64, release=lambda: events.append("release"))

    assert result.batch_size == 5
    assert result.peak_memory_bytes == 6 * GIB
    assert all(
        not probe.fits and probe.peak_memory_bytes is None for probe in result.probes if probe.batch_size > 5
    )
    tries = [event for event in events if event.startswith("try")]
    assert events == [item for event in tries for item in (event, "release")]


def test_a_peak_over_budget_without_error_does_not_fit() -> None:
    result = search_batch_size(lambda b: b * GIB, 10 * GIB, max_batch=64)
    assert result.batch_size == 10
    over = [probe for probe in result.probes if probe.batch_size > 10]
    assert over and all(
        not probe.fits and probe.peak_memory_bytes == probe.batch_size * GIB for probe in over
    )


def test_nothing_fits() -> None:
    result = search_batch_size(lambda b: 2 * GIB, GIB, max_batch=64)
    assert result == SearchResult(0, (Probe(1, False, 2 * GIB),), None)


@pytest.mark.parametrize(("max_batch", "most"), [(64, 2), (256, 3)])
def test_everything_fits(max_batch: int, most: int) -> None:
    # 80 GiB over 1 GiB at batch 1: up to 79 is sure to fit (memory cannot grow faster than in proportion),
    # so with max_batch 64 the second probe goes straight to the top. With 256 the top is out of the reach a
    # guess may take before a failure is seen, and one more probe is spent.
    result = search_batch_size(lambda b: GIB + b * 2**20, 80 * GIB, max_batch=max_batch)
    assert result.batch_size == max_batch
    assert len(result.probes) <= most


def test_a_correct_start_is_confirmed_in_two_probes() -> None:
    result = search_batch_size(lambda b: 3 * GIB + b * 2 * GIB, 48 * GIB, max_batch=256, start=22)
    assert result.batch_size == 22
    assert [probe.batch_size for probe in result.probes] == [22, 23]


def test_start_beyond_max_batch_is_clamped() -> None:
    result = search_batch_size(lambda b: b, 10**9, max_batch=8, start=100)
    assert result.batch_size == 8
    assert [probe.batch_size for probe in result.probes] == [8]


@pytest.mark.parametrize(
    ("budget", "max_batch", "start", "message"),
    [(GIB, 0, 1, "max_batch"), (GIB, 8, 0, "start"), (0, 8, 1, "budget_bytes")],
)
def test_bad_arguments_are_refused(budget: int, max_batch: int, start: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        search_batch_size(lambda b: b, budget, max_batch=max_batch, start=start)


def test_to_dict_follows_the_record_contract() -> None:
    result = search_batch_size(lambda b: b * GIB, 3 * GIB, max_batch=8)
    record = result.to_dict()
    assert record["batch_size"] == 3
    assert record["probes"] == len(result.probes)
    assert record["peak_memory_bytes"] == 3 * GIB
    assert record["probe_log"] == [
        {"batch_size": p.batch_size, "fits": p.fits, "peak_memory_bytes": p.peak_memory_bytes, "lower_bound": False}
        for p in result.probes
    ]


@pytest.mark.parametrize(
    "error",
    [
        OutOfMemory(),
        MemoryError(),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes"),
        RuntimeError("MPS backend out of memory"),
    ],
)
def test_is_oom_recognises_out_of_memory(error: BaseException) -> None:
    assert is_oom(error)


@pytest.mark.parametrize(
    "error",
    [ValueError("out of memory"), RuntimeError("size mismatch"), KeyboardInterrupt(), TypeError("x")],
)
def test_is_oom_rejects_everything_else(error: BaseException) -> None:
    assert not is_oom(error)


def test_is_oom_recognises_torch_errors() -> None:
    torch = pytest.importorskip("torch")
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    if hasattr(torch, "OutOfMemoryError"):
        assert is_oom(torch.OutOfMemoryError("anything"))


def test_is_oom_catches_a_real_cpu_allocation_failure() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(BaseException) as caught:
        torch.empty(2**62, dtype=torch.uint8)
    assert is_oom(caught.value)


# --- mutation-testing additions (see docs/validation/mutation.md)


class _FakeTorchOom(Exception):
    """Not a RuntimeError and no "out of memory" in its text: only the type check can recognise it."""


class _FakeCudaOom(Exception):
    pass


def test_is_oom_recognises_both_torch_oom_types_by_type(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(
        OutOfMemoryError=_FakeTorchOom, cuda=types.SimpleNamespace(OutOfMemoryError=_FakeCudaOom)
    )
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert is_oom(_FakeTorchOom("x"))
    assert is_oom(_FakeCudaOom("x"))
    assert not is_oom(ValueError("x"))


@pytest.mark.parametrize(
    "fake",
    [
        types.SimpleNamespace(),
        types.SimpleNamespace(cuda=types.SimpleNamespace()),
        types.SimpleNamespace(OutOfMemoryError=_FakeTorchOom),
    ],
    ids=["no-oom-types", "cuda-without-oom", "no-cuda"],
)
def test_is_oom_tolerates_a_torch_without_oom_types(monkeypatch: pytest.MonkeyPatch, fake: object) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert not is_oom(ValueError("x"))
    assert is_oom(RuntimeError("CUDA out of memory"))


@pytest.mark.parametrize(
    ("max_batch", "expected"), [(1, 2), (2, 3), (3, 4), (4, 4), (5, 5), (64, 8), (65, 9), (4096, 14)]
)
def test_worst_case_probes_is_two_plus_ceil_log2(max_batch: int, expected: int) -> None:
    # By hand: ceil(log2(m)) is 0, 1, 2, 2, 3, 6, 7, 12 for these m.
    assert worst_case_probes(max_batch) == expected


@pytest.mark.parametrize(
    ("max_batch", "answer", "calls"),
    [
        (64, 5, [1, 2, 4, 8, 6, 5]),  # doubling to the first failure (8), then bisect (4, 8)
        (10, 10, [1, 2, 4, 8, 10]),  # doubling is capped at max_batch
        (64, 0, [1]),
        (1, 1, [1]),
    ],
)
def test_doubling_bisect_probes_in_the_documented_order(max_batch: int, answer: int, calls: list[int]) -> None:
    seen: list[int] = []
    # 1 + b bytes against a budget of 1 + answer: exactly the sizes up to `answer` fit.
    result = doubling_bisect(linear(1, 1, capacity=None, calls=seen), 1 + answer, max_batch=max_batch)
    assert result.batch_size == answer
    assert seen == calls


def test_search_probe_order_on_a_proportional_curve() -> None:
    # Memory b GiB, budget 10 GiB, max_batch 64 (worst case 8 probes), traced by hand:
    # 1 fits (1 GiB): the one-point bound says up to 10 fits; the guess meant to fail is
    #   min(upper estimate 1 + 9 * (3 + 1) = 37, 10 + 64 // 4) + 1 = 27;
    # 27 fails at 27 GiB: the line through (1, 1 GiB) and (27, 27 GiB) crosses the budget at 10, and with a
    #   reach of 32 the leftover (10, 27) of 16 sizes is within 32 // 2, so 10 is probed before 11;
    # 10 fits, so the claim "10 is the answer" is checked at 11, which fails.
    calls: list[int] = []
    result = search_batch_size(linear(0, GIB, capacity=None, calls=calls), 10 * GIB, max_batch=64)
    assert result.batch_size == 10
    assert calls == [1, 27, 10, 11]
    assert all(type(probe.batch_size) is int for probe in result.probes)


@pytest.mark.parametrize(
    ("fixed", "budget", "start", "max_batch", "oom", "calls"),
    [
        # b GiB, OOM above 10 GiB, start 20 (8 probes at most). With no reading above the budget the guess is
        # the size just under the failure, and repeated misses downwards double the step: 19, 18, then 16
        # (step 2), then 12 (step 4) clamped by the window to lo + reach = 8, which fits at 8 GiB. The one-point
        # bound from 8 says 10; 12 (the window's floor hi - 4) fails, 10 fits, 11 fails.
        (0, 10, 20, 64, True, [20, 19, 18, 16, 8, 12, 10, 11]),
        # The same curve but failures return their peak: 20 GiB at 20 bounds the answer to 10 * 20 // 20 = 10,
        # which fits, and 11 fails.
        (0, 10, 20, 64, False, [20, 10, 11]),
        # 4 + b GiB, budget 14 GiB: 24 GiB at 20 bounds the answer to 14 * 20 // 24 = 11; 11 fails at 15 GiB,
        # the new bound 14 * 11 // 15 = 10 fits, and 11 already failed.
        (4, 14, 20, 64, False, [20, 11, 10]),
        # 10 + b GiB, OOM above 40 GiB, max_batch 256 (10 probes at most), from 1 (11 GiB): the one-point bound
        # is 3, the upper estimate 1 + 29 * 4 // 11 = 11, so 12 is probed and fits at 22 GiB. The line through
        # 1 and 12 predicts 12 + 18 * 11 // 11 = 30, but before any failure the window forces 257 - 128 = 129,
        # then 65 and 33 (each time hi - reach), all OOM. With the leftover (30, 65) too wide for the probe after
        # next, 30 is kept as the claim; the window caps it at lo + reach = 12 + 16 = 28 (fits at 38 GiB), then
        # 30 fits at exactly 40 GiB and 31 fails.
        (10, 40, 1, 256, True, [1, 12, 129, 65, 33, 28, 30, 31]),
    ],
)
def test_search_probe_order_traced_by_hand(
    fixed: int, budget: int, start: int, max_batch: int, oom: bool, calls: list[int]
) -> None:
    seen: list[int] = []
    try_batch = linear(fixed * GIB, GIB, capacity=budget * GIB if oom else None, calls=seen)
    result = search_batch_size(try_batch, budget * GIB, max_batch=max_batch, start=start)
    assert result.batch_size == (budget - fixed)
    assert seen == calls
    assert all(type(probe.batch_size) is int for probe in result.probes)


def test_search_probe_order_when_memory_reads_zero() -> None:
    # A step that reports 0 bytes (nothing measurable) up to 10, OOM above; max_batch 64, traced by hand.
    # No model from a zero reading: bisect 33 (OOM), 17 (OOM), 9 (fits). Two zero readings show no growth, so
    # the claim is "just under the failure", 16, which fails; misses downwards double the step: 15 clamped by
    # the window to 13, then 11, then 7 clamped up to 10, which fits (8 probes, the bound for 64).
    calls: list[int] = []

    def try_batch(batch_size: int) -> int:
        calls.append(batch_size)
        if batch_size > 10:
            raise OutOfMemory("simulated")
        return 0

    result = search_batch_size(try_batch, GIB, max_batch=64)
    assert result.batch_size == 10
    assert calls == [1, 33, 17, 9, 16, 13, 11, 10]


def test_lower_bound_figures_of_failed_probes_leave_the_answer_and_the_bound_unchanged() -> None:
    """A CPU probe stops once its figure passes the budget and returns a lower bound (``AtLeast``). Over random
    linear memory curves whose failed probes read 52-100 % of their whole figure (but over the budget), the
    search finds exactly the answer it finds with whole figures, within ``worst_case_probes``; the lower bounds
    feed the memory line only while nothing fits, so they cannot make it aim too high."""
    from pytest_longeff.cell.search import AtLeast

    rng = random.Random(7)
    for _ in range(3000):
        max_batch = rng.choice([8, 16, 64, 256])
        per, answer = rng.randint(10, 1000), rng.randint(0, max(1, max_batch // 16))
        fixed = rng.randint(0, 3 * per)
        budget = fixed + per * answer + rng.randint(0, per - 1) if answer else fixed + per - 1
        start = min(rng.choice([1, 2, 3, 8]), max_batch)
        share: dict[int, float] = {}

        def whole(b: int) -> int:
            return fixed + per * b  # noqa: B023 - called within this iteration only

        def early(b: int) -> int:
            m = whole(b)
            if m <= budget:  # noqa: B023
                return m
            return AtLeast(max(budget + 1, int(m * share.setdefault(b, rng.uniform(0.52, 1.0)))))  # noqa: B023

        a = search_batch_size(whole, budget, max_batch=max_batch, start=start)
        b = search_batch_size(early, budget, max_batch=max_batch, start=start)
        assert b.batch_size == a.batch_size == min(answer, max_batch)
        assert len(b.probes) <= worst_case_probes(max_batch)
        assert all(p.lower_bound == (not p.fits) for p in b.probes)

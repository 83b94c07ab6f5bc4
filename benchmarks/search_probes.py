"""Probes per cell: ``search_batch_size`` against doubling-then-bisection on synthetic memory curves.

Run it without pytest::

    .venv/bin/python benchmarks/search_probes.py [--machines 50] [--seed 0]

Each simulated machine draws a memory budget, a device capacity and a ``max_batch``, then runs both searches on
the 64 cells of the default matrix (LED / Big Bird, base / large, inputs of 1024..4096 tokens, four tasks). A
cell's training memory is ``fixed + per_sample * b`` plus noise: ``fixed`` is fp32 AdamW state (16 bytes per
parameter) and a workspace; ``per_sample`` grows in proportion to the input length and is anchored on the seed
study's batch of 24 for LED-base at 1024 tokens on a 48 GB GPU. A step whose memory exceeds the device capacity
raises an out-of-memory error (no reading); one that exceeds only the budget returns its peak. Every answer is
checked against a scan of all sizes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Runnable from a plain source checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_longeff.cell.search import (
    OutOfMemory,
    SearchResult,
    doubling_bisect,
    search_batch_size,
)

GIB = 2**30
MIB = 2**20

# (family, size) -> (parameters, activation bytes per input token per sample). LED-base is anchored on the study's
# 24 samples at 1024 tokens within 48 GB; the others scale with depth and width (Big Bird base is a hypothetical
# half-size Big Bird-Pegasus, as no seq2seq base checkpoint exists).
MODELS: dict[tuple[str, str], tuple[int, int]] = {
    ("led", "base"): (162_000_000, 1_780_000),
    ("led", "large"): (460_000_000, 4_800_000),
    ("bigbird", "base"): (230_000_000, 1_900_000),
    ("bigbird", "large"): (577_000_000, 4_100_000),
}
LENGTHS = (1024, 2048, 3072, 4096)
TASKS = ("gov_report", "summ_screen_fd", "qmsum", "qasper")

# (label, budget, capacity): on the first three the budget is the whole card, so every failure is an OOM without
# a reading; on the last two a smaller budget is set on a bigger card, so failures short of capacity are measured.
DEVICES: tuple[tuple[str, int, int], ...] = (
    ("24GiB card", 23 * GIB, 23 * GIB),
    ("48GB card", 44 * GIB, 44 * GIB),
    ("80GiB card", 78 * GIB, 78 * GIB),
    ("48GiB on H200", 48 * GIB, 139 * GIB),
    ("80GiB on H200", 80 * GIB, 139 * GIB),
)
MAX_BATCHES = (64, 256, 1024)


@dataclass(frozen=True)
class Curve:
    """Training-step memory of one cell on one machine."""

    fixed_bytes: int
    per_sample_bytes: int
    noise: float
    """Jitter per batch size as a fraction of ``per_sample_bytes`` (below 0.5 keeps memory increasing)."""
    seed: int
    budget_bytes: int
    capacity_bytes: int
    max_batch: int

    def peak(self, batch_size: int) -> int:
        """Peak bytes at ``batch_size``: deterministic jitter, rounded up to the allocator's 2 MiB blocks."""
        jitter = random.Random(self.seed * 1_000_003 + batch_size).uniform(-self.noise, self.noise)
        raw = self.fixed_bytes + self.per_sample_bytes * (batch_size + jitter)
        return -(-int(raw) // (2 * MIB)) * (2 * MIB)

    def try_batch(self, counter: list[int]) -> Callable[[int], int]:
        def run(batch_size: int) -> int:
            counter.append(batch_size)
            peak = self.peak(batch_size)
            if peak > self.capacity_bytes:
                raise OutOfMemory(f"simulated: {peak} bytes needed at batch {batch_size}")
            return peak

        return run

    def truth(self) -> int:
        best = 0
        for batch_size in range(1, self.max_batch + 1):
            if self.peak(batch_size) > self.budget_bytes:
                break
            best = batch_size
        return best


def machines(count: int, seed: int, noise: float) -> Iterator[list[tuple[tuple[str, str, int, str], Curve]]]:
    """``count`` machines, each with the 64 cells' curves in matrix order."""
    rng = random.Random(seed)
    for _ in range(count):
        _, budget, capacity = rng.choice(DEVICES)
        max_batch = rng.choice(MAX_BATCHES)
        cells = []
        for (family, size), (params, per_token) in MODELS.items():
            # Implementation details (allocator state, library versions) move the fixed part by a few percent.
            fixed = int(16 * params * rng.uniform(1.0, 1.1)) + int(rng.uniform(300, 700) * MIB)
            for length in LENGTHS:
                for task in TASKS:
                    # Targets are 128 tokens for every task; tasks differ only by a little.
                    per_sample = int(per_token * length * rng.uniform(0.97, 1.03)) + 80 * MIB
                    curve = Curve(fixed, per_sample, noise, rng.randrange(2**31), budget, capacity, max_batch)
                    cells.append(((family, size, length, task), curve))
        yield cells


Search = Callable[[Curve, list[int], int], SearchResult]


def run_ours(curve: Curve, calls: list[int], start: int) -> SearchResult:
    return search_batch_size(
        curve.try_batch(calls), curve.budget_bytes, max_batch=curve.max_batch, start=start
    )


def run_doubling(curve: Curve, calls: list[int], start: int) -> SearchResult:
    del start  # the baseline always starts at 1
    return doubling_bisect(curve.try_batch(calls), curve.budget_bytes, max_batch=curve.max_batch)


Cells = list[list[tuple[tuple[str, str, int, str], Curve]]]


def measure(search: Search, machine_list: Cells, seeded: bool) -> list[tuple[Curve, int]]:
    """Each cell's curve with its probe count. ``seeded`` starts each cell at the answer of the previous task of
    the same model and length (as a plugin reusing its neighbours' results would); the first of each group
    starts at 1. Exits if any answer is wrong or any size is probed twice."""
    counts: list[tuple[Curve, int]] = []
    for cells in machine_list:
        previous: dict[tuple[str, str, int], int] = {}
        for (family, size, length, _task), curve in cells:
            group = (family, size, length)
            start = max(1, previous.get(group, 1)) if seeded else 1
            calls: list[int] = []
            result = search(curve, calls, start)
            truth = curve.truth()
            if (
                result.batch_size != truth
                or len(calls) != len(set(calls))
                or len(calls) != len(result.probes)
            ):
                raise SystemExit(
                    f"wrong search: {family}-{size}-{length} {curve} -> {result} (truth {truth})"
                )
            previous[group] = result.batch_size
            counts.append((curve, len(calls)))
    return counts


def summary(counts: list[int]) -> str:
    if not counts:
        return f"{'-':>21}"
    return f"{statistics.median(counts):>4g} {statistics.fmean(counts):6.2f} {max(counts):>4d}     "


SUBSETS: tuple[tuple[str, Callable[[Curve], bool]], ...] = (
    ("all cells", lambda curve: True),
    ("failures measured", lambda curve: curve.capacity_bytes > curve.budget_bytes),
    ("failures raise OOM", lambda curve: curve.capacity_bytes == curve.budget_bytes),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=50, help="simulated machines of 64 cells each")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"{args.machines} machines x 64 cells; probes per cell, every answer checked against a full scan.")
    print("failures measured: budget below the device memory, so a step over budget still returns its peak;")
    print("failures raise OOM: budget = device memory.")
    rows: tuple[tuple[str, Search, bool], ...] = (
        ("doubling + bisection", run_doubling, False),
        ("search_batch_size, start=1", run_ours, False),
        ("search_batch_size, start=neighbour", run_ours, True),
    )
    for label, noise in (
        ("realistic noise (+-2% of a sample)", 0.02),
        ("heavy noise (+-45% of a sample)", 0.45),
    ):
        machine_list = list(machines(args.machines, args.seed, noise))
        answers = [curve.truth() for cells in machine_list for _, curve in cells]
        capped = sum(curve.truth() == curve.max_batch for cells in machine_list for _, curve in cells)
        print(
            f"\n{label}; answers: median {statistics.median(answers):g}, max {max(answers)}, "
            f"{answers.count(0)} cells with 0, {capped} capped at max_batch"
        )
        print(f"  {'':<36}" + "".join(f"{name:<21}" for name, _ in SUBSETS))
        print(f"  {'':<36}" + "median  mean  max     " * len(SUBSETS))
        for name, search, seeded in rows:
            counts = measure(search, machine_list, seeded)
            cells = "".join(summary([n for curve, n in counts if keep(curve)]) for _, keep in SUBSETS)
            print(f"  {name:<36}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``within_memory_budget`` says what the cell's windows measured, not what a cached probe once claimed: a cached
batch far over the budget runs (nothing stops it on the CPU) and the record says the budget did not hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_longeff.cell.batch import PROBE_VERSION, BatchCache
from pytest_longeff.cell.resources import LongeffSession
from pytest_longeff.cell.run import run_cell, within_budget
from pytest_longeff.matrix import Cell
from pytest_longeff.plugin import EXTENSIONS_KEY, SETTINGS_KEY
from pytest_longeff.record.sections import CellRecord, Identity

MIB = 2**20
BUDGET_MIB = 24  # LED-base (tiny) at 256 tokens trains at batch 1 in about 20 MiB on the CPU
CELL = Cell("led", "base", 256, "qasper")


@pytest.fixture
def session(pytester: pytest.Pytester, heavy_modules: None, tmp_path: Path) -> Iterator[LongeffSession]:
    """A real session of one tiny cell on the CPU with a small memory budget and room for a batch of 64."""
    config = pytester.parseconfigure(
        "--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
        "--longeff-eval-samples=1", "--longeff-repeats=1", "--longeff-idle-s=0", "--longeff-device=cpu",
        "--longeff-energy=none", "--longeff-speed-reference=off", "--longeff-train-budget=steps=1",
        "--longeff-max-batch=64", f"--longeff-memory-budget={BUDGET_MIB}MiB")
    ext = config.stash[EXTENSIONS_KEY]
    made = LongeffSession(config.stash[SETTINGS_KEY], tmp_path, ext.families, ext.tasks, meters=ext.meters,
                          metrics=ext.metrics)
    yield made
    made.close()


def test_a_cached_batch_far_over_the_budget_is_recorded_as_over_it(session: LongeffSession) -> None:
    # What an earlier run's probe claimed: batch 64 at 1 MiB (well within the budget).
    entry = {"version": PROBE_VERSION, "batch_size": 64, "probes": 2, "peak_memory_bytes": MIB}
    cache = BatchCache(lambda key: dict(entry), lambda key, value: None)
    record = CellRecord(Identity(CELL.id, CELL.family, CELL.size, CELL.seq_len, CELL.task, "tiny", "cpu"))
    run_cell(session, CELL, record, cache)
    d = record.to_dict()
    assert d["batch_size"] == 64 and d["batch_search"]["source"] == "cached"
    assert d["train"]["peak_memory_bytes"] > BUDGET_MIB * MIB, d["train"]["peak_memory_bytes"]
    assert d["train"]["within_memory_budget"] is False


@pytest.mark.parametrize(("peaks", "expected"), [
    ((100, 100), True), ((101, 50), False), ((50, 101), False), ((None, 101), False), ((50, None), None),
    ((None, None), None),
])
def test_the_budget_holds_only_when_every_measured_window_stayed_within_it(
        peaks: tuple[int | None, int | None], expected: bool | None) -> None:
    assert within_budget(100, *peaks) is expected

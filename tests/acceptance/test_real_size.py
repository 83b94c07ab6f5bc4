"""What a cell does around its windows, seen from outside by a conftest that watches the phases: an
out-of-memory error in the middle of a cell (raised as CUDA raises it, from inside training), the untimed warm-up
when the batch comes from the cache, and the trimmed heap the inference window starts from."""

from __future__ import annotations

import json
from typing import Any

import pytest

ONE_CELL = [
    "--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
    "--longeff-eval-samples=2", "--longeff-idle-s=0", "--longeff-max-batch=2", "-p", "no:randomly",
    "--longeff-device=cpu", "--longeff-energy=none", "--longeff-train-budget=steps=2",
]

WATCH = """
import json, os
import torch
import pytest_longeff.cell.batch as batch
import pytest_longeff.cell.run as run

EVENTS = os.path.join(os.path.dirname(__file__), "events.jsonl")


def log(**event):
    with open(EVENTS, "a") as fh:
        fh.write(json.dumps(event) + "\\n")


real_window, real_release, real_generate = run.window, run.release_memory, run.generate
real_fine_tune, real_step = run.fine_tune, batch.train_step


def window(name, device, meter):
    log(event="window", name=name)
    return real_window(name, device, meter)


def release_memory(device, full=True):
    log(event="release")
    return real_release(device, full)


def generate(*args, **kwargs):
    log(event="generate", fixed=kwargs.get("fixed", False))
    return real_generate(*args, **kwargs)


def train_step(built, split, index, *args, **kwargs):
    log(event="untimed step", batch=len(index))
    if os.environ.get("LONGEFF_TEST_OOM_WARM") and len(index) >= 2:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (fake, from the test)")
    return real_step(built, split, index, *args, **kwargs)


def fine_tune(built, train, validation, plan):
    grads = sum(p.grad is not None for p in built.model.parameters())
    log(event="fine_tune", batch=plan.batch_size, grads_at_entry=grads)
    if os.environ.get("LONGEFF_TEST_OOM") and plan.batch_size >= 2:
        # As CUDA fails mid-step: the forward and backward have made gradients, then an allocation fails.
        real_step(built, train, [0, 1], plan.device, 1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake, from the test)")
    return real_fine_tune(built, train, validation, plan)


run.window, run.release_memory, run.generate, run.fine_tune = window, release_memory, generate, fine_tune
batch.train_step = train_step


def pytest_unconfigure(config):
    # pytester runs in this process and keeps the package's modules: the next run must find them unwrapped.
    run.window, run.release_memory, run.generate = real_window, real_release, real_generate
    run.fine_tune = real_fine_tune
    batch.train_step = real_step
"""


def _events(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    path = pytester.path / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    path.unlink()
    return events


def _record(pytester: pytest.Pytester) -> dict[str, Any]:
    (record,) = json.loads((pytester.path / "reports" / "longeff.json").read_text())["records"]
    return record


@pytest.fixture
def watched(bench: pytest.Pytester) -> pytest.Pytester:
    bench.makeconftest(WATCH)
    return bench


def test_an_out_of_memory_error_mid_cell_retries_smaller_and_forgets_the_cached_batch(
        watched: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards an OOM in training failing the cell, and every later run the same way until --longeff-batch-reset,
    with the failed step's gradients left on the device."""
    watched.runpytest(*ONE_CELL).assert_outcomes(passed=1)  # the search finds batch 2 and caches it
    assert _record(watched)["batch_size"] == 2
    _events(watched)
    monkeypatch.setenv("LONGEFF_TEST_OOM", "1")
    watched.runpytest(*ONE_CELL).assert_outcomes(passed=1)
    record = _record(watched)
    assert record["batch_size"] == 1 and record["status"] == "passed" and record["train"]["steps"] == 2
    search = record["batch_search"]
    assert search["source"] == "retried after out-of-memory at batch 2"
    oom = search["out_of_memory"]
    assert oom["batch_size"] == 2 and oom["source"] == "cached" and oom["retried_at"] == 1
    assert "CUDA out of memory" in oom["error"] and oom["cached_batch_forgotten"] is True
    events = _events(watched)
    tunes = [e for e in events if e["event"] == "fine_tune"]
    assert [(e["batch"], e["grads_at_entry"]) for e in tunes] == [(2, 0), (1, 0)]  # the failed step's grads freed
    # The retry's batch was never probed in this process: it gets its untimed step before its window too.
    assert [e["batch"] for e in events if e["event"] == "untimed step"] == [2, 1]
    monkeypatch.delenv("LONGEFF_TEST_OOM")
    watched.runpytest(*ONE_CELL).assert_outcomes(passed=1)
    after = _record(watched)  # the batch that ran stands in the cache, not the one that failed
    assert (after["batch_size"], after["batch_search"]["source"]) == (1, "cached")
    assert after["batch_search"]["after_out_of_memory_at"] == 2


def test_an_out_of_memory_error_in_the_untimed_step_is_retried_too(
        watched: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the warm-up step of a cached batch that no longer fits failing the cell outside the retry."""
    watched.runpytest(*ONE_CELL).assert_outcomes(passed=1)
    monkeypatch.setenv("LONGEFF_TEST_OOM_WARM", "1")
    watched.runpytest(*ONE_CELL).assert_outcomes(passed=1)
    record = _record(watched)
    assert record["batch_size"] == 1 and record["batch_search"]["out_of_memory"]["source"] == "cached"


def test_a_batch_fixed_by_option_is_not_changed_after_out_of_memory(
        watched: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGEFF_TEST_OOM", "1")
    result = watched.runpytest(*ONE_CELL, "--longeff-batch-size=2")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*OutOfMemoryError*"])


def test_a_cached_batch_gets_an_untimed_step_and_generation_before_its_windows(watched: pytest.Pytester) -> None:
    """Guards the first training step and first generate() of a warm-cache run landing inside the windows (the
    probes of a fresh search take those costs outside them), and the inference window reusing training's heap."""
    watched.runpytest(*ONE_CELL).assert_outcomes(passed=1)
    fresh = _record(watched)
    assert fresh["batch_search"]["source"] == "searched" and "cold_start" not in fresh["batch_search"]
    _events(watched)
    watched.runpytest(*ONE_CELL).assert_outcomes(passed=1)
    cached = _record(watched)
    assert cached["batch_search"]["source"] == "cached" and "untimed" in cached["batch_search"]["cold_start"]
    events = [e for e in _events(watched) if e["event"] != "fine_tune"]
    names = [e.get("name", e["event"]) if e["event"] == "window" else e["event"] for e in events]
    train = names.index("train")
    assert "untimed step" in names[:train]
    inference = names.index("inference")
    assert names[inference - 1] == "release"  # the heap is trimmed right before the window opens
    assert [e["fixed"] for e in events[train:inference] if e["event"] == "generate"] == [False]  # scored, untimed
    assert [e["fixed"] for e in events[inference:] if e["event"] == "generate"] == [True]

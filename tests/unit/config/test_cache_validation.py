"""What the caches hold across runs is checked before it is used: a found batch size (``config.cache``) and a
tokenised split (a torch file under the cache folder) that is unreadable or does not fit the cell is a miss with one
warning naming the entry and why, recomputed and written back, never used and never an error."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pytest_longeff.cell import batch as batch_mod
from pytest_longeff.cell.batch import PROBE_VERSION, BatchCache, choose_batch
from pytest_longeff.cell.prepare import Inputs
from pytest_longeff.config.caches import batch_cache
from pytest_longeff.errors import LongeffWarning
from pytest_longeff.matrix import Cell
from pytest_longeff.profiles import PROFILES
from pytest_longeff.tasks.specs import BUILTIN_TASKS

KEY = "longeff/batch/0123456789abcdef0123"
# The fake probe's memory is 100 bytes a sample: under a 450-byte budget batch 4 fits and 5 does not.
BUDGET, MAX_BATCH, ANSWER = 450, 8, 4
VALID = {"version": PROBE_VERSION, "batch_size": 2, "probes": 3, "peak_memory_bytes": 200, "flops": {"2": 10}}


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch sizes probed: each probe is one training step whose peak is 100 bytes a sample."""
    tried: list[int] = []

    def probe(built: Any, split: Any, batch_size: int, device: str, flops: Any = None, precision: Any = None,
              **_: Any) -> int:
        tried.append(batch_size)
        return 100 * batch_size

    monkeypatch.setattr(batch_mod, "probe_batch", probe)
    monkeypatch.setattr(batch_mod, "batch_cache_key", lambda session, cell, built: KEY)
    return tried


def _choose(cache: BatchCache) -> tuple[Any, list[warnings.WarningMessage]]:
    settings = SimpleNamespace(batch_size=None, batch_reset=False, max_batch=MAX_BATCH, memory_budget_bytes=BUDGET)
    session = SimpleNamespace(settings=settings, found_batches={}, device="cpu")
    cell = Cell("led", "base", 1024, "qasper")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = choose_batch(session, cell, None, None, cache, {})  # type: ignore[arg-type]
    return choice, [w for w in caught if issubclass(w.category, LongeffWarning)]


def _dict_cache(value: object) -> tuple[BatchCache, dict[str, object]]:
    store: dict[str, object] = {KEY: value}
    return BatchCache(store.get, store.__setitem__), store


def test_a_valid_entry_is_used_without_a_probe(probes: list[int]) -> None:
    cache, store = _dict_cache(dict(VALID))
    choice, caught = _choose(cache)
    assert (choice.batch_size, choice.source, probes, caught) == (2, "cached", [], [])
    assert store[KEY] == VALID


@pytest.mark.parametrize(("field", "value", "why"), [
    ("batch_size", True, r"batch_size is True, not a whole number from 1 to 8"),
    ("batch_size", 0, r"batch_size is 0"),
    ("batch_size", -1, r"batch_size is -1"),
    ("batch_size", 1.5, r"batch_size is 1.5"),
    ("batch_size", "4", r"batch_size is '4'"),
    ("batch_size", 10**9, r"batch_size is 1000000000, not a whole number from 1 to 8"),
    ("version", PROBE_VERSION - 1, rf"version is {PROBE_VERSION - 1}, not {PROBE_VERSION}"),
    ("version", None, r"version is None"),
    ("probes", -2, r"probes is -2"),
    ("peak_memory_bytes", "200", r"peak_memory_bytes is '200'"),
    ("peak_memory_bytes", False, r"peak_memory_bytes is False"),
    ("flops", {"2": "ten"}, r"flops is \{'2': 'ten'\}"),
    ("flops", [10], r"flops is \[10\]"),
    ("after_out_of_memory_at", "3", r"after_out_of_memory_at is '3'"),
    ("after_out_of_memory_at", 2, r"after_out_of_memory_at is 2, not null or a whole number above batch_size"),
    ("surprise", 1, r"unknown \['surprise'\]"),
])
def test_an_invalid_entry_is_a_miss_with_one_warning_then_searched_and_written_back(
        probes: list[int], field: str, value: object, why: str) -> None:
    cache, store = _dict_cache({**VALID, field: value})
    choice, caught = _choose(cache)
    assert (choice.batch_size, choice.source) == (ANSWER, "searched") and probes
    assert len(caught) == 1
    message = str(caught[0].message)
    assert KEY in message and re.search(why, message), message
    assert store[KEY] == {"version": PROBE_VERSION, "batch_size": ANSWER, "probes": len(probes),
                          "peak_memory_bytes": 100 * ANSWER, "flops": {}}
    # Once per entry: the next run finds what was written back and uses it, quietly.
    probes.clear()
    again, caught = _choose(cache)
    assert (again.batch_size, again.source, probes, caught) == (ANSWER, "cached", [], [])


@pytest.mark.parametrize(("entry", "why"), [
    ({"batch_size": 2}, r"fields missing \['version', 'probes', 'peak_memory_bytes'\]"),
    ([2], r"not an object but list"),
    (3, r"not an object but int"),
])
def test_an_entry_of_the_wrong_form_is_a_miss_with_a_warning(probes: list[int], entry: object, why: str) -> None:
    cache, store = _dict_cache(entry)
    choice, caught = _choose(cache)
    assert (choice.batch_size, choice.source) == (ANSWER, "searched")
    assert len(caught) == 1 and re.search(rf"cached batch size {KEY} ignored: {why}", str(caught[0].message))
    assert isinstance(store[KEY], dict) and store[KEY]["batch_size"] == ANSWER  # type: ignore[index]


def test_no_entry_is_a_quiet_miss(probes: list[int]) -> None:
    cache, store = _dict_cache(None)
    choice, caught = _choose(cache)
    assert (choice.source, caught) == ("searched", []) and store[KEY]["batch_size"] == ANSWER  # type: ignore[index]


def test_a_truncated_entry_in_pytests_cache_is_a_miss_with_a_warning(pytester: pytest.Pytester,
                                                                      probes: list[int]) -> None:
    config = pytester.parseconfigure()
    cache = batch_cache(config)
    assert cache is not None
    config.cache.set(KEY, VALID)  # type: ignore[union-attr]
    (path,) = [p for p in (pytester.path / ".pytest_cache" / "v").rglob("*") if p.is_file() and KEY.endswith(p.name)]
    path.write_text(path.read_text()[:20])
    choice, caught = _choose(cache)
    assert (choice.batch_size, choice.source) == (ANSWER, "searched")
    assert len(caught) == 1 and KEY in str(caught[0].message) and "cannot be read" in str(caught[0].message)
    assert config.cache.get(KEY, None)["batch_size"] == ANSWER  # type: ignore[union-attr]


# -- tokenised inputs ---------------------------------------------------------------------------------------------
QASPER = next(t for t in BUILTIN_TASKS if t.name == "qasper")
CELL = Cell("led", "base", 1024, "qasper")


def _inputs(cache_dir: Path) -> Inputs:
    """A fresh session's inputs (nothing in memory) over the generated data and the tiny profile."""
    settings = SimpleNamespace(data_dir=None, dataset=None, tasks=("qasper",), columns=None, lengths=(1024,))
    return Inputs(settings, PROFILES["tiny"], cache_dir, {})  # type: ignore[arg-type]


def _tokenized(cache_dir: Path) -> tuple[Any, list[warnings.WarningMessage], Inputs]:
    inputs = _inputs(cache_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = inputs.tokenized(CELL, QASPER, "train")
    return split, [w for w in caught if issubclass(w.category, LongeffWarning)], inputs


def _damage(blob: dict[str, Any], how: str) -> None:
    if how == "cut to 16 tokens":
        blob["input_ids"], blob["attention_mask"] = blob["input_ids"][:, :16], blob["attention_mask"][:, :16]
        blob["input_tokens"] = int(blob["attention_mask"].sum())
    elif how == "float inputs":
        blob["input_ids"] = blob["input_ids"].float()
    elif how == "1-dimensional inputs":
        blob["input_ids"] = blob["input_ids"].flatten()
    elif how == "a row short":
        for name in ("input_ids", "attention_mask", "labels"):
            blob[name] = blob[name][:-1]
        blob["ids"] = blob["ids"][:-1]
    elif how == "labels widened":
        blob["labels"] = torch.nn.functional.pad(blob["labels"], (0, 3), value=-100)


@pytest.mark.parametrize(("how", "why"), [
    ("cut to 16 tokens", r"input_ids is of shape \(\d+, 16\), not \(\d+, 1024\)"),
    ("float inputs", r"input_ids is of dtype torch.float32, not an integer dtype"),
    ("1-dimensional inputs", r"input_ids is 1-dimensional, not 2-dimensional"),
    ("a row short", r"its rows are not the split's"),
    ("labels widened", r"labels are \d+ wide, not the longest target's width"),
    ("truncated file", r"it cannot be read"),
])
def test_a_tokenised_split_that_does_not_fit_the_cell_is_rebuilt_with_a_warning(tmp_path: Path, how: str,
                                                                                 why: str) -> None:
    first, caught, inputs = _tokenized(tmp_path)
    assert caught == [] and inputs.misses == 1
    (path,) = (tmp_path / "tokenized").glob("*.pt")
    if how == "truncated file":
        path.write_bytes(path.read_bytes()[:100])
    else:
        blob = torch.load(path, weights_only=True)
        _damage(blob, how)
        torch.save(blob, path)
    split, caught, inputs = _tokenized(tmp_path)
    assert inputs.misses == 1 and len(caught) == 1, caught
    assert str(path) in str(caught[0].message) and re.search(why, str(caught[0].message))
    assert tuple(split.input_ids.shape) == (len(first.ids), 1024) and split.input_ids.dtype == torch.int64
    assert torch.equal(split.input_ids, first.input_ids) and torch.equal(split.labels, first.labels)
    # Rebuilt and written back: a third session uses it quietly.
    again, caught, inputs = _tokenized(tmp_path)
    assert caught == [] and inputs.misses == 0 and torch.equal(again.input_ids, first.input_ids)

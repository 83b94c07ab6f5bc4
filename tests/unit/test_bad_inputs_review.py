"""Damaged inputs found by review, each answered once and cleanly: a bad cache entry does not outlive a warning
turned into an error (``-W error``), a report without a memory budget shows no made-up budget, and an output a
command cannot write is one line and exit 2, not a "bug"."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from pytest_longeff.cell.batch import BatchCache, _cached
from pytest_longeff.cell.prepare import Shape, _load_tokenized
from pytest_longeff.cli import main
from pytest_longeff.errors import LongeffWarning
from pytest_longeff.report.tables import method_notes

TINY_RUN = Path(__file__).parents[2] / "docs" / "assets" / "tiny-run.json"


def test_a_bad_tokenised_entry_is_removed_even_when_its_warning_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "split.pt"
    path.write_bytes(b"not a torch file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(LongeffWarning, match="cannot be read"):
            _load_tokenized(path, Shape(["a"], 16, 8, "study"))
    assert not path.exists()  # the next run rebuilds it instead of failing again


def test_a_bad_cached_batch_is_cleared_even_when_its_warning_is_an_error() -> None:
    store: dict[str, object] = {"k": True}
    cache = BatchCache(store.get, store.__setitem__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(LongeffWarning, match="cached batch size k ignored"):
            _cached(cache, "k", {}, 4)
    assert store["k"] is None  # a plain miss next time: searched again, no warning


def test_a_report_without_a_memory_budget_says_not_recorded() -> None:
    records = json.loads(TINY_RUN.read_text(encoding="utf-8"))["records"]
    notes = method_notes(records, {"memory_budget_bytes": None, "profile": "tiny"})
    assert any("memory budget: not recorded" in n for n in notes)
    assert not any("memory budget: 0.00" in n for n in notes)


def test_an_output_a_command_cannot_write_is_one_line_and_exit_2(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notdir").write_text("a file where a folder should be", encoding="utf-8")
    code = main(["merge", str(TINY_RUN), "-o", str(tmp_path / "notdir" / "m.json"), "--allow-missing"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("pytest-longeff merge: cannot write ") and "bug" not in err[0]

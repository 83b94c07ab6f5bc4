"""A report write that fails (a full disk, a read-only folder) leaves the last whole file and loses no record."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from support.filesystems import full_filesystem

from pytest_longeff.record import io
from pytest_longeff.record.io import JsonReport, atomic_write_text, load_report

HEADER: dict[str, Any] = {"machine": {}, "software": {}, "settings": {}, "shard": None}


def _record(n: int) -> dict[str, Any]:
    return {"id": f"cell-{n}", "kind": "window", "status": "passed"}


def test_a_full_disk_leaves_the_previous_file_whole_and_no_temporary_file(tmp_path: Path) -> None:
    with full_filesystem(tmp_path / "full", "16k") as full:
        if not full.in_process:
            pytest.skip("the tmpfs is only visible inside a user namespace")
        target = full.path / "run.json"
        atomic_write_text(target, "old\n")
        with pytest.raises(OSError) as failed:
            atomic_write_text(target, "x" * 64 * 1024)
        assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(target)
        assert target.read_text() == "old\n"
        assert [p.name for p in full.path.iterdir()] == ["run.json"]


def test_a_failed_write_keeps_the_records_and_says_how_many_the_file_holds(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    report = JsonReport(tmp_path / "run.json", dict(HEADER))
    report.add(_record(1))
    assert (report.on_disk, report.write_error) == (1, None)

    def full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "atomic_write_text", full)
    written = report.add(_record(2), predictions={"a": "b"})  # no exception: the run goes on
    assert written["id"] == "cell-2" and written["predictions_path"] is None
    assert [r["id"] for r in report.records] == ["cell-1", "cell-2"]
    assert report.on_disk == 1 and report.write_error is not None and report.write_error.errno == errno.ENOSPC
    assert list(report.predictions_errors) == ["cell-2"]
    assert [r["id"] for r in load_report(tmp_path / "run.json")["records"]] == ["cell-1"]

    monkeypatch.undo()  # space freed: the next write carries every record
    assert report.write() is True
    assert (report.on_disk, report.write_error) == (2, None)
    assert [r["id"] for r in load_report(tmp_path / "run.json")["records"]] == ["cell-1", "cell-2"]

"""Claiming a report: the writability check tries a real write, and the lock keeps a second holder out."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from support.filesystems import fill, full_filesystem, read_only_dir

from pytest_longeff.record.lock import ReportBusy, ReportLock, lock_path, unwritable


def test_a_writable_folder_passes_and_keeps_no_probe(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text("{}")
    assert unwritable(tmp_path) is None
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]


def test_a_folder_not_made_yet_is_judged_where_it_would_be_made_and_is_not_made(tmp_path: Path) -> None:
    assert unwritable(tmp_path / "reports" / "nightly") is None
    assert list(tmp_path.iterdir()) == []


def test_a_path_through_a_file_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "reports").write_text("a file where a folder should be")
    assert unwritable(tmp_path / "reports" / "sub") == (tmp_path / "reports", "not a folder")


def test_a_read_only_mount_is_refused_with_the_system_reason(tmp_path: Path) -> None:
    """Guards against os.access, which answers yes to root on a read-only mount."""
    with read_only_dir(tmp_path / "ro") as ro:
        if not ro.in_process:
            pytest.skip("the read-only mount is only visible inside a user namespace")
        where, reason = unwritable(ro.path / "reports") or (None, None)
        assert where == ro.path
        assert reason == ("Read-only file system" if ro.kind == "mount" else "Permission denied")


def test_a_full_disk_is_refused(tmp_path: Path) -> None:
    """An empty probe file fits on a full disk; the check writes a byte, which does not."""
    with full_filesystem(tmp_path / "full", "16k") as full:
        if not full.in_process:
            pytest.skip("the tmpfs is only visible inside a user namespace")
        fill(full.path)
        assert unwritable(full.path) == (full.path, "No space left on device")


def test_a_second_holder_in_the_same_process_is_refused_and_told_who_holds_it(tmp_path: Path) -> None:
    """Locks of flock belong to an open file description: a second open() and flock() in one process is refused."""
    report = tmp_path / "reports" / "run.json"
    before = time.strftime("%Y-%m-%d %H:%M:%S")
    lock = ReportLock.acquire(report)
    try:
        with pytest.raises(ReportBusy) as busy:
            ReportLock.acquire(report)
        assert busy.value.pid == os.getpid() and busy.value.report == report
        assert busy.value.started is not None and before <= busy.value.started <= time.strftime("%Y-%m-%d %H:%M:%S")
    finally:
        lock.release()
    again = ReportLock.acquire(report)  # released: the next run takes it
    again.release()


def test_release_removes_the_lock_file_and_the_folders_made_for_it(tmp_path: Path) -> None:
    report = tmp_path / "a" / "b" / "run.json"
    lock = ReportLock.acquire(report)
    assert lock_path(report).is_file() and json.loads(lock_path(report).read_text())["pid"] == os.getpid()
    lock.release()
    lock.release()  # twice is harmless
    assert list(tmp_path.iterdir()) == []


def test_folders_holding_reports_are_kept_on_release(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "run.json"
    lock = ReportLock.acquire(report)
    report.write_text("{}")
    lock.release()
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["run.json"]


def test_a_lock_file_left_by_a_dead_run_is_no_obstacle(tmp_path: Path) -> None:
    report = tmp_path / "run.json"
    lock_path(report).write_text("garbage from a killed run")
    lock = ReportLock.acquire(report)
    try:
        assert json.loads(lock_path(report).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_holder_that_has_not_said_who_it_is_is_reported_as_unknown(tmp_path: Path) -> None:
    report = tmp_path / "run.json"
    lock = ReportLock.acquire(report)
    try:
        lock_path(report).write_text("")
        with pytest.raises(ReportBusy) as busy:
            ReportLock.acquire(report)
        assert (busy.value.pid, busy.value.started) == (None, None)
    finally:
        lock.release()

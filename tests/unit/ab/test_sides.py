"""A side's process: started under the environment's interpreter in its directory with its heap on huge pages, ended
and reaped on close."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_longeff.ab.sides import Env, Side, SideError


def _alive(pid: int) -> bool:
    """Whether ``pid`` is still a process, a zombie (ended, not yet waited for) included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not hasattr(os, "kill") or os.name == "nt", reason="POSIX process table")
def test_a_closed_side_leaves_no_process_behind(tmp_path: Path) -> None:
    side = Side(Env("base", sys.executable, str(tmp_path)))
    pid = side.hello["pid"]
    assert side.hello["cwd"] == str(tmp_path) and _alive(pid)
    side.close()
    # Reaped, not a zombie: each process pair of a job ends before the next one starts.
    assert not _alive(pid)
    side.close()  # closing twice is harmless


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a process's environment from /proc")
@pytest.mark.parametrize(("own", "expected"), [
    (None, "glibc.malloc.hugetlb=1"),  # the heap on huge pages
    ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),  # 4 KiB pages, as this environment asks
    ("glibc.rtld.optional_static_tls=2048", "glibc.rtld.optional_static_tls=2048:glibc.malloc.hugetlb=1"),
])
def test_both_sides_start_with_their_heap_on_huge_pages_unless_this_environment_says_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own: str | None, expected: str) -> None:
    if own is None:
        monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    else:
        monkeypatch.setenv("GLIBC_TUNABLES", own)
    side = Side(Env("head", sys.executable, str(tmp_path)))
    try:
        # The environment the process was started with (what glibc reads at its start), not one set after.
        started = _environ(side.hello["pid"])
    finally:
        side.close()
    # glibc may cut a list of tunables short in the process's own copy of its start environment; the side's
    # interpreter read the whole value when it started (and nothing sets it after)
    assert started["GLIBC_TUNABLES"] == expected if ":" not in expected else expected.startswith(
        started["GLIBC_TUNABLES"])
    assert side.hello["glibc_tunables"] == expected  # what the side itself reports, for the job's report
    assert os.environ.get("GLIBC_TUNABLES") == own  # this process's own environment as it was


def test_a_side_that_cannot_start_says_so_and_leaves_this_environment_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with pytest.raises(SideError, match="could not start"):
        Side(Env("base", str(tmp_path / "no-python"), str(tmp_path)))
    assert "GLIBC_TUNABLES" not in os.environ

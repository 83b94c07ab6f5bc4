"""A side's process: started under the environment's interpreter in its directory with its heap on huge pages, ended
and reaped on close."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_longeff.ab.side import Cores, _cpulist, node_cores
from pytest_longeff.ab.sides import Env, Side, SideError, close_both


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


@pytest.mark.skipif(not hasattr(os, "kill") or os.name == "nt", reason="POSIX process table")
def test_both_sides_closed_at_once_leave_no_process_behind(tmp_path: Path) -> None:
    sides = (Side(Env("base", sys.executable, str(tmp_path))), Side(Env("head", sys.executable, str(tmp_path))))
    pids = [s.hello["pid"] for s in sides]
    assert all(_alive(p) for p in pids)
    close_both(sides)
    assert not any(_alive(p) for p in pids)  # ended and reaped, each after it answered `close`
    close_both(sides)  # harmless twice


@pytest.mark.skipif(not hasattr(os, "kill") or os.name == "nt", reason="POSIX process table")
def test_a_side_that_never_answers_close_is_still_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    side = Side(Env("base", sys.executable, str(tmp_path)))
    pid = side.hello["pid"]
    monkeypatch.setattr(side.channel, "receive", lambda timeout=None: (_ for _ in ()).throw(EOFError("gone")))
    side.close()  # no answer to `close`: no SIGTERM by pid, the gateway's own termination ends it
    assert not _alive(pid)


def test_cpu_lists_and_numa_nodes_read_as_the_kernel_writes_them(tmp_path: Path) -> None:
    for node, cpus in (("node0", "0-3,8-11\n"), ("node1", "4-7,12-15\n")):
        (tmp_path / node).mkdir()
        (tmp_path / node / "cpulist").write_text(cpus)
    (tmp_path / "possible").write_text("0-1\n")  # not a node directory
    assert _cpulist("0-2,5,7-8\n") == {0, 1, 2, 5, 7, 8}
    assert node_cores([9], tmp_path) == {0, 1, 2, 3, 8, 9, 10, 11}
    assert node_cores([1, 5], tmp_path) == set(range(16))
    assert node_cores([99], tmp_path) is None  # on no node: the kernel does not say
    assert node_cores([0], tmp_path / "missing") is None
    (tmp_path / "node0" / "cpulist").write_text("garbage")
    assert node_cores([0], tmp_path) is None


def test_windows_run_on_the_measuring_cores_and_the_rest_near_them(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: calls.append(sorted(cores)), raising=False)
    monkeypatch.setattr("pytest_longeff.ab.side.node_cores", lambda cores: {0, 1, 2, 3, 16, 17})
    cores = Cores([2])
    cores.unmeasured()
    cores.windows()
    cores.windows()  # already there: no second call
    cores.unmeasured()
    # the measuring core's node, within what the process may use (16 and 17 are not allowed to it)
    assert calls == [[0, 1, 2, 3], [2], [0, 1, 2, 3]]

    calls.clear()
    monkeypatch.setattr("pytest_longeff.ab.side.node_cores", lambda cores: None)  # the kernel does not say
    Cores([5]).unmeasured()
    assert calls == [[0, 1, 2, 3, 4, 5, 6, 7]]

    calls.clear()
    unpinned = Cores(None)  # not pinned: never moved
    unpinned.windows()
    unpinned.unmeasured()
    assert calls == []

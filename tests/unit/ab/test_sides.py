"""A side's process: started under the environment's interpreter in its directory with its heap on huge pages, ended
and reaped on close."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from pytest_longeff.ab.side import Cores, _cpulist, node_cores, threads_of_this_process
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


def _record_kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    real = os.kill

    def kill(pid: int, sig: int) -> None:
        if sig:
            sent.append((pid, sig))
        real(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    return sent


@pytest.mark.skipif(not hasattr(os, "kill") or os.name == "nt", reason="POSIX process table")
def test_both_sides_closed_at_once_are_ended_as_soon_as_they_answer(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sides = (Side(Env("base", sys.executable, str(tmp_path))), Side(Env("head", sys.executable, str(tmp_path))))
    pids = [s.hello["pid"] for s in sides]
    assert all(_alive(p) for p in pids)
    sent = _record_kills(monkeypatch)
    close_both(sides)
    # each answered `close`, so each was ended at once (not left to execnet's slower exit), then reaped
    assert sent == [(pids[0], signal.SIGTERM), (pids[1], signal.SIGTERM)]
    assert not any(_alive(p) for p in pids)
    close_both(sides)  # harmless twice
    assert len(sent) == 2


@pytest.mark.skipif(not hasattr(os, "kill") or os.name == "nt", reason="POSIX process table")
def test_a_side_whose_answer_to_close_never_comes_is_not_signalled_but_still_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    side = Side(Env("base", sys.executable, str(tmp_path)))
    pid = side.hello["pid"]
    monkeypatch.setattr(side.channel, "receive", lambda timeout=None: (_ for _ in ()).throw(EOFError("gone")))
    sent = _record_kills(monkeypatch)
    side.close()
    assert sent == []  # no answer: not ended by pid, but by execnet's exit (or its kill after 30 s)
    assert not _alive(pid)


@pytest.mark.skipif(not hasattr(os, "kill") or os.name == "nt", reason="POSIX process table")
def test_the_second_side_is_ended_when_ending_the_first_fails(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sides = (Side(Env("base", sys.executable, str(tmp_path))), Side(Env("head", sys.executable, str(tmp_path))))
    pid = sides[1].hello["pid"]
    first_end = sides[0].end

    def broken() -> None:
        first_end()
        raise RuntimeError("terminate failed")

    monkeypatch.setattr(sides[0], "end", broken)
    with pytest.raises(RuntimeError, match="terminate failed"):
        close_both(sides)
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
    calls: list[tuple[int, list[int]]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: calls.append((pid, sorted(cores))),
                        raising=False)
    monkeypatch.setattr("pytest_longeff.ab.side.threads_of_this_process", lambda: [11, 12])
    monkeypatch.setattr("pytest_longeff.ab.side.node_cores", lambda cores: {0, 1, 2, 3, 16, 17})
    cores = Cores([2])
    cores.unmeasured()
    cores.windows()
    cores.windows()  # already there: no second move
    cores.unmeasured()
    # every thread moved (torch's workers too), to the measuring core's node within what the process may use
    # (16 and 17 are not allowed to it), to the measuring core for windows, and back
    near = [0, 1, 2, 3]
    assert calls == [(11, near), (12, near), (11, [2]), (12, [2]), (11, near), (12, near)]

    calls.clear()
    monkeypatch.setattr("pytest_longeff.ab.side.node_cores", lambda cores: None)  # the kernel does not say
    Cores([5]).unmeasured()
    assert [c for _, c in calls] == [list(range(8))] * 2

    calls.clear()
    unpinned = Cores(None)  # not pinned: never moved
    unpinned.windows()
    unpinned.unmeasured()
    assert calls == []


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux thread list")
def test_the_threads_of_this_process_include_a_new_one() -> None:
    import threading

    started, stop = threading.Event(), threading.Event()
    ids: list[int] = []

    def run() -> None:
        ids.append(threading.get_native_id())
        started.set()
        stop.wait(10)

    t = threading.Thread(target=run)
    t.start()
    started.wait(10)
    try:
        assert {threading.get_native_id(), ids[0]} <= set(threads_of_this_process())
    finally:
        stop.set()
        t.join()

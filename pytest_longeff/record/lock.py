"""Claiming a report for one run: its folders checked writable before any cell runs, and an exclusive lock so that
two runs never write the same report.

The writability check creates (and removes) a small file in the folder: ``os.access`` answers yes to root in a
folder without write permission and on a read-only mount, where the first real write would then fail after every
cell had run.

The lock is ``fcntl.flock`` on a sidecar ``<report>.lock`` file. flock locks belong to an open file description, so
a second ``open()`` and ``flock`` is refused even in the same process, and the operating system releases the lock
when its holder dies: a lock file left by a killed run is no obstacle. The holder writes its pid and start time into
the file so that a refused run can say who holds it. Where ``fcntl`` does not exist (Windows) or the filesystem does
not support flock, :meth:`ReportLock.acquire` raises :class:`LockUnavailable` and the caller goes on without a lock.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: there is no flock, and the run goes on unlocked (with a warning)
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"
PROBE_PREFIX = ".longeff-write-check."
#: flock errors that mean "this filesystem cannot lock" (some network filesystems), not "someone holds it".
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


class ReportBusy(Exception):
    """Another process holds the lock of ``report``; ``pid`` and ``started`` say which (None where unknown)."""

    def __init__(self, report: Path, pid: int | None, started: str | None) -> None:
        super().__init__(f"{report}: locked by pid {pid if pid is not None else 'unknown'}")
        self.report, self.pid, self.started = report, pid, started


class LockUnavailable(Exception):
    """This platform or filesystem offers no flock; the message says why."""


def existing_folder(folder: Path) -> Path:
    """``folder``, or where it does not exist yet the nearest folder above it that does (where it would be made)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def unwritable(folder: Path) -> tuple[Path, str] | None:
    """Where and why a file cannot be written in ``folder`` (or, where it does not exist yet, in the folder it would
    be made in), or None when it can: a one-byte file is created there and removed."""
    probe = existing_folder(folder)
    if not probe.is_dir():
        return probe, "not a folder"
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=PROBE_PREFIX)
    except OSError as exc:
        return probe, exc.strerror or str(exc)
    try:
        os.write(fd, b"\n")  # an empty file fits on a full disk; one byte does not
    except OSError as exc:
        return probe, exc.strerror or str(exc)
    finally:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
    return None


def lock_path(report: Path) -> Path:
    """The sidecar lock file of ``report``: ``<report>.lock``."""
    return report.with_name(report.name + LOCK_SUFFIX)


class ReportLock:
    """The exclusive lock of one report, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, path: Path, fd: int, made: list[Path]) -> None:
        self.path = path
        self.fd: int | None = fd
        self.made = made  # folders made for the lock file, removed again on release when still empty

    @classmethod
    def acquire(cls, report: Path) -> ReportLock:
        """Take the lock of ``report`` without waiting: :class:`ReportBusy` when another holder has it,
        :class:`LockUnavailable` where flock does not work, an OSError where the lock file cannot be made."""
        if fcntl is None:
            raise LockUnavailable("fcntl.flock is not available on this platform")
        path = lock_path(report)
        made: list[Path] = []
        while True:
            made += _make_folders(path.parent)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, started = _holder(fd)
                os.close(fd)
                raise ReportBusy(report, pid, started) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in _NO_LOCKING:
                    raise LockUnavailable(f"{path}: the filesystem does not support flock ({exc.strerror})") from None
                raise
            # The previous holder removes the file on release: if that happened between our open() and flock(), we
            # hold a lock on a file nobody else can open, so take the one now at the path instead.
            if _same_file(fd, path):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        return cls(path, fd, made)

    def release(self) -> None:
        """Remove the lock file (while still holding it, so no one locks the file being removed), let the lock go
        and remove the folders made for it if nothing else was written there. Safe to call twice."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing the last descriptor releases the flock
        self.fd = None
        for folder in reversed(self.made):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: the run wrote its reports there


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; the ones made, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_path = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_path.st_dev, on_path.st_ino)


def _holder(fd: int) -> tuple[int | None, str | None]:
    """The pid and start time the holder wrote into the lock file (None where it has not written them yet)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return int(info["pid"]), str(info["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None

"""Real read-only and full filesystems for the tests of report writes.

Permissions do not stop root (which runs these tests in CI): ``chmod 0o555`` leaves a folder writable to it. So a
read-only folder is a tmpfs mounted ``ro``, and a full disk is a tmpfs mounted with a small ``size=``. Root mounts
them directly; another user who may make a user namespace mounts them inside ``unshare -rm``, where only commands
wrapped by :meth:`Mount.wrap` see them; a user who can do neither gets a ``chmod 0o555`` folder for the read-only
case, and a skip with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_NAMESPACE = "mkdir -p {path} && mount -t tmpfs -o {options} tmpfs {path} && exec \"$@\""


@dataclass(frozen=True)
class Mount:
    """A folder that refuses writes: ``kind`` is ``mount`` (a real mount, seen by every process), ``namespace`` (a
    mount seen only by commands run through :meth:`wrap`) or ``chmod`` (a folder without write permission)."""

    path: Path
    options: str
    kind: str

    @property
    def in_process(self) -> bool:
        """Whether this process (an in-process pytester run) sees the filesystem."""
        return self.kind != "namespace"

    def wrap(self, argv: list[str], keep: Path | None = None) -> list[str]:
        """``argv`` run where the filesystem is mounted (inside a fresh user and mount namespace if need be). A
        namespace's mount ends with the command, so what it wrote there is first copied to ``keep`` (see
        :meth:`left_in`)."""
        if self.kind != "namespace":
            return argv
        script = IN_NAMESPACE.format(path=shlex.quote(str(self.path)), options=shlex.quote(self.options))
        if keep is not None:
            script = script.replace('exec "$@"', f'"$@"; rc=$?; mkdir -p {shlex.quote(str(keep))} && '
                                    f'cp -a {shlex.quote(str(self.path))}/. {shlex.quote(str(keep))}/; exit $rc')
        return ["unshare", "-rm", "sh", "-c", script, "sh", *argv]

    def left_in(self, keep: Path) -> Path:
        """Where the files a wrapped command wrote on the filesystem can be read afterwards."""
        return keep if self.kind == "namespace" else self.path


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def _can_unshare(path: Path, options: str) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = Mount(path, options, "namespace").wrap(["true"])
    return _run(probe).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, options: str, *, chmod_fallback: bool = False) -> Iterator[Mount]:
    """A tmpfs with ``options`` at ``path`` (made if missing), unmounted afterwards; skips with the reason where
    neither root nor ``unshare`` can mount one (``chmod_fallback``: a folder made read-only by its mode instead,
    which only holds for a user other than root)."""
    path.mkdir(parents=True, exist_ok=True)
    tried = []
    if os.geteuid() == 0 and shutil.which("mount") is not None:
        done = _run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)])
        if done.returncode == 0:
            try:
                yield Mount(path, options, "mount")
            finally:
                if _run(["umount", str(path)]).returncode != 0:
                    _run(["umount", "-l", str(path)])  # still busy (a child left running): detach it
            return
        tried.append(f"mount as root failed: {done.stderr.strip()}")
    if _can_unshare(path, options):
        yield Mount(path, options, "namespace")  # the namespace, and its mount, end with each wrapped command
        return
    tried.append("unshare -rm is not available or not permitted")
    if chmod_fallback and os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield Mount(path, options, "chmod")
        finally:
            path.chmod(0o755)
        return
    pytest.skip(f"cannot make a tmpfs with {options} at {path}: " + "; ".join(tried))


def read_only_dir(path: Path) -> contextlib.AbstractContextManager[Mount]:
    """A folder nothing can be written in: a read-only tmpfs (or, for a user other than root who cannot mount, a
    folder of mode 0o555)."""
    return tmpfs(path, "ro,size=1m", chmod_fallback=True)


def full_filesystem(path: Path, size: str) -> contextlib.AbstractContextManager[Mount]:
    """A tmpfs of ``size`` (e.g. ``64k``): writes fail with ENOSPC once it is full."""
    return tmpfs(path, f"size={size}")


def fill(folder: Path) -> None:
    """Write a file in ``folder`` until its filesystem has no space left."""
    try:
        with (folder / "filler").open("wb") as fh:
            while True:
                fh.write(b"x" * 4096)
                fh.flush()
    except OSError:
        pass  # full (the error may come from a write or from the flush on close)

"""Fixtures for every energy test: the host's PID namespace whatever machine runs them, and no watch thread left
behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.energy import fake_proc

from pytest_longeff.energy import nvml_checks
from pytest_longeff.energy.watch import WATCH_THREAD_PREFIX


@pytest.fixture(autouse=True)
def host_pid_namespace(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NVML's PIDs are comparable with ours, as on a host (tests of containers point PROC_ROOT elsewhere)."""
    root = fake_proc(tmp_path_factory.mktemp("proc"), "4321", nvml_checks.HOST_PID_NAMESPACE)
    monkeypatch.setattr(nvml_checks, "PROC_ROOT", root)
    return root


def watch_threads() -> list[threading.Thread]:
    """Watch threads (RAPL reads, NVML checks) alive now."""
    return [t for t in threading.enumerate() if t.name.startswith(WATCH_THREAD_PREFIX)]


@pytest.fixture(autouse=True)
def no_leaked_watch_threads() -> Iterator[None]:
    """Fail a test whose meter left a watch thread running."""
    yield
    for thread in watch_threads():
        thread.join(timeout=2.0)
    assert not watch_threads(), "a watch thread outlived its test"

"""Fixtures for every energy test: the host's PID namespace whatever machine runs them, and no sampling or watch
thread left behind, even by a test that fails inside a meter window."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.energy import (  # noqa: F401 - the leak checks are autouse fixtures, applied to every energy test
    fake_proc,
    no_leaked_sampler_threads,
    started_energy_threads,
)

from pytest_longeff.energy import nvml_checks


@pytest.fixture(autouse=True)
def host_pid_namespace(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NVML's PIDs are comparable with ours, as on a host (tests of containers point PROC_ROOT elsewhere)."""
    root = fake_proc(tmp_path_factory.mktemp("proc"), "4321", nvml_checks.HOST_PID_NAMESPACE)
    monkeypatch.setattr(nvml_checks, "PROC_ROOT", root)
    return root


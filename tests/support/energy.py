"""Shared helpers for the ``test_energy_*`` modules (this module holds no tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.energy import EnergyReading
from pytest_longeff.energy.sampler import PowerSampler
from pytest_longeff.energy.watch import WATCH_THREAD_PREFIX, WindowWatch

#: The RAPL counter range of a typical package domain, microjoules (~262 kJ).
PACKAGE_RANGE_UJ = 262_143_328_850


def sampler_threads() -> list[threading.Thread]:
    """Power-sampling threads alive now (PowerSampler names its threads)."""
    return [t for t in threading.enumerate() if t.name == "longeff-power-sampler"]


def watch_threads() -> list[threading.Thread]:
    """Watch threads (RAPL reads, NVML checks) alive now."""
    return [t for t in threading.enumerate() if t.name.startswith(WATCH_THREAD_PREFIX)]


@pytest.fixture
def started_energy_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[PowerSampler | WindowWatch]]:
    """Every power sampler and window watch the test starts, stopped after the test whatever its outcome.

    A test that fails inside a meter window never reaches the meter's ``stop()``; without this its thread would go
    on sampling into the following tests, and each of their leak checks would fail in turn."""
    started: list[PowerSampler | WindowWatch] = []

    def tracked(start: Callable[[Any], None]) -> Callable[[Any], None]:
        def tracking_start(self: Any) -> None:
            started.append(self)
            start(self)
        return tracking_start

    monkeypatch.setattr(PowerSampler, "start", tracked(PowerSampler.start))
    monkeypatch.setattr(WindowWatch, "start", tracked(WindowWatch.start))
    yield started
    stop_all(started)


def still_running(threads: list[threading.Thread]) -> list[threading.Thread]:
    """The threads that have not ended within a grace period (a stopped meter's thread may still be unwinding)."""
    for thread in threads:
        thread.join(timeout=2.0)
    return [t for t in threads if t.is_alive()]


def stop_all(started: list[PowerSampler | WindowWatch]) -> None:
    """Stop every sampler and watch in ``started`` (stopping one that already stopped does nothing)."""
    for thing in started:
        thing.stop()


@pytest.fixture(autouse=True)
def no_leaked_sampler_threads(started_energy_threads: list[PowerSampler | WindowWatch]) -> Iterator[None]:
    """Fail a test whose meter left a sampling or watch thread running, and stop those threads, so the next test
    starts clean (every test under tests/unit/energy has it; import it into a module elsewhere to apply it there)."""
    yield
    leaked = sorted(t.name for t in still_running(sampler_threads() + watch_threads()))
    stop_all(started_energy_threads)
    assert not leaked, f"a meter thread outlived its test (stopped after it): {', '.join(leaked)}"


def assert_unmeasured(reading: EnergyReading) -> None:
    """The contract: an unmeasured reading carries None, never 0.0 as a stand-in, and says why."""
    assert reading.energy_j is None
    assert reading.to_dict()["energy_j"] is None
    assert not reading.valid
    assert reading.note


def real_nvml_works() -> bool:
    """Whether this machine's real pynvml can initialise NVML."""
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def rapl_tree(root: Path) -> dict[str, Path]:
    """A fake powercap tree: two packages (one with core and dram subdomains) and a psys domain that must be
    ignored. Returns each domain's ``energy_uj`` file by name."""
    layout = {
        "intel-rapl:0": ("package-0", 1_000_000, PACKAGE_RANGE_UJ),
        "intel-rapl:0/intel-rapl:0:0": ("core", 500_000, PACKAGE_RANGE_UJ),
        "intel-rapl:0/intel-rapl:0:1": ("dram", 2_000_000, 65_712_999_613),
        "intel-rapl:1": ("package-1", 262_143_000_000, PACKAGE_RANGE_UJ),
        "intel-rapl:2": ("psys", 7_000_000, PACKAGE_RANGE_UJ),
    }
    files: dict[str, Path] = {}
    for rel, (name, energy_uj, max_uj) in layout.items():
        domain = root / rel
        domain.mkdir(parents=True)
        (domain / "name").write_text(name + "\n")
        (domain / "energy_uj").write_text(f"{energy_uj}\n")
        (domain / "max_energy_range_uj").write_text(f"{max_uj}\n")
        files[name] = domain / "energy_uj"
    return files


def add_uj(path: Path, delta_uj: int, max_uj: int | None = None) -> None:
    """Advance a fake RAPL counter by ``delta_uj``, wrapping at ``max_uj`` if given."""
    value = int(path.read_text()) + delta_uj
    if max_uj is not None:
        value %= max_uj
    path.write_text(f"{value}\n")


def fake_proc(root: Path, nspid: str, namespace: str) -> Path:
    """A /proc holding only what the PID-namespace check reads: ``self/status`` with its NSpid line (PIDs separated
    by tabs) and the ``self/ns/pid`` link (e.g. "pid:[4026531836]")."""
    (root / "self" / "ns").mkdir(parents=True)
    (root / "self" / "status").write_text(f"Name:\tpython\nNSpid:\t{nspid}\n")
    (root / "self" / "ns" / "pid").symlink_to(namespace)
    return root

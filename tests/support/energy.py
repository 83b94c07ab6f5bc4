"""Shared helpers for the ``test_energy_*`` modules (this module holds no tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_longeff.energy import EnergyReading

#: The RAPL counter range of a typical package domain, microjoules (~262 kJ).
PACKAGE_RANGE_UJ = 262_143_328_850


def sampler_threads() -> list[threading.Thread]:
    """Power-sampling threads alive now (PowerSampler names its threads)."""
    return [t for t in threading.enumerate() if t.name == "longeff-power-sampler"]


@pytest.fixture(autouse=True)
def no_leaked_sampler_threads() -> Iterator[None]:
    """Fail a test whose meter left a sampling thread running (import it into a module to apply it there)."""
    yield
    for thread in sampler_threads():
        thread.join(timeout=2.0)
    assert not sampler_threads(), "a power-sampling thread outlived its test"


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

"""Tests for choosing a meter (the built-in table, auto's fallbacks on this machine) and for the estimate and null
meters; a session's own table is the registry's (tests/unit/config/test_registry.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.energy import assert_unmeasured
from support.fake_pynvml import ManualClock

from pytest_longeff.energy import (
    BUILTIN_METERS,
    ENERGY_CHOICES,
    EstimateMeter,
    NullMeter,
    factory,
    make_meter,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# -- the meter table -------------------------------------------------------------------------------------------


def test_energy_choices_are_all_buildable_names() -> None:
    assert ENERGY_CHOICES == ("auto", "nvml", "nvml-power", "rapl", "estimate", "none")
    assert tuple(BUILTIN_METERS) == ENERGY_CHOICES
    with pytest.raises(ValueError, match="choose one of auto, nvml"):
        make_meter("joulemeter", "cpu")
    with pytest.raises(ValueError, match="sample_hz"):
        make_meter("none", "cpu", sample_hz=0.0)


def test_the_built_in_table_is_read_only_and_no_module_holds_a_mutable_one() -> None:
    with pytest.raises(TypeError):
        BUILTIN_METERS["mine"] = BUILTIN_METERS["none"]  # type: ignore[index]
    assert not [name for name, value in vars(factory).items()
                if isinstance(value, (dict, list, set)) and not name.startswith("__")]


def test_importing_the_package_loads_neither_pynvml_nor_torch() -> None:
    code = "import sys, pytest_longeff.energy; print('pynvml' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]






# -- auto on this machine --------------------------------------------------------------------------------------


def test_auto_on_cpu_without_rapl_is_null_meter(tmp_path: Path) -> None:
    meter, warnings = make_meter("auto", "cpu", rapl_root=str(tmp_path / "no-powercap"))
    assert meter.method == "none"
    assert len(warnings) == 1 and "RAPL" in warnings[0]
    meter.start()
    reading = meter.stop()
    assert_unmeasured(reading)
    assert (reading.note or "").startswith("no energy meter available on this machine (RAPL")


def test_auto_never_raises_for_odd_devices() -> None:
    meter, warnings = make_meter("auto", "mps")
    assert meter.method == "none"
    assert warnings


# -- estimate and none -----------------------------------------------------------------------------------------


def test_estimate_is_cpu_time_times_constant_and_labelled(clock: ManualClock) -> None:
    cpu = ManualClock(5.0)
    meter = EstimateMeter(w_per_busy_core=10.0, clock=clock, cpu_clock=cpu)
    meter.start()
    clock.advance(2.0)
    cpu.advance(3.0)  # two threads busy for part of the window
    reading = meter.stop()
    assert reading.method == "estimate"
    assert reading.valid
    assert reading.energy_j == pytest.approx(30.0)
    assert (reading.note or "").startswith("ESTIMATE, not a measurement")


def test_estimate_from_make_meter_warns_on_gpu_cells() -> None:
    meter, warnings = make_meter("estimate", "cpu")
    assert meter.method == "estimate" and warnings == []
    meter.start()
    sum(i * i for i in range(20_000))
    reading = meter.stop()
    assert reading.energy_j is not None and reading.energy_j >= 0.0
    _, gpu_warnings = make_meter("estimate", "cuda")
    assert len(gpu_warnings) == 1 and "CPU time only" in gpu_warnings[0]


def test_none_meter_measures_time_only() -> None:
    meter, warnings = make_meter("none", "cuda")
    assert warnings == []
    meter.start()
    reading = meter.stop()
    assert_unmeasured(reading)
    assert reading.note == "no energy meter selected"
    assert reading.time_s >= 0.0
    assert meter.describe() == {}


def test_estimate_read_mid_window_keeps_the_window_open(clock: ManualClock) -> None:
    cpu = ManualClock(5.0)
    meter = EstimateMeter(w_per_busy_core=10.0, clock=clock, cpu_clock=cpu)
    meter.start()
    clock.advance(1.0)
    cpu.advance(1.0)
    first = meter.read()
    assert first.valid and first.energy_j == pytest.approx(10.0) and first.time_s == pytest.approx(1.0)
    clock.advance(1.0)
    cpu.advance(2.0)
    assert meter.read().energy_j == pytest.approx(30.0)
    reading = meter.stop()
    assert reading.energy_j == pytest.approx(30.0) and reading.time_s == pytest.approx(2.0)
    with pytest.raises(RuntimeError, match="before start"):
        meter.read()


def test_null_read_mid_window_is_time_only(clock: ManualClock) -> None:
    meter = NullMeter(clock=clock)
    with pytest.raises(RuntimeError, match="before start"):
        meter.read()
    meter.start()
    clock.advance(1.5)
    reading = meter.read()
    assert_unmeasured(reading)
    assert reading.time_s == pytest.approx(1.5)
    clock.advance(0.5)
    assert meter.stop().time_s == pytest.approx(2.0)

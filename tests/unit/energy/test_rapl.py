"""Tests for the RAPL meter against fake powercap sysfs trees: domains, wrap-around versus reset, permissions,
errors and read() mid-window."""

from __future__ import annotations

import os
import pathlib
from pathlib import Path

import pytest
from support.energy import PACKAGE_RANGE_UJ, add_uj, assert_unmeasured, rapl_tree
from support.fake_pynvml import ManualClock

from pytest_longeff.energy import RAPL_MAX_PLAUSIBLE_W, MeterUnavailable, RaplDomain, RaplMeter, make_meter


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_rapl_sums_packages_and_dram_and_undoes_wrap(tmp_path: Path, clock: ManualClock) -> None:
    files = rapl_tree(tmp_path)
    meter, warnings = make_meter("rapl", "cpu", rapl_root=str(tmp_path), clock=clock)
    assert warnings == []
    facts = meter.describe()
    assert facts["rapl_domains"] == ["package-0", "dram", "package-1"]
    assert facts["counter_update_measured"] is False  # the fake counters only move when the test writes them
    meter.start()
    clock.advance(2.0)
    add_uj(files["package-0"], 30_000_000)
    add_uj(files["dram"], 4_000_000)
    add_uj(files["package-1"], 20_000_000, max_uj=262_143_328_850)  # wraps
    add_uj(files["core"], 99_000_000)  # inside package-0: must not be counted again
    add_uj(files["psys"], 99_000_000)  # whole platform: overlaps the packages
    reading = meter.stop()
    assert reading.method == "rapl"
    assert reading.valid, reading.note
    assert int(files["package-1"].read_text()) < 262_143_000_000
    assert reading.energy_j == pytest.approx(54.0)
    assert reading.time_s == pytest.approx(2.0)
    meter.close()


def test_rapl_auto_on_cpu_picks_rapl_when_readable(tmp_path: Path) -> None:
    rapl_tree(tmp_path)
    meter, warnings = make_meter("auto", "cpu", rapl_root=str(tmp_path))
    assert meter.method == "rapl"
    assert warnings == []


def test_rapl_on_a_gpu_cell_warns(tmp_path: Path) -> None:
    rapl_tree(tmp_path)
    meter, warnings = make_meter("rapl", "cuda", rapl_root=str(tmp_path))
    assert meter.method == "rapl"
    assert len(warnings) == 1 and "CPU packages" in warnings[0]


def test_unreadable_rapl_raises_with_chmod_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rapl_tree(tmp_path)
    read_text = pathlib.Path.read_text

    # chmod cannot lock out root (CI containers often run as root), so deny the read itself.
    def denied(self: Path) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self)

    monkeypatch.setattr(pathlib.Path, "read_text", denied)
    with pytest.raises(MeterUnavailable) as info:
        make_meter("rapl", "cpu", rapl_root=str(tmp_path))
    assert "sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj" in str(info.value)
    assert "root" in str(info.value)
    meter, warnings = make_meter("auto", "cpu", rapl_root=str(tmp_path))
    assert meter.method == "none"
    assert "not readable" in warnings[0]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_rapl_by_file_mode(tmp_path: Path) -> None:
    files = rapl_tree(tmp_path)
    files["package-0"].chmod(0o200)
    with pytest.raises(MeterUnavailable, match="sudo chmod a\\+r"):
        make_meter("rapl", "cpu", rapl_root=str(tmp_path))


def test_missing_rapl_raises_when_asked_for(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailable, match="no intel-rapl package domains"):
        make_meter("rapl", "cpu", rapl_root=str(tmp_path))


def test_rapl_read_failure_mid_window_is_invalid(tmp_path: Path, clock: ManualClock) -> None:
    files = rapl_tree(tmp_path)
    meter, _ = make_meter("rapl", "cpu", rapl_root=str(tmp_path), clock=clock)
    meter.start()
    clock.advance(1.0)
    files["dram"].unlink()
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "window end" in (reading.note or "")


# -- a counter that went down: wrap-around or reset ------------------------------------------------------------


def test_rapl_counter_reset_is_invalid_not_a_wrap(tmp_path: Path, clock: ManualClock) -> None:
    """package-0 drops from 1 J to 0.5 J within 1 s: undone as a wrap it would be ~262 kJ, i.e. ~262 kW."""
    files = rapl_tree(tmp_path)
    meter, _ = make_meter("rapl", "cpu", rapl_root=str(tmp_path), clock=clock)
    meter.start()
    clock.advance(1.0)
    files["package-0"].write_text("500000\n")
    reading = meter.stop()
    assert_unmeasured(reading)
    note = reading.note or ""
    assert "RAPL counter package-0 went backwards" in note and "counter reset?" in note
    assert f"above the {RAPL_MAX_PLAUSIBLE_W:g} W plausible" in note
    meter.close()


@pytest.mark.parametrize(("window_s", "valid"), [(1.0, True), (0.05, False)])
def test_rapl_wrap_is_undone_only_while_the_implied_power_is_plausible(
    tmp_path: Path, window_s: float, valid: bool
) -> None:
    """100 J before the top of the range to 200 J after it: 300 J, i.e. 300 W over 1 s (a wrap) but 6 kW over
    50 ms (more than any domain draws, so a reset)."""
    counter = tmp_path / "energy_uj"
    counter.write_text(f"{PACKAGE_RANGE_UJ - 100_000_000}\n")
    clock = ManualClock()
    meter = RaplMeter([RaplDomain("package-0", counter, max_range_uj=PACKAGE_RANGE_UJ)], clock)
    meter.start()
    clock.advance(window_s)
    counter.write_text("200000000\n")
    reading = meter.stop()
    assert reading.valid is valid
    assert reading.energy_j == (pytest.approx(300.0) if valid else None)
    if not valid:
        assert "went backwards" in (reading.note or "")


def test_rapl_decrease_with_unknown_range_is_invalid(tmp_path: Path, clock: ManualClock) -> None:
    counter = tmp_path / "energy_uj"
    counter.write_text("9000000\n")
    meter = RaplMeter([RaplDomain("package-0", counter, max_range_uj=0)], clock)
    meter.start()
    clock.advance(10.0)
    counter.write_text("1000000\n")
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "went backwards" in (reading.note or "") and "max_energy_range_uj is unknown" in (reading.note or "")


# -- read(): energy so far, window left open -------------------------------------------------------------------


def test_rapl_read_mid_window_keeps_the_window_open(tmp_path: Path, clock: ManualClock) -> None:
    files = rapl_tree(tmp_path)
    meter, _ = make_meter("rapl", "cpu", rapl_root=str(tmp_path), clock=clock)
    meter.start()
    clock.advance(1.0)
    add_uj(files["package-0"], 40_000_000)  # 40 W for 1 s
    first = meter.read()
    assert first.valid, first.note
    assert first.energy_j == pytest.approx(40.0) and first.time_s == pytest.approx(1.0)
    clock.advance(1.0)
    add_uj(files["package-0"], 40_000_000)
    add_uj(files["dram"], 5_000_000)
    assert meter.read().energy_j == pytest.approx(85.0)
    reading = meter.stop()
    assert reading.energy_j == pytest.approx(85.0) and reading.time_s == pytest.approx(2.0)
    with pytest.raises(RuntimeError, match="before start"):
        meter.read()
    meter.close()

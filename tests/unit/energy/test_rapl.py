"""Tests for the RAPL meter against fake powercap sysfs trees: domains, wrap-around versus reset, permissions,
errors and read() mid-window."""

from __future__ import annotations

import os
import pathlib
import threading
import time
from pathlib import Path

import pytest
from support.energy import PACKAGE_RANGE_UJ, add_uj, assert_unmeasured, rapl_tree
from support.fake_pynvml import ManualClock

from pytest_longeff.energy import (
    RAPL_MAX_PLAUSIBLE_W,
    MeterUnavailable,
    RaplDomain,
    RaplMeter,
    find_rapl_domains,
    make_meter,
)
from pytest_longeff.energy.rapl import rapl_poll_period_s


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


# -- wrap-arounds over long windows: read inside the window, every wrap counted ----------------------------------


class ReadDrivenCounter:
    """A RAPL ``energy_uj`` file at ``power_w`` whose time moves on by ``step_s`` at every read, by whichever thread,
    wrapping at ``range_uj``. Logs each read: whether the main thread made it, and the energy drawn so far (uJ,
    never wrapped), so the energy between any two reads is known exactly."""

    def __init__(self, path: Path, clock: ManualClock, power_w: float, range_uj: int, step_s: float) -> None:
        self.path = path
        self.clock = clock
        self.power_w = power_w
        self.range_uj = range_uj
        self.step_s = step_s
        self.origin_s = clock()
        self.log: list[tuple[bool, int]] = []
        self._lock = threading.Lock()

    def read(self) -> str:
        with self._lock:
            self.clock.advance(self.step_s)
            drawn_uj = round(self.power_w * (self.clock() - self.origin_s) * 1e6)
            self.log.append((threading.current_thread() is threading.main_thread(), drawn_uj))
            return f"{drawn_uj % self.range_uj}\n"

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        read_text = pathlib.Path.read_text

        def patched(path: Path, *args: object, **kwargs: object) -> str:
            return self.read() if path == self.path else read_text(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(pathlib.Path, "read_text", patched)


def _watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("longeff-watch")]


def test_rapl_counts_every_wrap_of_a_window_by_reading_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 kW into a 50 J range (below the 5 kW plausible, so a read every 5 ms suffices): the counter wraps every
    12.5 ms of its time, and each read moves that time on by 4 ms. The window must be read from the meter's own
    thread, and its energy must be the energy drawn between its first and last read, every wrap counted."""
    clock = ManualClock()
    counter = ReadDrivenCounter(tmp_path / "energy_uj", clock, power_w=4000.0, range_uj=50_000_000, step_s=0.004)
    counter.install(monkeypatch)
    meter = RaplMeter([RaplDomain("package-0", counter.path, max_range_uj=50_000_000)], clock, clock.advance)
    meter.update_period  # noqa: B018 - measured before the window, as make_meter does
    before = len(counter.log)
    meter.start()
    deadline = time.monotonic() + 5.0
    while sum(not main for main, _ in counter.log[before:]) < 40 and time.monotonic() < deadline:
        time.sleep(0.005)
    reading = meter.stop()
    window = counter.log[before:]
    main_reads = [drawn for main, drawn in window if main]
    assert sum(not main for main, _ in window) >= 40  # read inside the window, off the main thread
    assert not _watch_threads()  # and no longer once it closed
    drawn_uj = main_reads[-1] - main_reads[0]  # from the start read to the end read
    assert drawn_uj / 50_000_000 > 12  # a dozen wrap-arounds in one window
    assert reading.valid, reading.note
    assert reading.energy_j == pytest.approx(drawn_uj / 1e6, abs=1e-6)


def test_rapl_reads_within_a_window_count_wraps_one_by_one(tmp_path: Path, clock: ManualClock) -> None:
    """3.5 ranges of a package counter in ten steps of 20 s at 4.6 kW, read after each: the start and end values
    alone are half a range apart, which read as one window would be 3 ranges (~786 kJ) short and valid."""
    counter = tmp_path / "energy_uj"
    counter.write_text("0\n")
    meter = RaplMeter([RaplDomain("package-0", counter, max_range_uj=PACKAGE_RANGE_UJ)], clock)
    step_uj = 35 * PACKAGE_RANGE_UJ // 100
    meter.start()
    for _ in range(10):
        clock.advance(20.0)
        add_uj(counter, step_uj, max_uj=PACKAGE_RANGE_UJ)
        assert meter.read().valid
    reading = meter.stop()
    assert reading.valid, reading.note
    assert reading.energy_j == pytest.approx(10 * step_uj / 1e6)
    meter.close()


def test_rapl_reads_too_far_apart_to_count_wraps_are_invalid(tmp_path: Path, clock: ManualClock) -> None:
    """No read for 60 s: at 5 kW a package's ~262 kJ range passes in 52 s, so a wrap could hide in the step."""
    files = rapl_tree(tmp_path)
    meter, _ = make_meter("rapl", "cpu", rapl_root=str(tmp_path), clock=clock)
    meter.start()
    clock.advance(60.0)
    add_uj(files["package-0"], 6_000_000_000)  # 100 W for 60 s, as far as the reads can tell
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "was not read for 60.0 s" in (reading.note or "") and "wrapped around unseen" in (reading.note or "")
    meter.close()


def test_rapl_poll_period_lets_no_domain_draw_its_range_between_two_reads(tmp_path: Path) -> None:
    rapl_tree(tmp_path)
    domains = find_rapl_domains(tmp_path)
    dram_range_j = 65_712.999613  # the shortest range in the tree
    assert rapl_poll_period_s(domains) == pytest.approx(dram_range_j / RAPL_MAX_PLAUSIBLE_W / 2.0)
    assert rapl_poll_period_s([RaplDomain("package-0", tmp_path / "x", max_range_uj=0)]) is None


def test_rapl_read_thread_runs_only_while_a_window_is_open(tmp_path: Path, clock: ManualClock) -> None:
    files = rapl_tree(tmp_path)
    meter, _ = make_meter("rapl", "cpu", rapl_root=str(tmp_path), clock=clock)
    meter.start()
    meter.start()  # a restart replaces the thread
    assert len(_watch_threads()) == 1
    meter.close()  # closing without stop() ends it too
    assert not _watch_threads()
    meter.start()
    files["dram"].unlink()  # the end read fails: an invalid reading, and still no thread left
    assert_unmeasured(meter.stop())
    assert not _watch_threads()

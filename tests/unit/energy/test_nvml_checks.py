"""Shared and throttled windows, instantaneous power, and the idle baseline's GPU state, against the fake
pynvml; and the seed study's legacy figure as its extraction produced it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.energy import fake_proc, no_leaked_sampler_threads  # noqa: F401 - autouse fixture
from support.fake_pynvml import FakeGpu, FakeNvml, ManualClock

from pytest_longeff.energy import (
    INVALIDATING_REASONS,
    EnergyReading,
    LegacyFigure,
    Meter,
    NvmlCounterMeter,
    NvmlPowerMeter,
    decode_reasons,
    legacy_as_extracted,
    legacy_bucket_means,
    legacy_energy,
    make_meter,
    measure_idle,
    nvml_checks,
    parse_device,
)
from pytest_longeff.energy.nvml_checks import HOST_PID_NAMESPACE, foreign_pid_namespace
from pytest_longeff.energy.nvml_session import open_nvml


def _window(meter: Meter, clock: ManualClock, seconds: float = 2.0) -> EnergyReading:
    meter.start()
    clock.advance(seconds)
    return meter.stop()


def _counter(gpu: FakeGpu, **fake_kwargs: object) -> tuple[Meter, FakeNvml, ManualClock]:
    clock = ManualClock(0.0)
    fake = FakeNvml([gpu], clock=clock, **fake_kwargs)  # type: ignore[arg-type]
    meter, _ = make_meter("nvml", "cuda", nvml=fake, clock=clock, legacy=False, sleep=clock.advance)
    return meter, fake, clock


def test_other_compute_process_makes_the_reading_invalid_and_is_recorded() -> None:
    meter, fake, clock = _counter(FakeGpu(processes=[os.getpid()]))
    reading = _window(meter, clock)
    assert reading.valid and reading.other_processes == ()
    fake.gpus[0].processes = [os.getpid(), 4242]
    reading = _window(meter, clock)
    assert not reading.valid and reading.energy_j is None
    assert reading.other_processes == (4242,)
    assert "other compute processes on GPU 0: 4242" in (reading.note or "")
    assert reading.to_dict()["energy_other_processes"] == [4242]
    meter.close()


def test_a_process_seen_only_at_the_start_still_invalidates() -> None:
    meter, fake, clock = _counter(FakeGpu(processes=[777]))
    meter.start()
    fake.gpus[0].processes = []
    clock.advance(2.0)
    reading = meter.stop()
    assert not reading.valid and reading.other_processes == (777,)
    meter.close()


@pytest.mark.parametrize(
    ("mask", "valid", "names"),
    [
        (0x0, True, ()),
        (0x4, True, ("sw_power_cap",)),  # at the power limit under load: recorded, not throttling
        (0x1 | 0x2, True, ("gpu_idle", "applications_clocks")),
        (0x40, False, ("hw_thermal_slowdown",)),
        (0x4 | 0x80, False, ("sw_power_cap", "hw_power_brake_slowdown")),
        (0x8, False, ("hw_slowdown",)),
        (0x20, False, ("sw_thermal_slowdown",)),
    ],
)
def test_throttle_reasons_are_recorded_and_thermal_or_hardware_ones_invalidate(
    mask: int, valid: bool, names: tuple[str, ...]
) -> None:
    meter, _, clock = _counter(FakeGpu(clock_reasons=mask))
    reading = _window(meter, clock)
    assert reading.valid is valid
    assert reading.throttle_reasons == names
    if not valid:
        assert "throttled" in (reading.note or "")
    meter.close()


def test_decode_reasons_names_unknown_bits() -> None:
    assert decode_reasons(0x4 | 0x8000) == ["sw_power_cap", "bits_0x8000"]
    assert "sw_power_cap" not in INVALIDATING_REASONS


def test_old_driver_without_the_check_functions_is_not_checked_not_a_crash() -> None:
    meter, _, clock = _counter(
        FakeGpu(processes=[999], clock_reasons=0x40),
        missing=(
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetCurrentClocksThrottleReasons",
            "nvmlDeviceGetPerformanceState",
        ),
    )
    reading = _window(meter, clock)
    assert reading.valid
    assert "not checked: other processes" in (reading.note or "")
    assert "throttling" in (reading.note or "")
    assert meter.describe()["gpus"][0]["pstate"] is None  # type: ignore[index]
    meter.close()


def test_older_throttle_function_is_used_when_the_event_one_is_missing() -> None:
    meter, fake, clock = _counter(FakeGpu(clock_reasons=0x40), missing=("nvmlDeviceGetCurrentClocksEventReasons",))
    reading = _window(meter, clock)
    assert not reading.valid
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 2
    meter.close()


def test_check_that_raises_not_supported_is_not_checked() -> None:
    meter, fake, clock = _counter(FakeGpu())
    fake.fail["nvmlDeviceGetComputeRunningProcesses"] = fake.NVMLError_NotSupported()
    reading = _window(meter, clock)
    assert reading.valid and "nvmlDeviceGetComputeRunningProcesses failed" in (reading.note or "")
    meter.close()


def test_power_meter_checks_processes_and_uses_instant_power_where_offered() -> None:
    fake = FakeNvml([FakeGpu(power_w=200.0, instant_power=True)])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=200.0)
    meter.start()
    time.sleep(0.05)
    reading = meter.stop()
    assert reading.valid and "POWER_INSTANT" in (reading.note or "")
    assert reading.uncertainty_j is not None and reading.uncertainty_j < 0.01 * (reading.energy_j or 0) + 0.01
    assert reading.coarse  # 50 ms is under ten sensor updates
    assert fake.calls["nvmlDeviceGetPowerUsage"] <= 1  # the builder's probe only
    assert fake.calls["nvmlDeviceGetFieldValues"] > 2
    assert "POWER_INSTANT" in str(meter.describe()["power_source"])
    fake.gpus[0].processes = [31337]
    meter.start()
    time.sleep(0.02)
    shared = meter.stop()
    assert not shared.valid and shared.other_processes == (31337,)
    meter.close()


def test_power_meter_on_an_averaging_sensor_says_so() -> None:
    fake = FakeNvml([FakeGpu(power_w=200.0)])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=200.0)
    meter.start()
    time.sleep(0.03)
    reading = meter.stop()
    assert reading.valid and "nvmlDeviceGetPowerUsage" in (reading.note or "")
    meter.close()


# -- idle baseline ---------------------------------------------------------------------------------------------


def test_idle_baseline_records_pstate_clocks_and_uncertainty() -> None:
    meter, _, clock = _counter(FakeGpu(power_w=60.0, pstate=8, clocks_mhz={0: 345, 1: 345, 2: 1593}))
    idle = measure_idle(meter, 10.0, sleep=clock.advance)
    assert idle.valid and idle.power_w == pytest.approx(60.0, abs=0.7)
    assert idle.pstate == 8 and idle.sm_clock_mhz == 345 and idle.mem_clock_mhz == 1593
    assert idle.uncertainty_w == pytest.approx((700.0 * 0.1 + 0.001) / 10.0, rel=0.06)
    assert abs(idle.power_w - 60.0) <= idle.uncertainty_w  # type: ignore[operator]
    record = idle.to_dict()
    assert record["idle_pstate"] == 8 and record["idle_sm_clock_mhz"] == 345
    meter.close()


# -- the legacy figure as extracted ----------------------------------------------------------------------------


def _constant_trace(watts: float, hours: float) -> list[tuple[float, float]]:
    return [(float(t), watts) for t in range(0, int(hours * 3600) + 60, 10)]


def test_legacy_as_extracted_equals_the_full_sum_up_to_500_buckets() -> None:
    trace = _constant_trace(300.0, 1.0)
    means = legacy_bucket_means(trace, 0.0, 3600.0)
    assert len(means) == 120
    assert legacy_as_extracted(means) == pytest.approx(legacy_energy(trace, 0.0, 3600.0) or 0) == 36.0


def test_legacy_as_extracted_saturates_at_500_rows_for_long_runs() -> None:
    trace = _constant_trace(300.0, 10.0)
    means = legacy_bucket_means(trace, 0.0, 36000.0)
    assert len(means) == 1200
    assert legacy_energy(trace, 0.0, 36000.0) == pytest.approx(360.0)
    assert legacy_as_extracted(means) == pytest.approx(500 * 300.0 / 1000)
    # Evenly sampled: a rising trace keeps its first and last bucket and about its mean.
    rising = [float(i) for i in range(1200)]
    assert legacy_as_extracted(rising) == pytest.approx(500 * 599.5 / 1000, rel=1e-3)
    assert legacy_as_extracted([]) is None


def test_legacy_wrapper_records_buckets_and_the_extracted_figure() -> None:
    clock = ManualClock(0.0)
    fake = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter, _ = make_meter("nvml", "cuda", nvml=fake, clock=clock, sleep=clock.advance)
    assert isinstance(meter, LegacyFigure)
    meter.start()
    clock.advance(65.0)
    reading = meter.stop()
    assert reading.legacy_buckets == 3
    assert reading.legacy_as_extracted == reading.legacy_j
    assert reading.to_dict()["legacy_buckets"] == 3
    meter.close()


# -- throttling and sharing between the edges --------------------------------------------------------------------

THERMAL, POWER = 1, 0  # nvmlPerfPolicyType_t


def _meter_of(kind: str, gpu: FakeGpu) -> tuple[Meter, FakeNvml, Callable[[float], None]]:
    """The counter meter on a manual clock, or the power meter (which samples in real time) with a real wait."""
    if kind == "nvml":
        meter, fake, clock = _counter(gpu)
        return meter, fake, clock.advance
    fake = FakeNvml([gpu])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=200.0, legacy=False)
    return meter, fake, time.sleep


@pytest.mark.parametrize("kind", ["nvml", "nvml-power"])
def test_thermal_violation_time_that_grew_inside_the_window_invalidates(kind: str) -> None:
    """The clock-event reasons read clear at both edges; the thermal violation counter says 0.25 s were lost."""
    meter, fake, wait = _meter_of(kind, FakeGpu(violation_ns={THERMAL: 7_000_000_000, POWER: 1_000}))
    meter.start()
    wait(0.02)
    fake.gpus[0].violation_ns[THERMAL] += 250_000_000
    wait(0.02)
    reading = meter.stop()
    assert not reading.valid and reading.energy_j is None
    assert "GPU 0 throttled during the window (thermal_slowdown for 0.250 s of " in (reading.note or "")
    assert reading.throttle_reasons == ("thermal_slowdown",)
    meter.close()


def _thermal_window(slowed_ns: int, seconds: float) -> EnergyReading:
    """A counter-meter window of ``seconds`` (the fake's clock) whose thermal counter grows by ``slowed_ns``."""
    meter, fake, clock = _counter(FakeGpu(violation_ns={THERMAL: 7_000_000_000}))
    meter.start()
    clock.advance(seconds / 2)
    fake.gpus[0].violation_ns[THERMAL] += slowed_ns
    clock.advance(seconds / 2)
    reading = meter.stop()
    meter.close()
    return reading


def test_a_brief_thermal_slowdown_in_a_long_window_keeps_it_valid_and_is_noted() -> None:
    """5 ms of thermal violation time in a 10 s window (0.05 %): a blip, not a throttled window."""
    reading = _thermal_window(5_000_000, 10.0)
    assert reading.valid, reading.note
    assert reading.energy_j is not None
    assert "GPU 0 thermal slowdown 0.005 s of 10 s (under 1 %): valid" in (reading.note or "")
    assert reading.throttle_reasons == ("thermal_slowdown",)


def test_thermal_slowdown_of_one_percent_of_the_window_invalidates() -> None:
    """0.5 s in 10 s (5 %) is a throttled window."""
    reading = _thermal_window(500_000_000, 10.0)
    assert not reading.valid and reading.energy_j is None
    assert "GPU 0 throttled during the window (thermal_slowdown for 0.500 s of 10 s, 5.0 %)" in (reading.note or "")


def test_thermal_slowdown_over_the_floor_but_under_one_percent_stays_valid() -> None:
    """0.2 s in 100 s is over the 0.1 s floor but 0.2 % of the window; 0.2 s in 10 s (2 %) is not."""
    reading = _thermal_window(200_000_000, 100.0)
    assert reading.valid, reading.note
    assert "GPU 0 thermal slowdown 0.200 s of 100 s (under 1 %): valid" in (reading.note or "")
    assert not _thermal_window(200_000_000, 10.0).valid


def test_thermal_share_uses_nvml_timestamps_else_the_host_clock() -> None:
    """The window's length is the span of NVML's referenceTime where it advanced, else of the host's reads."""
    key = (0, "thermal_slowdown")
    before = nvml_checks.ViolationTimes({key: 0}, reference_us={key: 1_000_000}, read_at_s=50.0)
    after = nvml_checks.ViolationTimes({key: 50_000_000}, reference_us={key: 1_000_000}, read_at_s=52.0)
    moved = nvml_checks.violations_between(before, after)  # NVML's stamps did not move: 2 s by the host
    assert moved.problems == () and "0.050 s of 2 s (under 0.1 s): valid" in moved.unchecked[0]
    after = nvml_checks.ViolationTimes({key: 150_000_000}, reference_us={key: 6_000_000}, read_at_s=60.0)
    moved = nvml_checks.violations_between(before, after)  # 5 s by NVML's stamps, not 10 s by the host's
    assert moved.problems == ("GPU 0 throttled during the window (thermal_slowdown for 0.150 s of 5 s, 3.0 %)",)


def test_power_cap_time_inside_the_window_is_recorded_not_invalidating() -> None:
    meter, fake, clock = _counter(FakeGpu(violation_ns={POWER: 5_000}))
    meter.start()
    fake.gpus[0].violation_ns[POWER] += 1_500_000_000
    clock.advance(2.0)
    reading = meter.stop()
    assert reading.valid, reading.note
    assert reading.throttle_reasons == ("sw_power_cap",)
    meter.close()


def test_violation_counters_not_supported_leave_the_window_valid_and_say_so() -> None:
    meter, fake, clock = _counter(FakeGpu())
    fake.fail["nvmlDeviceGetViolationStatus"] = fake.NVMLError_NotSupported()
    reading = _window(meter, clock)
    assert reading.valid
    note = (reading.note or "").partition("; not checked: ")[2]
    assert "thermal_slowdown during the window (nvmlDeviceGetViolationStatus failed (Not Supported))" in note
    meter.close()


@pytest.mark.parametrize("kind", ["nvml", "nvml-power"])
def test_another_process_seen_only_between_the_edges_invalidates(kind: str) -> None:
    """Another process runs on the GPU for a while inside the window and is gone at both edges; the meter's own
    check thread (every 10 ms here, every second by default) sees it."""
    clock = ManualClock(0.0)
    fake = FakeNvml([FakeGpu()], clock=clock if kind == "nvml" else time.perf_counter)
    session = open_nvml(fake, parse_device("cuda"), "cuda")
    meter: Meter
    if kind == "nvml":
        meter = NvmlCounterMeter(session, clock, clock.advance, check_period_s=0.01)
    else:
        meter = NvmlPowerMeter(session, sample_hz=200.0, check_period_s=0.01)
    meter.start()
    seen = fake.calls["nvmlDeviceGetComputeRunningProcesses"]
    fake.gpus[0].processes = [os.getpid(), 5151]
    deadline = time.monotonic() + 5.0
    while fake.calls["nvmlDeviceGetComputeRunningProcesses"] < seen + 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    fake.gpus[0].processes = [os.getpid()]
    clock.advance(1.0)
    reading = meter.stop()
    assert not reading.valid and reading.other_processes == (5151,)
    assert "other compute processes on GPU 0: 5151" in (reading.note or "")
    meter.close()


def test_a_failed_check_thread_is_noted_not_raised() -> None:
    """An error NVML's bindings do not wrap (here a RuntimeError) ends the thread; the window says what was not
    checked inside it and keeps its energy."""
    clock = ManualClock(0.0)
    fake = FakeNvml([FakeGpu()], clock=clock)
    meter = NvmlCounterMeter(open_nvml(fake, parse_device("cuda"), "cuda"), clock, clock.advance, check_period_s=0.01)
    meter.start()
    fake.fail["nvmlDeviceGetComputeRunningProcesses"] = RuntimeError("driver hiccup")
    deadline = time.monotonic() + 5.0
    while fake.calls["nvmlDeviceGetComputeRunningProcesses"] < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    del fake.fail["nvmlDeviceGetComputeRunningProcesses"]
    clock.advance(1.0)
    reading = meter.stop()
    assert reading.valid, reading.note
    assert "not checked: checks inside the window (thread failed: RuntimeError: driver hiccup)" in (reading.note or "")
    meter.close()


# -- a container without the host's PID namespace ----------------------------------------------------------------


def test_host_pid_without_the_host_pid_namespace_cannot_be_attributed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container's PID namespace NVML lists our process under its host PID: that is no proof of sharing. Where
    NVML does list our PID, the comparison works, namespace or not, and another PID is another process."""
    monkeypatch.setattr(nvml_checks, "PROC_ROOT", fake_proc(tmp_path, "81234\t42", "pid:[4026532999]"))
    meter, fake, clock = _counter(FakeGpu(processes=[81234]))
    reading = _window(meter, clock)
    assert reading.valid, reading.note
    assert reading.other_processes == ()
    note = reading.note or ""
    assert "cannot attribute other processes (no host PID namespace: nested PID namespace (NSpid 81234 42))" in note
    assert "81234 on GPU 0" in note
    fake.gpus[0].processes = [os.getpid(), 4242]
    reading = _window(meter, clock)
    assert not reading.valid and reading.other_processes == (4242,)
    meter.close()


@pytest.mark.parametrize("listed", [[81234, 81240], [81234, 81240, 90001]])
def test_two_or_more_host_pids_without_the_host_pid_namespace_mean_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed: list[int]
) -> None:
    """We cannot tell which listed PID is ours, but at most one is: the others are other processes."""
    monkeypatch.setattr(nvml_checks, "PROC_ROOT", fake_proc(tmp_path, "81234\t42", "pid:[4026532999]"))
    meter, _, clock = _counter(FakeGpu(processes=listed))
    reading = _window(meter, clock)
    assert not reading.valid and reading.energy_j is None
    note = reading.note or ""
    assert f"at least {len(listed) - 1} other compute process(es) on GPU 0: NVML lists host PIDs " in note
    assert "cannot attribute" not in note
    assert reading.other_processes == ()  # which of them are not ours is unknown
    meter.close()


@pytest.mark.parametrize(
    ("nspid", "namespace", "expected"),
    [
        ("4321", HOST_PID_NAMESPACE, None),
        ("81234\t42", HOST_PID_NAMESPACE, "nested PID namespace (NSpid 81234 42)"),
        ("42", "pid:[4026532999]", "PID namespace pid:[4026532999] is not the host's"),
    ],
)
def test_foreign_pid_namespace_reads_nspid_and_the_namespace_link(
    tmp_path: Path, nspid: str, namespace: str, expected: str | None
) -> None:
    assert foreign_pid_namespace(fake_proc(tmp_path, nspid, namespace)) == expected


def test_foreign_pid_namespace_unreadable_is_taken_as_the_host(tmp_path: Path) -> None:
    assert foreign_pid_namespace(tmp_path / "missing") is None

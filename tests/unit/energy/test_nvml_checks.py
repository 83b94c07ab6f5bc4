"""Shared and throttled windows, instantaneous power, and the idle baseline's GPU state, against the fake
pynvml; and the seed study's legacy figure as its extraction produced it."""

from __future__ import annotations

import os
import time

import pytest
from support.energy import no_leaked_sampler_threads  # noqa: F401 - autouse fixture
from support.fake_pynvml import FakeGpu, FakeNvml, ManualClock

from pytest_longeff.energy import (
    INVALIDATING_REASONS,
    EnergyReading,
    LegacyFigure,
    Meter,
    decode_reasons,
    legacy_as_extracted,
    legacy_bucket_means,
    legacy_energy,
    make_meter,
    measure_idle,
)


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

"""Tests for the NVML power-sampling meter and its sampling thread against the fake pynvml, including read()
mid-window, and for NVML meters on this machine (real pynvml, usually without an NVIDIA library)."""

from __future__ import annotations

import threading
import time

import pytest
from support.energy import (  # noqa: F401 - no_leaked_sampler_threads is an autouse fixture
    assert_unmeasured,
    no_leaked_sampler_threads,
    real_nvml_works,
    sampler_threads,
)
from support.fake_pynvml import FakeGpu, FakeNvml

from pytest_longeff.energy import MeterUnavailable, PowerSampler, make_meter


def test_constant_power_over_a_window_integrates_to_power_times_time() -> None:
    fake = FakeNvml([FakeGpu(power_w=180.0), FakeGpu(power_w=20.0)])
    meter, warnings = make_meter("nvml-power", "cpu", nvml=fake, sample_hz=200.0)
    assert warnings == []
    meter.start()
    assert len(sampler_threads()) == 1
    time.sleep(0.2)
    reading = meter.stop()
    assert not sampler_threads()  # stop() ends the thread
    assert reading.method == "nvml-power"
    assert reading.valid, reading.note
    assert reading.energy_j == pytest.approx(200.0 * reading.time_s, rel=1e-9)
    assert reading.samples >= 5  # 200 Hz over 0.2 s; generous against a loaded CI machine
    assert reading.max_gap_s is not None and 0.0 < reading.max_gap_s < 0.2
    assert reading.legacy_j == pytest.approx(200.0 / 1000.0)  # one bucket, every poll sees 200 W
    meter.close()


def test_power_ramp_is_integrated_over_the_window() -> None:
    origin = time.perf_counter()
    fake = FakeNvml([FakeGpu(power_w=lambda t: 100.0 + 1000.0 * (t - origin))])
    stamps: list[float] = []
    test_thread = threading.get_ident()

    def recording_clock() -> float:
        now = time.perf_counter()
        if threading.get_ident() == test_thread:  # the sampling thread's time stamps are not window edges
            stamps.append(now)
        return now

    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=200.0, clock=recording_clock)
    meter.start()
    t0 = stamps[-1]
    time.sleep(0.15)
    reading = meter.stop()
    t1 = t0 + reading.time_s
    analytic = 100.0 * (t1 - t0) + 500.0 * ((t1 - origin) ** 2 - (t0 - origin) ** 2)
    assert reading.valid, reading.note
    # Power is rounded to whole milliwatts and stamped at the middle of each read; allow for both, and for a read
    # the scheduler stalls for up to about 18 ms (0.5 % of the energy). A rectangle rule's error here is about 1.4 %.
    assert reading.energy_j == pytest.approx(analytic, rel=5e-3)
    meter.close()


def test_nvml_error_mid_window_stops_sampling_and_invalidates() -> None:
    fake = FakeNvml([FakeGpu(power_w=100.0)])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=200.0)
    meter.start()
    time.sleep(0.03)
    fake.fail["nvmlDeviceGetPowerUsage"] = fake.NVMLError_GpuIsLost()
    time.sleep(0.03)
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "GPU is lost" in (reading.note or "")
    meter.close()


def test_power_meter_close_stops_a_running_thread() -> None:
    fake = FakeNvml([FakeGpu()])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=500.0)
    meter.start()
    assert sampler_threads()
    meter.close()
    assert not sampler_threads()
    assert fake.initialised == 0


def test_power_sampler_stops_on_a_failing_source() -> None:
    calls = 0

    def source() -> float:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise RuntimeError("sensor went away")
        return 1.0

    sampler = PowerSampler(source, sample_hz=1000.0)
    sampler.start()
    deadline = time.monotonic() + 5.0
    while sampler.error is None and time.monotonic() < deadline:
        time.sleep(0.005)
    sampler.stop()
    assert len(sampler.samples()) == 3
    assert sampler.error == "RuntimeError: sensor went away"
    with pytest.raises(ValueError, match="sample_hz"):
        PowerSampler(source, sample_hz=-1.0)


def test_power_meter_stop_without_start_is_a_usage_error() -> None:
    meter, _ = make_meter("nvml-power", "cuda", nvml=FakeNvml([FakeGpu()]))
    with pytest.raises(RuntimeError, match="before start"):
        meter.stop()
    meter.close()


def test_read_mid_window_is_power_times_elapsed_while_sampling_goes_on() -> None:
    fake = FakeNvml([FakeGpu(power_w=150.0), FakeGpu(power_w=50.0)])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=200.0)
    meter.start()
    time.sleep(0.05)
    first = meter.read()
    assert first.valid, first.note
    assert first.energy_j == pytest.approx(150.0 * first.time_s, rel=1e-9)  # cuda:0 only
    assert len(sampler_threads()) == 1  # reading did not stop the thread
    time.sleep(0.05)
    second = meter.read()
    assert second.time_s > first.time_s
    assert second.energy_j == pytest.approx(150.0 * second.time_s, rel=1e-9)
    reading = meter.stop()
    assert reading.time_s >= second.time_s
    assert reading.energy_j == pytest.approx(150.0 * reading.time_s, rel=1e-9)
    with pytest.raises(RuntimeError, match="before start"):
        meter.read()
    meter.close()


def test_power_meter_without_legacy_leaves_the_legacy_figure_out() -> None:
    fake = FakeNvml([FakeGpu(power_w=100.0)])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=200.0, legacy=False)
    meter.start()
    time.sleep(0.02)
    reading = meter.stop()
    assert reading.valid, reading.note
    assert reading.legacy_j is None
    meter.close()


# -- this machine: real pynvml, no NVIDIA library --------------------------------------------------------------

needs_no_nvml = pytest.mark.skipif(real_nvml_works(), reason="this machine has a working NVML")


@needs_no_nvml
@pytest.mark.parametrize("name", ["nvml", "nvml-power"])
def test_explicit_nvml_without_library_raises_helpful_error(name: str) -> None:
    with pytest.raises(MeterUnavailable) as info:
        make_meter(name, "cuda")
    message = str(info.value)
    assert "NVML" in message
    assert "not found" in message.lower() or "cannot be imported" in message
    assert "'estimate'" in message or "estimate" in message


@needs_no_nvml
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_auto_on_this_machine_is_null_meter_with_note(device: str) -> None:
    meter, warnings = make_meter("auto", device)
    assert meter.method == "none"
    assert len(warnings) == 1
    meter.start()
    reading = meter.stop()
    assert_unmeasured(reading)
    assert (reading.note or "").startswith("no energy meter available on this machine (NVML")
    meter.close()

"""Tests for the NVML energy-counter meter against the fake pynvml: windows, resets, errors, device mapping,
fallbacks, read() mid-window, the legacy wrapper, and the idle baseline."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.energy import (  # noqa: F401 - no_leaked_sampler_threads is an autouse fixture
    assert_unmeasured,
    no_leaked_sampler_threads,
    sampler_threads,
)
from support.fake_pynvml import FakeGpu, FakeHandle, FakeNvml, ManualClock

from pytest_longeff.energy import (
    NVML_UPDATE_PERIOD_S,
    EnergyReading,
    LegacyFigure,
    Meter,
    MeterUnavailable,
    NullMeter,
    NvmlCounterMeter,
    make_meter,
    measure_idle,
    net_energy_j,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _counter_meter(fake: FakeNvml, clock: ManualClock, device: str = "cuda", legacy: bool = True) -> Meter:
    meter, warnings = make_meter("nvml", device, nvml=fake, clock=clock, legacy=legacy, sleep=clock.advance)
    assert warnings == []
    assert meter.method == "nvml"
    return meter


# -- windows ---------------------------------------------------------------------------------------------------


def test_counter_measures_energy_over_a_window(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = _counter_meter(fake, clock)
    clock.advance(0.02)
    meter.start()
    clock.advance(1.0)
    reading = meter.stop()
    assert reading.valid
    assert reading.energy_j == pytest.approx(250.0)
    assert reading.time_s == pytest.approx(1.0)
    assert reading.samples == 2
    assert reading.max_gap_s is None
    # The study's figure comes from a 2-s power poll beside the counter: one 30-s bucket of 250 W, / 1000.
    assert reading.legacy_j == pytest.approx(0.25)
    meter.close()


def test_window_shorter_than_counter_update_period_is_invalid(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=250.0, counter_update_s=NVML_UPDATE_PERIOD_S)], clock=clock)
    meter = _counter_meter(fake, clock)
    clock.advance(0.07)
    meter.start()
    clock.advance(0.05)  # crosses one counter update at 0.1 s, so the counter did move: the length decides
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "shorter than the NVML energy counter's update period (100 ms)" in (reading.note or "")
    assert reading.time_s == pytest.approx(0.05)
    meter.close()


def test_counter_that_does_not_move_is_invalid(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=0.0)], clock=clock)
    meter = _counter_meter(fake, clock)
    meter.start()
    clock.advance(0.5)
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "did not move" in (reading.note or "")
    meter.close()


def test_counter_that_goes_backwards_is_invalid_not_a_wrap(clock: ManualClock) -> None:
    """A driver reload or GPU reset restarts the counter at 0; undoing that as a 64-bit wrap would report
    about 1.8e16 J."""
    fake = FakeNvml([FakeGpu(power_w=300.0, counter_start_mj=5_000_000)], clock=clock)
    meter = _counter_meter(fake, clock)
    meter.start()
    clock.advance(1.0)
    fake.reset_counter(0)
    clock.advance(0.5)
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "went backwards" in (reading.note or "") and "GPU reset" in (reading.note or "")
    assert reading.legacy_j is None
    # The next window starts from the new counter value and is valid again.
    meter.start()
    clock.advance(1.0)
    assert meter.stop().energy_j == pytest.approx(300.0)
    meter.close()


def test_counter_at_the_64_bit_limit_is_not_undone_as_a_wrap(clock: ManualClock) -> None:
    """2**64 mJ is about 585,000 years at 1 kW: a counter seen to wrap was reset, so the reading is invalid."""
    fake = FakeNvml([FakeGpu(power_w=50.0)], clock=clock)
    meter = _counter_meter(fake, clock)
    fake.reset_counter(0, 2**64 - 1_000)  # after the meter measured its update period
    meter.start()
    clock.advance(1.0)  # the fake wraps past 2**64 after the first 1 000 mJ
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "went backwards" in (reading.note or "")
    meter.close()


class SlowNvml(FakeNvml):
    """Every NVML call takes 50 ms of the fake's clock, so the energy counter moves between any two calls; logs
    what each counter read returned."""

    def __init__(self, gpus: list[FakeGpu], clock: ManualClock) -> None:
        super().__init__(gpus, clock=clock)
        self.manual_clock = clock
        self.counter_reads: list[int] = []

    def _enter(self, name: str) -> None:
        super()._enter(name)
        self.manual_clock.advance(0.05)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        value = super().nvmlDeviceGetTotalEnergyConsumption(handle)
        self.counter_reads.append(value)
        return value


def test_stop_reads_the_counter_before_checking_the_window(clock: ManualClock) -> None:
    """The energy is the counter's advance from the start read to the first read at stop(), not to a read made
    after stop()'s checks (processes, throttling: several driver calls)."""
    fake = SlowNvml([FakeGpu(power_w=100.0, counter_update_s=0.001)], clock)
    meter = _counter_meter(fake, clock, legacy=False)
    meter.start()
    start_read = len(fake.counter_reads) - 1  # start() reads the counter last
    clock.advance(2.0)
    reading = meter.stop()
    assert reading.valid, reading.note
    end_read = start_read + 1  # the first read in stop()
    assert reading.energy_j == pytest.approx((fake.counter_reads[end_read] - fake.counter_reads[start_read]) / 1000)
    assert reading.energy_j == pytest.approx(100.0 * (2.0 + 0.05), abs=0.001)  # the window and the read itself
    assert reading.time_s == pytest.approx(2.0)
    meter.close()


def test_nvml_error_mid_window_gives_invalid_reading(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu()], clock=clock)
    meter = _counter_meter(fake, clock)
    meter.start()
    clock.advance(1.0)
    fake.fail["nvmlDeviceGetTotalEnergyConsumption"] = fake.NVMLError_GpuIsLost()
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "window end" in (reading.note or "") and "GPU is lost" in (reading.note or "")
    # The next window works again once the device answers.
    del fake.fail["nvmlDeviceGetTotalEnergyConsumption"]
    meter.start()
    clock.advance(1.0)
    assert meter.stop().valid
    meter.close()


def test_nvml_error_at_window_start_gives_invalid_reading(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu()], clock=clock)
    meter = _counter_meter(fake, clock)
    fake.fail["nvmlDeviceGetTotalEnergyConsumption"] = fake.NVMLError_Unknown()
    meter.start()
    clock.advance(1.0)
    del fake.fail["nvmlDeviceGetTotalEnergyConsumption"]
    reading = meter.stop()
    assert_unmeasured(reading)
    assert "window start" in (reading.note or "")
    meter.close()


@pytest.mark.parametrize(
    ("device", "visible", "expected_j"),
    [
        ("cuda", None, 100.0),
        ("cuda:1", None, 200.0),
        ("cuda", "2,0", 400.0),
        ("cuda:1", "2,0", 100.0),
        ("cpu", None, 700.0),  # explicit NVML on a CPU cell measures all GPUs
    ],
)
def test_counter_measures_the_cells_devices(
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    device: str,
    visible: str | None,
    expected_j: float,
) -> None:
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    fake = FakeNvml([FakeGpu(power_w=100.0), FakeGpu(power_w=200.0), FakeGpu(power_w=400.0)], clock=clock)
    meter = _counter_meter(fake, clock, device)
    meter.start()
    clock.advance(1.0)
    assert meter.stop().energy_j == pytest.approx(expected_j)
    meter.close()


class TorchUuid:
    """What torch's ``get_device_properties(i).uuid`` is: a _CUuuid that prints as the bare canonical UUID."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __str__(self) -> str:
        return self._text


def _cuda_sees(monkeypatch: pytest.MonkeyPatch, uuids: list[str]) -> None:
    """torch.cuda reports these NVML UUIDs, in this order, as cuda:0, cuda:1, ..."""
    torch = pytest.importorskip("torch")

    def properties(index: int) -> SimpleNamespace:
        if index >= len(uuids):
            raise AssertionError("Invalid device id")  # what torch raises
        return SimpleNamespace(uuid=TorchUuid(uuids[index].removeprefix("GPU-").upper()))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)


@pytest.mark.parametrize("visible", [None, "0,1"])
def test_cuda_devices_are_matched_to_nvml_by_uuid_not_by_number(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch, visible: str | None
) -> None:
    """CUDA's default order (fastest first) need not be NVML's (PCI bus order): here CUDA calls NVML's GPU 1 cuda:0."""
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    fake = FakeNvml([FakeGpu(power_w=100.0), FakeGpu(power_w=200.0)], clock=clock)
    _cuda_sees(monkeypatch, [fake.uuid_of(1), fake.uuid_of(0)])
    for device, watts in [("cuda:0", 200.0), ("cuda:1", 100.0)]:
        meter = _counter_meter(fake, clock, device, legacy=False)
        meter.start()
        clock.advance(1.0)
        assert meter.stop().energy_j == pytest.approx(watts)
        assert meter.describe()["gpus"][0]["nvml_index"] == (1 if watts == 200.0 else 0)  # type: ignore[index]
        meter.close()


def test_cuda_device_unknown_to_nvml_by_uuid_is_unavailable(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MIG instance's UUID names no NVML GPU: no energy counter, rather than the whole GPU's by number."""
    fake = FakeNvml([FakeGpu()], clock=clock)
    _cuda_sees(monkeypatch, ["GPU-5d0a1e2b-0000-4000-8000-00000000abcd"])
    with pytest.raises(MeterUnavailable, match="GPU-5d0a1e2b-0000-4000-8000-00000000abcd.*is not a GPU NVML knows"):
        make_meter("nvml", "cuda:0", nvml=fake, clock=clock)
    assert fake.initialised == 0


def test_missing_cuda_device_is_unavailable_or_null(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = FakeNvml([FakeGpu()], clock=clock)
    with pytest.raises(MeterUnavailable, match="cuda:3 does not exist"):
        make_meter("nvml", "cuda:3", nvml=fake, clock=clock)
    meter, warnings = make_meter("auto", "cuda:3", nvml=fake, clock=clock)
    assert meter.method == "none"
    assert len(warnings) == 1
    assert fake.initialised == 0  # every failed attempt shut NVML down again


def test_close_shuts_nvml_down_once(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu()], clock=clock)
    meter = _counter_meter(fake, clock)
    assert fake.calls["nvmlInit"] == 1
    meter.close()
    meter.close()
    assert fake.calls["nvmlShutdown"] == 1
    assert fake.initialised == 0


def test_describe_reports_environment_facts(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(name="NVIDIA H200", power_limit_w=700.0)], clock=clock)
    fake.gpus[0].clocks_mhz.pop(fake.NVML_CLOCK_GRAPHICS)  # a clock the GPU does not report stays None
    meter = _counter_meter(fake, clock)
    facts = meter.describe()
    assert facts["driver_version"] == "550.54.15"
    assert facts["gpus"] == [
        {
            "nvml_index": 0,
            "name": "NVIDIA H200",
            "power_limit_w": 700.0,
            "graphics_clock_mhz": None,
            "sm_clock_mhz": 1980,
            "mem_clock_mhz": 2619,
            "pstate": 0,
        }
    ]
    assert facts["counter_update_period_s"] == pytest.approx(0.1, abs=0.006)
    assert facts["counter_update_measured"] is True
    assert "nvmlDeviceGetPowerUsage" in str(facts["power_source"])
    meter.close()


@pytest.mark.parametrize("name", ["nvml", "auto"])
def test_gpu_without_energy_counter_falls_back_to_power_sampling(clock: ManualClock, name: str) -> None:
    fake = FakeNvml([FakeGpu(energy_supported=False)], clock=clock)
    meter, warnings = make_meter(name, "cuda", nvml=fake, clock=clock)
    assert meter.method == "nvml-power"
    assert len(warnings) == 1
    assert "energy counter unavailable" in warnings[0] and "power sampling" in warnings[0]
    meter.close()
    assert fake.initialised == 0


def test_gpu_without_energy_or_power(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(energy_supported=False, power_supported=False)], clock=clock)
    with pytest.raises(MeterUnavailable, match="cannot read power"):
        make_meter("nvml", "cuda", nvml=fake, clock=clock)
    meter, warnings = make_meter("auto", "cuda", nvml=fake, clock=clock)
    assert meter.method == "none"
    assert len(warnings) == 1
    assert fake.initialised == 0


def test_fake_library_not_found(clock: ManualClock) -> None:
    fake = FakeNvml(library_present=False, clock=clock)
    for name in ("nvml", "nvml-power"):
        with pytest.raises(MeterUnavailable, match="NVML Shared Library Not Found"):
            make_meter(name, "cuda", nvml=fake)
    meter, _ = make_meter("auto", "cuda", nvml=fake)
    assert meter.method == "none"


# -- read(): energy so far, window left open -------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [True, False])
def test_read_mid_window_is_power_times_elapsed_and_keeps_the_window_open(clock: ManualClock, legacy: bool) -> None:
    fake = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = _counter_meter(fake, clock, legacy=legacy)
    meter.start()
    clock.advance(1.0)
    first = meter.read()
    assert first.valid, first.note
    assert first.energy_j == pytest.approx(250.0)
    assert first.time_s == pytest.approx(1.0)
    clock.advance(2.0)
    second = meter.read()
    assert second.energy_j == pytest.approx(750.0)
    assert (second.legacy_j is not None) is legacy
    reading = meter.stop()  # the reads did not close or restart the window
    assert reading.energy_j == pytest.approx(750.0)
    assert reading.time_s == pytest.approx(3.0)
    with pytest.raises(RuntimeError, match="before start"):
        meter.read()
    meter.close()


def test_read_follows_the_same_rules_as_stop(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = _counter_meter(fake, clock)
    meter.start()
    clock.advance(0.05)
    assert "shorter than the NVML energy counter's update period" in (meter.read().note or "")
    clock.advance(0.95)
    fake.fail["nvmlDeviceGetTotalEnergyConsumption"] = fake.NVMLError_GpuIsLost()
    reading = meter.read()
    assert_unmeasured(reading)
    assert "window end" in (reading.note or "")
    del fake.fail["nvmlDeviceGetTotalEnergyConsumption"]
    assert meter.stop().energy_j == pytest.approx(250.0)
    meter.close()


# -- the legacy figure: an opt-in wrapper ----------------------------------------------------------------------


def test_legacy_wrapper_polls_only_while_a_window_is_open(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = _counter_meter(fake, clock)
    assert isinstance(meter, LegacyFigure) and isinstance(meter.inner, NvmlCounterMeter)
    assert not sampler_threads()
    meter.start()
    assert len(sampler_threads()) == 1
    clock.advance(1.0)
    assert meter.stop().legacy_j == pytest.approx(0.25)
    assert not sampler_threads()
    meter.close()


class FailingStop(NullMeter):
    """A meter whose stop() raises (a bug or an unexpected driver error)."""

    def stop(self) -> EnergyReading:
        raise RuntimeError("stop failed")


def test_legacy_wrapper_stops_polling_even_when_the_inner_stop_raises() -> None:
    meter = LegacyFigure(FailingStop(), lambda: 250.0)
    meter.start()
    assert len(sampler_threads()) == 1
    with pytest.raises(RuntimeError, match="stop failed"):
        meter.stop()
    assert not sampler_threads()
    meter.close()


def test_without_legacy_the_counter_meter_polls_no_power(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = _counter_meter(fake, clock, legacy=False)
    assert isinstance(meter, NvmlCounterMeter)
    meter.start()
    assert not sampler_threads()
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 0  # no power poll beside the counter
    clock.advance(1.0)
    reading = meter.stop()
    assert reading.energy_j == pytest.approx(250.0)
    assert reading.legacy_j is None
    assert reading.to_dict()["legacy_sum_of_30s_mean_power_kw"] is None
    meter.close()


def test_legacy_power_failure_leaves_the_energy_valid(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = _counter_meter(fake, clock)
    fake.fail["nvmlDeviceGetPowerUsage"] = fake.NVMLError_Unknown()
    meter.start()
    clock.advance(1.0)
    reading = meter.stop()
    assert reading.valid and reading.energy_j == pytest.approx(250.0)
    assert reading.legacy_j is None
    meter.close()


# -- idle baseline ---------------------------------------------------------------------------------------------


def test_measure_idle_and_net_energy(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=60.0)], clock=clock)
    meter = _counter_meter(fake, clock)
    idle = measure_idle(meter, 2.0, sleep=clock.advance)
    assert idle.valid and idle.method == "nvml"
    assert idle.power_w == pytest.approx(60.0)
    assert idle.to_dict()["idle_power_w"] == pytest.approx(60.0)
    fake.gpus[0].power_w = 260.0
    fake.origin_s = clock()  # restart the fake's counter profile at the new power
    meter.start()
    clock.advance(1.0)
    reading = meter.stop()
    assert net_energy_j(reading, idle) == pytest.approx(200.0)
    meter.close()


@settings(max_examples=50)
@given(power_w=st.floats(1.0, 1000.0), length_s=st.floats(0.1, 100.0))
def test_counter_meter_reports_power_times_whole_ticks(power_w: float, length_s: float) -> None:
    clock = ManualClock(0.0)
    fake = FakeNvml([FakeGpu(power_w=power_w)], clock=clock)
    meter, _ = make_meter("nvml", "cuda", nvml=fake, clock=clock)
    meter.start()
    clock.advance(length_s)
    reading = meter.stop()
    ticks = math.floor(length_s / 0.1 + 1e-9)
    assert reading.valid
    # The counter holds whole millijoules, hence the 1 mJ tolerance.
    assert reading.energy_j == pytest.approx(power_w * ticks * 0.1, abs=1e-3)
    meter.close()

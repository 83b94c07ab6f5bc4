"""Tests for pytest_longeff.energy: pure integration, each meter against fakes, and this machine's fallbacks."""

from __future__ import annotations

import itertools
import math
import os
import pathlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_pynvml import FakeGpu, FakeNvml, ManualClock
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pytest_longeff.energy import (
    ENERGY_CHOICES,
    NVML_UPDATE_PERIOD_S,
    EnergyReading,
    EstimateMeter,
    IdleBaseline,
    Meter,
    MeterUnavailable,
    NullMeter,
    PowerSampler,
    integrate_power,
    legacy_energy,
    make_meter,
    max_sample_gap,
    measure_idle,
    net_energy_j,
)

# -- helpers ---------------------------------------------------------------------------------------------------


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "longeff-power-sampler"]


@pytest.fixture(autouse=True)
def _no_leaked_sampler_threads() -> Iterator[None]:
    yield
    for thread in _sampler_threads():
        thread.join(timeout=2.0)
    assert not _sampler_threads(), "a power-sampling thread outlived its test"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _counter_meter(fake: FakeNvml, clock: ManualClock, device: str = "cuda") -> Meter:
    meter, warnings = make_meter("nvml", device, nvml=fake, clock=clock)
    assert warnings == []
    assert meter.method == "nvml"
    return meter


def _assert_unmeasured(reading: EnergyReading) -> None:
    # The contract: an unmeasured reading carries None, never 0.0 as a stand-in, and says why.
    assert reading.energy_j is None
    assert reading.to_dict()["energy_j"] is None
    assert not reading.valid
    assert reading.note


def _real_nvml_works() -> bool:
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


# -- integrate_power: pure function ----------------------------------------------------------------------------

times = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
powers = st.floats(min_value=0.0, max_value=2000.0, allow_nan=False)


@given(
    power_w=powers,
    sample_times=st.lists(times, min_size=1, max_size=30),
    window=st.tuples(times, times),
)
def test_constant_power_integrates_to_power_times_duration(
    power_w: float, sample_times: list[float], window: tuple[float, float]
) -> None:
    t0, t1 = sorted(window)
    samples = [(t, power_w) for t in sample_times]
    assert integrate_power(samples, t0, t1) == pytest.approx(power_w * (t1 - t0), rel=1e-9, abs=1e-6)


@given(
    a=st.floats(-500, 500),
    b=st.floats(-50, 50),
    inner=st.lists(st.floats(0.0, 1.0), min_size=0, max_size=20),
    window=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    span=st.tuples(st.floats(-10, 10), st.floats(0.1, 20)),
)
def test_linear_power_integrates_exactly_when_samples_bracket_the_window(
    a: float,
    b: float,
    inner: list[float],
    window: tuple[float, float],
    span: tuple[float, float],
) -> None:
    start, length = span
    lo_frac, hi_frac = sorted(window)
    t0, t1 = start + lo_frac * length, start + hi_frac * length
    sample_times = [start, start + length, *(start + f * length for f in inner)]
    samples = [(t, a + b * t) for t in sample_times]
    analytic = a * (t1 - t0) + b * (t1 * t1 - t0 * t0) / 2.0
    assert integrate_power(samples, t0, t1) == pytest.approx(analytic, rel=1e-6, abs=1e-6)


@st.composite
def step_traces(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    edges = sorted(set(draw(st.lists(st.floats(0.0, 100.0), min_size=2, max_size=12))))
    assume(len(edges) >= 2)
    levels = draw(st.lists(powers, min_size=len(edges) - 1, max_size=len(edges) - 1))
    return edges, levels


@given(trace=step_traces(), window=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)))
def test_piecewise_constant_trace_matches_analytic_integral(
    trace: tuple[list[float], list[float]], window: tuple[float, float]
) -> None:
    edges, levels = trace
    span = edges[-1] - edges[0]
    lo, hi = sorted(window)
    t0, t1 = edges[0] + lo * span, edges[0] + hi * span
    # A step at each edge is two samples at the same time: the old level, then the new one.
    samples: list[tuple[float, float]] = []
    for i, level in enumerate(levels):
        samples.append((edges[i], level))
        samples.append((edges[i + 1], level))
    analytic = sum(
        level * max(0.0, min(t1, edges[i + 1]) - max(t0, edges[i])) for i, level in enumerate(levels)
    )
    assert integrate_power(samples, t0, t1) == pytest.approx(analytic, rel=1e-9, abs=1e-6)


@given(
    knots=st.lists(
        st.tuples(st.floats(0.0, 100.0), powers), min_size=2, max_size=10, unique_by=lambda k: k[0]
    ),
    extra=st.lists(st.floats(0.0, 1.0), max_size=10),
)
def test_adding_interpolated_samples_does_not_change_a_piecewise_linear_integral(
    knots: list[tuple[float, float]], extra: list[float]
) -> None:
    knots.sort()
    first, last = knots[0][0], knots[-1][0]
    refined = list(knots)
    for frac in extra:
        t = first + frac * (last - first)
        refined.append((t, _interpolate(knots, t)))
    exact = sum((tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in itertools.pairwise(knots))
    assert integrate_power(knots, first, last) == pytest.approx(exact, rel=1e-9, abs=1e-6)
    assert integrate_power(refined, first, last) == pytest.approx(exact, rel=1e-6, abs=1e-6)


def _interpolate(knots: list[tuple[float, float]], t: float) -> float:
    for (ta, pa), (tb, pb) in itertools.pairwise(knots):
        if ta <= t <= tb:
            return pa + (pb - pa) * (t - ta) / (tb - ta)
    raise AssertionError("t outside the knots")


@given(
    samples=st.lists(st.tuples(times, powers), min_size=1, max_size=30),
    cuts=st.lists(times, min_size=3, max_size=3),
)
def test_integration_is_additive_over_split_windows(
    samples: list[tuple[float, float]], cuts: list[float]
) -> None:
    a, b, c = sorted(cuts)
    whole = integrate_power(samples, a, c)
    split = integrate_power(samples, a, b) + integrate_power(samples, b, c)
    assert split == pytest.approx(whole, rel=1e-9, abs=1e-6)


def test_integrate_power_rejects_empty_traces_and_reversed_windows() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        integrate_power([], 0.0, 1.0)
    with pytest.raises(ValueError, match="ends before it starts"):
        integrate_power([(0.0, 1.0)], 1.0, 0.0)


def test_max_sample_gap_counts_window_edges() -> None:
    assert max_sample_gap([-1.0, 0.2, 0.3, 2.0], 0.0, 1.0) == pytest.approx(0.7)
    assert max_sample_gap([], 0.0, 1.0) == pytest.approx(1.0)


def test_legacy_formula_is_sum_of_30s_means_over_1000() -> None:
    trace = [(float(t), 300.0) for t in range(-1, 62)]
    # 60 s of 300 W: two 30-s buckets of mean 300 -> 0.6 (the seed study's "kJ"), against 18 000 J of energy.
    assert legacy_energy(trace, 0.0, 60.0) == pytest.approx(0.6)
    # A partial last bucket counts as a bucket.
    assert legacy_energy(trace, 0.0, 45.0) == pytest.approx(0.6)
    # A step from 100 W to 400 W at 15 s: one bucket, polls 0..28 s see 100 W for 8 polls and 400 W for 7.
    step = [(-1.0, 100.0), (14.999, 100.0), (15.0, 400.0), (40.0, 400.0)]
    assert legacy_energy(step, 0.0, 30.0) == pytest.approx((8 * 100 + 7 * 400) / 15 / 1000)
    assert legacy_energy([], 0.0, 30.0) is None


# -- value objects ---------------------------------------------------------------------------------------------


def test_reading_to_dict_keys() -> None:
    reading = EnergyReading(
        energy_j=12.5,
        time_s=2.0,
        method="nvml-power",
        valid=True,
        note="ok",
        samples=41,
        max_gap_s=0.06,
        legacy_j=0.006,
    )
    assert reading.to_dict() == {
        "energy_j": 12.5,
        "time_s": 2.0,
        "energy_method": "nvml-power",
        "energy_valid": True,
        "energy_note": "ok",
        "energy_samples": 41,
        "energy_max_gap_s": 0.06,
        "legacy_sum_of_30s_mean_power_kw": 0.006,
    }


def test_energy_choices_are_all_buildable_names() -> None:
    assert ENERGY_CHOICES == ("auto", "nvml", "nvml-power", "rapl", "estimate", "none")
    with pytest.raises(ValueError, match="choose one of auto, nvml"):
        make_meter("joulemeter", "cpu")
    with pytest.raises(ValueError, match="sample_hz"):
        make_meter("none", "cpu", sample_hz=0.0)


# -- nvml: energy counter --------------------------------------------------------------------------------------


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
    _assert_unmeasured(reading)
    assert "shorter than the NVML energy counter's update period (100 ms)" in (reading.note or "")
    assert reading.time_s == pytest.approx(0.05)
    meter.close()


def test_counter_that_does_not_move_is_invalid(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=0.0)], clock=clock)
    meter = _counter_meter(fake, clock)
    meter.start()
    clock.advance(0.5)
    reading = meter.stop()
    _assert_unmeasured(reading)
    assert "did not move" in (reading.note or "")
    meter.close()


def test_counter_wrap_around_is_undone(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu(power_w=50.0, counter_start_mj=2**64 - 1_000)], clock=clock)
    meter = _counter_meter(fake, clock)
    meter.start()
    clock.advance(1.0)  # 50 000 mJ: wraps past 2**64 after the first 1 000
    before_wrap = fake.nvmlDeviceGetTotalEnergyConsumption(fake.nvmlDeviceGetHandleByIndex(0))
    assert before_wrap < 1_000_000  # the raw counter did wrap
    reading = meter.stop()
    assert reading.valid
    assert reading.energy_j == pytest.approx(50.0)
    meter.close()


def test_nvml_error_mid_window_gives_invalid_reading(clock: ManualClock) -> None:
    fake = FakeNvml([FakeGpu()], clock=clock)
    meter = _counter_meter(fake, clock)
    meter.start()
    clock.advance(1.0)
    fake.fail["nvmlDeviceGetTotalEnergyConsumption"] = fake.NVMLError_GpuIsLost()
    reading = meter.stop()
    _assert_unmeasured(reading)
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
    _assert_unmeasured(reading)
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


def test_missing_cuda_device_is_unavailable_or_null(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
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
        }
    ]
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


# -- nvml-power: sampling thread -------------------------------------------------------------------------------


def test_constant_power_over_a_window_integrates_to_power_times_time() -> None:
    fake = FakeNvml([FakeGpu(power_w=180.0), FakeGpu(power_w=20.0)])
    meter, warnings = make_meter("nvml-power", "cpu", nvml=fake, sample_hz=200.0)
    assert warnings == []
    meter.start()
    assert len(_sampler_threads()) == 1
    time.sleep(0.2)
    reading = meter.stop()
    assert not _sampler_threads()  # stop() ends the thread
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
    # Power is rounded to whole milliwatts and stamped at the middle of each read; allow for both.
    assert reading.energy_j == pytest.approx(analytic, rel=1e-3)
    meter.close()


def test_nvml_error_mid_window_stops_sampling_and_invalidates() -> None:
    fake = FakeNvml([FakeGpu(power_w=100.0)])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=200.0)
    meter.start()
    time.sleep(0.03)
    fake.fail["nvmlDeviceGetPowerUsage"] = fake.NVMLError_GpuIsLost()
    time.sleep(0.03)
    reading = meter.stop()
    _assert_unmeasured(reading)
    assert "GPU is lost" in (reading.note or "")
    meter.close()


def test_power_meter_close_stops_a_running_thread() -> None:
    fake = FakeNvml([FakeGpu()])
    meter, _ = make_meter("nvml-power", "cuda", nvml=fake, sample_hz=500.0)
    meter.start()
    assert _sampler_threads()
    meter.close()
    assert not _sampler_threads()
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


# -- this machine: real pynvml, no NVIDIA library --------------------------------------------------------------

needs_no_nvml = pytest.mark.skipif(_real_nvml_works(), reason="this machine has a working NVML")


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
    _assert_unmeasured(reading)
    assert (reading.note or "").startswith("no energy meter available on this machine (NVML")
    meter.close()


def test_auto_on_cpu_without_rapl_is_null_meter(tmp_path: Path) -> None:
    meter, warnings = make_meter("auto", "cpu", rapl_root=str(tmp_path / "no-powercap"))
    assert meter.method == "none"
    assert len(warnings) == 1 and "RAPL" in warnings[0]
    meter.start()
    reading = meter.stop()
    _assert_unmeasured(reading)
    assert (reading.note or "").startswith("no energy meter available on this machine (RAPL")


def test_auto_never_raises_for_odd_devices() -> None:
    meter, warnings = make_meter("auto", "mps")
    assert meter.method == "none"
    assert warnings


# -- rapl: fake sysfs tree -------------------------------------------------------------------------------------


def _rapl_tree(root: Path) -> dict[str, Path]:
    """Two packages (one with core and dram subdomains) and a psys domain that must be ignored."""
    layout = {
        "intel-rapl:0": ("package-0", 1_000_000, 262_143_328_850),
        "intel-rapl:0/intel-rapl:0:0": ("core", 500_000, 262_143_328_850),
        "intel-rapl:0/intel-rapl:0:1": ("dram", 2_000_000, 65_712_999_613),
        "intel-rapl:1": ("package-1", 262_143_000_000, 262_143_328_850),
        "intel-rapl:2": ("psys", 7_000_000, 262_143_328_850),
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


def _add_uj(path: Path, delta_uj: int, max_uj: int | None = None) -> None:
    value = int(path.read_text()) + delta_uj
    if max_uj is not None:
        value %= max_uj
    path.write_text(f"{value}\n")


def test_rapl_sums_packages_and_dram_and_undoes_wrap(tmp_path: Path, clock: ManualClock) -> None:
    files = _rapl_tree(tmp_path)
    meter, warnings = make_meter("rapl", "cpu", rapl_root=str(tmp_path), clock=clock)
    assert warnings == []
    assert meter.describe() == {"rapl_domains": ["package-0", "dram", "package-1"]}
    meter.start()
    clock.advance(2.0)
    _add_uj(files["package-0"], 30_000_000)
    _add_uj(files["dram"], 4_000_000)
    _add_uj(files["package-1"], 20_000_000, max_uj=262_143_328_850)  # wraps
    _add_uj(files["core"], 99_000_000)  # inside package-0: must not be counted again
    _add_uj(files["psys"], 99_000_000)  # whole platform: overlaps the packages
    reading = meter.stop()
    assert reading.method == "rapl"
    assert reading.valid, reading.note
    assert int(files["package-1"].read_text()) < 262_143_000_000
    assert reading.energy_j == pytest.approx(54.0)
    assert reading.time_s == pytest.approx(2.0)
    meter.close()


def test_rapl_auto_on_cpu_picks_rapl_when_readable(tmp_path: Path) -> None:
    _rapl_tree(tmp_path)
    meter, warnings = make_meter("auto", "cpu", rapl_root=str(tmp_path))
    assert meter.method == "rapl"
    assert warnings == []


def test_rapl_on_a_gpu_cell_warns(tmp_path: Path) -> None:
    _rapl_tree(tmp_path)
    meter, warnings = make_meter("rapl", "cuda", rapl_root=str(tmp_path))
    assert meter.method == "rapl"
    assert len(warnings) == 1 and "CPU packages" in warnings[0]


def test_unreadable_rapl_raises_with_chmod_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _rapl_tree(tmp_path)
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
    files = _rapl_tree(tmp_path)
    files["package-0"].chmod(0o200)
    with pytest.raises(MeterUnavailable, match="sudo chmod a\\+r"):
        make_meter("rapl", "cpu", rapl_root=str(tmp_path))


def test_missing_rapl_raises_when_asked_for(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailable, match="no intel-rapl package domains"):
        make_meter("rapl", "cpu", rapl_root=str(tmp_path))


def test_rapl_read_failure_mid_window_is_invalid(tmp_path: Path, clock: ManualClock) -> None:
    files = _rapl_tree(tmp_path)
    meter, _ = make_meter("rapl", "cpu", rapl_root=str(tmp_path), clock=clock)
    meter.start()
    clock.advance(1.0)
    files["dram"].unlink()
    reading = meter.stop()
    _assert_unmeasured(reading)
    assert "window end" in (reading.note or "")


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
    _assert_unmeasured(reading)
    assert reading.note == "no energy meter selected"
    assert reading.time_s >= 0.0
    assert meter.describe() == {}


# -- idle baseline and net energy ------------------------------------------------------------------------------


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


def test_idle_on_a_null_meter_is_unmeasured() -> None:
    idle = measure_idle(NullMeter(), 0.0)
    assert idle.power_w is None and not idle.valid
    assert "no energy meter selected" in (idle.note or "")


def test_net_energy_is_none_when_either_side_is_unmeasured() -> None:
    good = EnergyReading(100.0, 1.0, "nvml", True, None, 2, None, None)
    unmeasured = EnergyReading(None, 1.0, "none", False, "no energy meter selected", 0, None, None)
    idle = IdleBaseline(power_w=40.0, time_s=5.0, method="nvml", valid=True, note=None)
    assert net_energy_j(good, idle) == pytest.approx(60.0)
    assert net_energy_j(unmeasured, idle) is None
    assert net_energy_j(good, None) is None
    assert net_energy_j(good, IdleBaseline(None, 5.0, "nvml", False, "failed")) is None
    assert net_energy_j(good, IdleBaseline(40.0, 5.0, "rapl", True, None)) is None  # different meters


def test_net_energy_may_be_negative_rather_than_clamped() -> None:
    reading = EnergyReading(10.0, 1.0, "nvml", True, None, 2, None, None)
    idle = IdleBaseline(power_w=12.0, time_s=5.0, method="nvml", valid=True, note=None)
    assert net_energy_j(reading, idle) == pytest.approx(-2.0)
    assert math.isfinite(net_energy_j(reading, idle) or math.nan)


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

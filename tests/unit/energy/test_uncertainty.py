"""Reported energy must be within its stated uncertainty of the truth for every window, short or long: the
counter meter (aligned or not) and sampled power against fake GPUs of known power whose counter advances only
every P seconds, over seeded sweeps of window offsets and lengths; and the bound must not be absurdly loose."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from support.fake_pynvml import FakeGpu, FakeNvml, ManualClock

from pytest_longeff.energy import (
    NvmlCounterMeter,
    integrate_power,
    make_meter,
    measure_update_period,
    power_uncertainty_j,
)

PERIOD_S = 0.1


def _step(t: float) -> float:
    return 120.0 if (t % 7.0) < 3.0 else 610.0


def _step_energy(t: float) -> float:
    whole, part = divmod(t, 7.0)
    return whole * (3.0 * 120.0 + 4.0 * 610.0) + 120.0 * min(part, 3.0) + 610.0 * max(0.0, part - 3.0)


def _ramp(t: float) -> float:
    return 100.0 + 25.0 * (t % 20.0)  # 100 W rising to 600 W over 20 s, then back to 100 W


def _ramp_energy(t: float) -> float:
    whole, part = divmod(t, 20.0)
    return whole * (100.0 * 20.0 + 12.5 * 400.0) + 100.0 * part + 12.5 * part * part


PROFILES: dict[str, FakeGpu] = {
    "constant": FakeGpu(power_w=300.0, power_limit_w=700.0),
    "step": FakeGpu(power_w=_step, energy_j=_step_energy, power_limit_w=700.0),
    "ramp": FakeGpu(power_w=_ramp, energy_j=_ramp_energy, power_limit_w=700.0),
}


def _counter(profile: str, align: bool, rng: random.Random) -> tuple[NvmlCounterMeter, FakeNvml, ManualClock]:
    clock = ManualClock(0.0)
    gpu = PROFILES[profile]
    gpu = FakeGpu(
        power_w=gpu.power_w, energy_j=gpu.energy_j, power_limit_w=gpu.power_limit_w,
        counter_update_s=PERIOD_S, counter_phase_s=rng.uniform(0.0, PERIOD_S),
    )  # fmt: skip
    fake = FakeNvml([gpu], clock=clock)
    meter, _ = make_meter("nvml", "cuda", nvml=fake, clock=clock, legacy=False, sleep=clock.advance, align=align)
    assert isinstance(meter, NvmlCounterMeter)
    return meter, fake, clock


def _window_lengths(rng: random.Random, n: int) -> list[float]:
    # Half short (one to ten periods, coarse), half long (up to 30 s).
    return [rng.uniform(0.1, 1.0) if i % 2 else rng.uniform(1.0, 30.0) for i in range(n)]


@pytest.mark.parametrize("align", [False, True], ids=["unaligned", "aligned"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_counter_reading_is_within_its_uncertainty_of_the_truth(profile: str, align: bool) -> None:
    rng = random.Random(f"{profile}-{align}")
    meter, fake, clock = _counter(profile, align, rng)
    gpu = fake.gpus[0]
    assert meter.update_period.measured
    assert meter.update_period.period_s == pytest.approx(PERIOD_S, abs=0.006)
    worst_long = 0.0
    bound_long = 0.0
    for length in _window_lengths(rng, 120):
        clock.advance(rng.uniform(0.0, 3.0))
        meter.start()
        t0 = clock()
        clock.advance(length)
        t1 = clock()
        reading = meter.stop()
        true_j = fake.true_energy_j(gpu, t0, t1)
        assert reading.valid, reading.note
        assert reading.energy_j is not None and reading.uncertainty_j is not None
        error = abs(reading.energy_j - true_j)
        assert error <= reading.uncertainty_j, (length, reading)
        assert reading.coarse == (length < 10 * meter.update_period.period_s)
        if not reading.coarse:
            worst_long = max(worst_long, error)
            bound_long = max(bound_long, reading.uncertainty_j)
    # Not absurdly loose: the largest stated bound of long windows is within 3x of the worst error seen.
    assert bound_long <= 3.0 * worst_long, (bound_long, worst_long)
    meter.close()


def test_aligned_edges_give_a_tighter_bound_at_low_power() -> None:
    """Unaligned, the bound uses the power limit; aligned, the energy of the update interval at the end."""
    bounds = {}
    for align in (False, True):
        clock = ManualClock(0.0)
        fake = FakeNvml([FakeGpu(power_w=70.0, power_limit_w=700.0)], clock=clock)
        meter, _ = make_meter("nvml", "cuda", nvml=fake, clock=clock, legacy=False, sleep=clock.advance, align=align)
        clock.advance(0.033)
        meter.start()
        clock.advance(5.0)
        reading = meter.stop()
        assert reading.valid and reading.uncertainty_j is not None
        bounds[align] = reading.uncertainty_j
        assert ("aligned to counter ticks" in (reading.note or "")) == align
        meter.close()
    assert bounds[False] == pytest.approx(700.0 * 0.1 + 0.001, rel=0.06)
    assert bounds[True] < 0.2 * bounds[False]


def test_window_shorter_than_one_period_is_invalid_and_short_ones_are_coarse() -> None:
    meter, _, clock = _counter("constant", False, random.Random(1))
    meter.start()
    clock.advance(0.05)
    assert not meter.stop().valid
    meter.start()
    clock.advance(0.5)
    reading = meter.stop()
    assert reading.valid and reading.coarse and reading.to_dict()["energy_coarse"] is True
    assert reading.update_period_s == pytest.approx(PERIOD_S, abs=0.006)
    meter.close()


def test_update_period_falls_back_to_the_assumed_value_with_a_note() -> None:
    clock = ManualClock(0.0)
    still = measure_update_period(lambda: 5, clock, clock.advance, assumed_s=0.1)
    assert not still.measured and still.period_s == 0.1
    assert "changed 0 time(s)" in still.note

    def broken() -> int:
        raise OSError("gone")

    failed = measure_update_period(broken, clock, clock.advance, assumed_s=0.1)
    assert not failed.measured and "gone" in failed.note
    frozen = measure_update_period(lambda: 5, ManualClock(0.0), lambda s: None, assumed_s=0.1)
    assert not frozen.measured and "did not move" in frozen.note


def test_update_period_is_measured_from_counter_changes() -> None:
    clock = ManualClock(0.0)
    found = measure_update_period(lambda: int(clock() / 0.25) * 7, clock, clock.advance, assumed_s=0.1)
    assert found.measured
    assert found.period_s == pytest.approx(0.25, abs=0.006)
    assert set(found.increments) == {7}


# -- sampled power ---------------------------------------------------------------------------------------------


def _trace(power: Callable[[float], float], rng: random.Random, t_end: float) -> list[tuple[float, float]]:
    t = -0.05
    samples = []
    while t < t_end + 0.1:
        samples.append((t, power(t)))
        t += rng.uniform(0.01, 0.09)  # jittered gaps below the 0.1 s a sensor update takes
    return samples


@pytest.mark.parametrize(
    ("power", "energy"), [(_step, _step_energy), (_ramp, _ramp_energy), (lambda t: 250.0, lambda t: 250.0 * t)]
)
def test_sampled_power_is_within_its_uncertainty_of_the_truth(
    power: Callable[[float], float], energy: Callable[[float], float]
) -> None:
    rng = random.Random(7)
    samples = _trace(power, rng, 40.0)
    for _ in range(300):
        t0 = rng.uniform(-0.2, 30.0)  # some windows start before the first sample: held edge
        t1 = t0 + rng.choice([rng.uniform(0.0, 1.0), rng.uniform(1.0, 10.0)])
        error = abs(integrate_power(samples, t0, t1) - (energy(t1) - energy(t0)))
        assert error <= power_uncertainty_j(samples, t0, t1, ceiling_w=700.0) + 1e-9


def test_sampled_power_bound_is_not_absurdly_loose_across_a_step() -> None:
    rng = random.Random(3)
    samples = _trace(_step, rng, 40.0)
    worst, bound = 0.0, 0.0
    for _ in range(200):
        t0 = rng.uniform(0.0, 20.0)
        t1 = t0 + rng.uniform(5.0, 15.0)  # long windows, each crossing steps
        worst = max(worst, abs(integrate_power(samples, t0, t1) - (_step_energy(t1) - _step_energy(t0))))
        bound = max(bound, power_uncertainty_j(samples, t0, t1, ceiling_w=700.0))
    assert 0.0 < worst <= bound <= 3.0 * worst


def test_averaged_sensor_adds_its_smearing_to_the_bound() -> None:
    samples = [(0.0, 100.0), (1.0, 100.0), (2.0, 500.0)]
    instant = power_uncertainty_j(samples, 0.0, 2.0)
    averaged = power_uncertainty_j(samples, 0.0, 2.0, sensor_average_s=1.0)
    assert averaged == pytest.approx(instant + 0.5 * 400.0)

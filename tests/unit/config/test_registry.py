"""The session's registries: a meter table from what the hooks return (built-ins by name, imported only when a
meter is made), refusing clashes and malformed entries."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

import pytest
from support.fake_pynvml import ManualClock

from pytest_longeff.config.registry import BuiltinMeter, builtin_meters, meter_table
from pytest_longeff.energy import (
    BUILTIN_METERS,
    ENERGY_CHOICES,
    Meter,
    MeterBuilder,
    MeterRequest,
    NullMeter,
    make_meter,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def requests() -> list[MeterRequest]:
    return []


@pytest.fixture
def table(requests: list[MeterRequest]) -> Mapping[str, MeterBuilder]:
    """A session's table as the hooks would give it: a meter "fixed-null" that records its requests, then the
    built-ins (in the merged order a plugin registered before this package's would give)."""

    def build(request: MeterRequest) -> tuple[Meter, list[str]]:
        requests.append(request)
        return NullMeter("a registered meter", request.clock), ["built by a plugin"]

    return meter_table({"fixed-null": build, **builtin_meters()})


def test_a_meter_of_the_table_is_built_by_name(table: Mapping[str, MeterBuilder], requests: list[MeterRequest],
                                               clock: ManualClock) -> None:
    assert tuple(table) == (*ENERGY_CHOICES, "fixed-null")  # built-ins first, whatever order the hooks gave
    assert ENERGY_CHOICES == ("auto", "nvml", "nvml-power", "rapl", "estimate", "none")  # built-ins only
    meter, warnings = make_meter("fixed-null", "cuda:1", clock=clock, sample_hz=5.0, legacy=False, meters=table)
    assert warnings == ["built by a plugin"]
    [request] = requests
    assert (request.device, request.target.kind, request.target.index) == ("cuda:1", "cuda", 1)
    assert (request.sample_hz, request.legacy, request.clock) == (5.0, False, clock)
    meter.start()
    clock.advance(2.0)
    assert meter.stop().note == "a registered meter"
    with pytest.raises(ValueError, match=r"choose one of auto, nvml, nvml-power, rapl, estimate, none, fixed-null$"):
        make_meter("joulemeter", "cpu", meters=table)


def test_the_meter_table_refuses_clashes_and_bad_entries(table: Mapping[str, MeterBuilder]) -> None:
    def build(request: MeterRequest) -> tuple[Meter, list[str]]:
        return NullMeter(clock=request.clock), []

    with pytest.raises(ValueError, match="'nvml' is a built-in energy meter and cannot be replaced"):
        meter_table({**builtin_meters(), "nvml": build})
    with pytest.raises(ValueError, match="non-empty"):
        meter_table({" padded ": build})
    with pytest.raises(ValueError, match="non-empty"):
        meter_table({"": build})
    with pytest.raises(ValueError, match="expected a builder"):
        meter_table({"not-callable": 42})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        table["other"] = build  # type: ignore[index]
    assert meter_table({"fixed-null": build})["fixed-null"] is build  # the merged entry stands, built-ins or not


def test_a_meter_outside_the_table_given_is_unknown(table: Mapping[str, MeterBuilder]) -> None:
    # A session's meter is not in the built-in table, nor in another session's.
    with pytest.raises(ValueError, match="unknown energy meter 'fixed-null'"):
        make_meter("fixed-null", "cpu")
    with pytest.raises(ValueError, match="unknown energy meter 'fixed-null'"):
        make_meter("fixed-null", "cpu", meters=meter_table(builtin_meters()))
    assert tuple(meter_table(builtin_meters())) == ENERGY_CHOICES
    with pytest.raises(ValueError, match="cannot be replaced"):  # the energy package's own builders are not refs
        meter_table(dict(BUILTIN_METERS))


def test_a_built_in_by_name_builds_what_the_energy_package_builds(clock: ManualClock) -> None:
    assert builtin_meters() == {name: BuiltinMeter(name) for name in ENERGY_CHOICES}
    by_name, _ = make_meter("none", "cpu", clock=clock, meters=meter_table(builtin_meters()))
    direct, _ = make_meter("none", "cpu", clock=clock, meters=BUILTIN_METERS)
    assert type(by_name) is type(direct) and by_name.method == direct.method


def test_gathering_the_registry_imports_no_meter_code() -> None:
    code = ("import sys; from pytest_longeff.config.registry import builtin_meters, meter_table; "
            "meter_table(builtin_meters()); "
            "print(sorted(m for m in sys.modules if m.startswith('pytest_longeff.energy')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

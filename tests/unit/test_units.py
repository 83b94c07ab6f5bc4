"""Tests of pytest_longeff.units: parsing and formatting of sizes, durations and energies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_longeff.units import format_size, parse_duration, parse_energy, parse_size

GIB = 2**30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("48GiB", 48 * GIB),
        ("4 GiB", 4 * GIB),
        ("512MiB", 512 * 2**20),
        ("48GB", 48 * 10**9),
        ("1.5GiB", 3 * 2**29),
        ("1024", 1024),
        ("0", 0),
        ("100B", 100),
        ("2kb", 2000),
        ("3 MB", 3 * 10**6),
        ("1TB", 10**12),
        ("8KiB", 8192),
        ("2TiB", 2 * 2**40),
        ("48gib", 48 * GIB),
        ("48GIB", 48 * GIB),
        ("  .5 GiB ", GIB // 2),
        ("1.1GB", 1_100_000_000),
        ("1e3MB", 10**9),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["abc", "", "48G", "-4GiB", "GiB", "4 GiBs", "1,5GiB", "48 Gi B", "nan", "1e99999GB"]
)
def test_parse_size_errors_state_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    message = str(caught.value)
    assert "expected a size like 48GiB, 512MiB, 4GB" in message
    assert "KiB, MiB, GiB, TiB" in message
    assert repr(text) in message


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (47 * GIB, "47.0 GiB"),
        (int(1.5 * GIB), "1.5 GiB"),
        (1024 * 1024 - 1, "1.0 MiB"),
        (3 * 2**40, "3.0 TiB"),
        (5000 * 2**40, "5000.0 TiB"),
        (-2 * GIB, "-2.0 GiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(0, 2**50))
def test_format_then_parse_round_trips_within_the_printed_rounding(size: int) -> None:
    text = format_size(size)
    number, unit = text.split()
    unit_bytes = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    assert abs(parse_size(text) - size) <= 0.05 * unit_bytes + 1
    assert unit == "B" or 1.0 <= float(number) < 1024 or unit == "TiB"


@given(st.integers(0, 10_000), st.sampled_from(["B", "KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB", "TB"]))
def test_parse_size_of_whole_units_is_exact(count: int, unit: str) -> None:
    factor = {
        "B": 1,
        "KiB": 2**10,
        "MiB": 2**20,
        "GiB": 2**30,
        "TiB": 2**40,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "TB": 10**12,
    }[unit]
    assert parse_size(f"{count}{unit}") == count * factor
    assert parse_size(f"{count} {unit.lower()}") == count * factor


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("90", 90.0),
        ("500ms", 0.5),
        ("3min", 180.0),
        ("2 M", 120.0),
        ("0.25S", 0.25),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["abc", "", "1d", "-5s", "5 sec", "1h30m", "s"])
def test_parse_duration_errors_state_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a duration like 60s, 2m, 1\.5h, 500ms or 90 \(seconds\)"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "joules"),
    [
        ("20kJ", 20_000.0),
        ("500J", 500.0),
        ("1.2MJ", 1_200_000.0),
        ("0.5kWh", 1_800_000.0),
        ("10Wh", 36_000.0),
        ("20 kj", 20_000.0),
        ("2MWh", 7.2e9),
        ("3 KWH", 1.08e7),
    ],
)
def test_parse_energy(text: str, joules: float) -> None:
    assert parse_energy(text) == pytest.approx(joules)


@pytest.mark.parametrize("text", ["abc", "", "20", "20kW", "5 cal", "-1J"])
def test_parse_energy_errors_state_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected an energy like 20kJ, 500J, 1\.2MJ, 0\.5kWh or 10Wh"):
        parse_energy(text)


def test_lowercase_mega_is_refused_rather_than_read_as_milli_or_mega() -> None:
    with pytest.raises(ValueError, match="capital M"):
        parse_energy("5mJ")


@given(st.floats(0, 1e6, allow_nan=False), st.sampled_from(["s", "m", "h", "ms"]))
def test_parse_duration_scales_by_unit(value: float, unit: str) -> None:
    text = f"{value:.6f}{unit}"
    expected = float(text[: -len(unit)]) * {"s": 1, "m": 60, "h": 3600, "ms": 0.001}[unit]
    assert parse_duration(text) == pytest.approx(expected)


# --- mutation-testing additions (see docs/validation/mutation.md)


def test_thirty_digit_numbers_are_the_largest_accepted() -> None:
    # Decimal("1e30").adjusted() == 30 == _MAX_DIGITS: still accepted; one more digit is refused as too large.
    assert parse_size("1e30") == 10**30
    with pytest.raises(ValueError, match=r"got '1e31' \(too large\)"):
        parse_size("1e31")
    with pytest.raises(ValueError, match=r"\(too large\)"):
        parse_duration("1" + "0" * 31 + "s")


def test_lowercase_mega_message_says_milli_is_not_accepted() -> None:
    with pytest.raises(ValueError) as caught:
        parse_energy("5mWh")
    assert str(caught.value) == (
        "expected an energy like 20kJ, 500J, 1.2MJ, 0.5kWh or 10Wh; units J, kJ, MJ, Wh, kWh, got '5mWh' "
        "(write MJ or MWh with a capital M for mega; milli units are not accepted)"
    )


def test_parse_size_is_exact_for_every_accepted_number() -> None:
    """Guards the multiplication in Decimal's default 28-digit context, which rounded 29-30 digit numbers."""
    assert parse_size("9" * 30) == 10**30 - 1
    assert parse_size("1" * 29 + "KB") == int("1" * 29) * 1000

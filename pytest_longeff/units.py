"""Parse and format the quantities users type: memory sizes, durations and energies.

Every parser takes the text as the user wrote it (option value, ini value, budget spec) and returns a plain
number in base units: bytes (``int``), seconds (``float``) or joules (``float``). A value that cannot be read
raises ``ValueError`` whose message lists the accepted forms, so the option layer can prefix where the value came
from and pass it on unchanged.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, localcontext

__all__ = ["format_size", "parse_duration", "parse_energy", "parse_size"]

# A plain decimal number, optionally with an exponent ("1.5", ".5", "2e3"). Signs are deliberately not accepted:
# none of these quantities can be negative, and "-4GiB" is more likely a typo than an intent.
_QUANTITY = re.compile(r"^\s*(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-z]*)\s*$")

# Past this many decimal digits the value is surely a typo, and refusing it keeps "1e999999999GiB" from building
# a billion-digit integer.
_MAX_DIGITS = 30

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_FORMS = (
    "a size like 48GiB, 512MiB, 4GB or 1024 (bytes); units B, KB, MB, GB, TB (powers of 1000) "
    "or KiB, MiB, GiB, TiB (powers of 1024)"
)

_DURATION_UNITS: dict[str, Decimal] = {
    "": Decimal(1),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "min": Decimal(60),
    "h": Decimal(3600),
}
_DURATION_FORMS = "a duration like 60s, 2m, 1.5h, 500ms or 90 (seconds); units ms, s, m (or min), h"

# Energy units are matched case-insensitively except for the "M" of megajoules: a lowercase "m" would read as
# milli, and silently turning "5mJ" into five megajoules would be a 10^9 mistake.
_ENERGY_UNITS: dict[str, Decimal] = {
    "j": Decimal(1),
    "kj": Decimal(10**3),
    "wh": Decimal(3600),
    "kwh": Decimal(3_600_000),
}
# Keyed by what follows the capital M.
_ENERGY_MEGA_UNITS: dict[str, Decimal] = {"j": Decimal(10**6), "wh": Decimal(3_600_000_000)}
_ENERGY_FORMS = "an energy like 20kJ, 500J, 1.2MJ, 0.5kWh or 10Wh; units J, kJ, MJ, Wh, kWh"

_BINARY_UNITS: tuple[tuple[str, int], ...] = (
    ("KiB", 2**10),
    ("MiB", 2**20),
    ("GiB", 2**30),
    ("TiB", 2**40),
)


def _split(text: str, forms: str) -> tuple[Decimal, str]:
    """The number and the unit of ``text``, or ``ValueError`` naming ``forms``."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"expected {forms}, got {text!r}")
    number = Decimal(match["number"])
    if number.adjusted() > _MAX_DIGITS:
        raise ValueError(f"expected {forms}, got {text!r} (too large)")
    return number, match["unit"]


def parse_size(text: str) -> int:
    """Bytes in a size such as ``"48GiB"``, ``"4 GiB"``, ``"48GB"`` (10^9), ``"1.5GiB"`` or ``"1024"``.

    Units are case-insensitive; a bare number is bytes. Fractional results are rounded to the nearest byte.
    """
    number, unit = _split(text, _SIZE_FORMS)
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"expected {_SIZE_FORMS}, got {text!r} (unknown unit {unit!r})")
    # Decimal keeps "1.1GB" at exactly 1_100_000_000 bytes, where a float would land one byte off; the context's
    # precision covers every accepted number (up to _MAX_DIGITS digits) times the largest unit exactly.
    with localcontext(prec=_MAX_DIGITS + 40):
        return round(number * factor)


def format_size(n: int) -> str:
    """``n`` bytes as text in binary units with one decimal, e.g. ``"47.0 GiB"``; below 1 KiB, ``"512 B"``.

    ``parse_size(format_size(n))`` equals ``n`` to within the printed rounding (half a tenth of the unit).
    """
    if n < 0:
        return "-" + format_size(-n)
    if n < 1024:
        return f"{n} B"
    for unit, factor in _BINARY_UNITS:
        text = f"{n / factor:.1f}"
        # Promote when rounding would print "1024.0 KiB" rather than "1.0 MiB".
        if float(text) < 1024 or unit == _BINARY_UNITS[-1][0]:
            return f"{text} {unit}"
    raise AssertionError("unreachable: the last unit always returns")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"60s"``, ``"2m"``, ``"1.5h"``, ``"500ms"`` or ``"90"`` (seconds)."""
    number, unit = _split(text, _DURATION_FORMS)
    factor = _DURATION_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"expected {_DURATION_FORMS}, got {text!r} (unknown unit {unit!r})")
    return _finite(number * factor, text, _DURATION_FORMS)


def parse_energy(text: str) -> float:
    """Joules in an energy such as ``"20kJ"``, ``"500J"``, ``"1.2MJ"``, ``"0.5kWh"`` or ``"10Wh"``.

    A unit is required: a bare number is refused because joules and watt-hours differ by 3600x.
    """
    number, unit = _split(text, _ENERGY_FORMS)
    if unit[:1] == "M":
        factor = _ENERGY_MEGA_UNITS.get(unit[1:].lower())
    elif unit[:1] == "m":
        raise ValueError(
            f"expected {_ENERGY_FORMS}, got {text!r} (write MJ or MWh with a capital M for mega; "
            "milli units are not accepted)"
        )
    else:
        factor = _ENERGY_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"expected {_ENERGY_FORMS}, got {text!r} (missing or unknown unit {unit!r})")
    return _finite(number * factor, text, _ENERGY_FORMS)


def _finite(value: Decimal, text: str, forms: str) -> float:
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"expected {forms}, got {text!r} (too large)")
    return result

"""The benchmark matrix: cells, their ids, and how options narrow or widen it.

A cell is ``(family, size, seq_len, task)``. Test ids read ``led-base-4096-gov_report``; every token of an id is
chosen so that ``-k`` selections are exact (no token contains another's name, e.g. no "scaled" or "compiled").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_FAMILIES: tuple[str, ...] = ("led", "bigbird")
DEFAULT_SIZES: tuple[str, ...] = ("base", "large")
DEFAULT_LENGTHS: tuple[int, ...] = (1024, 2048, 3072, 4096)
DEFAULT_TASKS: tuple[str, ...] = ("gov_report", "summ_screen_fd", "qmsum", "qasper")
KNOWN_SIZES: tuple[str, ...] = ("base", "large")
_TOKEN = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True, order=True)
class Cell:
    """One benchmark cell: one model family and size, fine-tuned and evaluated at one input length on one task."""

    family: str
    size: str
    seq_len: int
    task: str

    @property
    def id(self) -> str:
        """The test id, e.g. ``led-base-4096-gov_report``."""
        return f"{self.family}-{self.size}-{self.seq_len}-{self.task}"

    @property
    def model_key(self) -> tuple[str, str]:
        """Cells with the same key share one built model (reset to its initial weights per cell)."""
        return (self.family, self.size)


def build_matrix(
    families: Sequence[str], sizes: Sequence[str], lengths: Sequence[int], tasks: Sequence[str]
) -> list[Cell]:
    """All cells of the product, ordered so that cells sharing a model run together (family, size, then task and
    length), which keeps the model cache small and warm."""
    return [
        Cell(family, size, seq_len, task)
        for family in families
        for size in sizes
        for task in tasks
        for seq_len in lengths
    ]


def parse_name_list(text: str, accepted: Iterable[str], what: str) -> tuple[str, ...]:
    """Parse a comma list of names, each one of ``accepted``; duplicates are dropped, order is kept."""
    accepted = tuple(accepted)
    names = _split(text)
    if not names:
        raise ValueError(f"expected a comma list of {what}, got an empty value; accepted: {', '.join(accepted)}")
    unknown = [n for n in names if n not in accepted]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}")
    return names


def parse_lengths(text: str) -> tuple[int, ...]:
    """Parse a comma list of positive input lengths in tokens, e.g. ``1024,4096``."""
    out: list[int] = []
    for part in _split(text):
        try:
            value = int(part)
        except ValueError:
            raise ValueError(f"expected a comma list of positive integers like 1024,4096, got {part!r}") from None
        if value <= 0:
            raise ValueError(f"expected a comma list of positive integers like 1024,4096, got {part!r}")
        out.append(value)
    if not out:
        raise ValueError("expected a comma list of positive integers like 1024,4096, got an empty value")
    return tuple(dict.fromkeys(out))


def check_id_tokens(names: Iterable[str]) -> None:
    """Refuse names that would break exact ``-k`` selection: lower-case letters, digits and ``_`` only, and no
    name may contain another (``led`` inside ``scaled`` would make ``-k led`` select it)."""
    names = list(dict.fromkeys(names))
    for name in names:
        if not _TOKEN.match(name):
            raise ValueError(f"name {name!r} is not usable in test ids: use lower-case letters, digits and '_'")
    for a in names:
        for b in names:
            if a != b and a in b:
                raise ValueError(f"name {b!r} contains {a!r}: `-k {a}` would also select {b!r} cells")


def _split(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))

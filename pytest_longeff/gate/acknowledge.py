"""Acknowledged regressions: changes a team accepted on purpose, reported as ``acknowledged``, never failed.

``--longeff-acknowledged FILE`` (and ``pytest-longeff compare --acknowledged FILE``) reads TOML (``*.toml``: tomllib
on Python 3.11+, ``tomli`` before) or JSON (anything else)::

    # acknowledged.toml
    [[acknowledged]]
    cell = "led-large-*"              # fnmatch glob over cell ids; "suite" (or "*") also matches the suite verdict
    metric = "train_samples_per_s"    # a gated metric, a window figure or "batch_size"
    reason = "gradient checkpointing on: slower, but fits 4096 tokens (PR #123)"
    until = 2025-09-30                # optional: the entry stops applying after this day

    {"acknowledged": [{"cell": "led-large-*", "metric": "train_samples_per_s", "reason": "...",
                       "until": "2025-09-30"}]}

An entry without a reason, an unknown metric or an unreadable date is an error naming the file and the entry.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_longeff.record.figures import figure
from pytest_longeff.record.io import ReportError, read_json, read_text

#: The id the suite-level verdicts are matched under (an entry ``cell = "suite"`` or ``"*"`` acknowledges them).
SUITE_ID = "suite"


@dataclass(frozen=True)
class Ack:
    """One accepted change: cells matching ``cell`` may regress on ``metric``, for ``reason``, until ``until``."""

    cell: str
    metric: str
    reason: str
    until: dt.date | None = None

    def covers(self, cell_id: str, metric: str, today: dt.date) -> bool:
        """Whether this entry accepts a regression of ``metric`` in ``cell_id`` on ``today``."""
        if self.until is not None and today > self.until:
            return False
        return metric == self.metric and fnmatch.fnmatchcase(cell_id, self.cell)

    def to_dict(self) -> dict[str, Any]:
        """The entry as a table for the report (``until`` as an ISO date, or None)."""
        return {"cell": self.cell, "metric": self.metric, "reason": self.reason,
                "until": None if self.until is None else self.until.isoformat()}


def acknowledged(acks: Sequence[Ack], cell_id: str, metric: str, today: dt.date | None = None) -> Ack | None:
    """The first entry of ``acks`` that accepts ``metric`` regressing in ``cell_id`` (today, by default), or None."""
    day = today or dt.date.today()
    return next((a for a in acks if a.covers(cell_id, metric, day)), None)


def _read(path: Path) -> Any:
    """The file's document: JSON through :func:`pytest_longeff.record.io.read_json` (size, nesting and number
    limits), TOML through tomllib within the same size limit."""
    if path.suffix.lower() != ".toml":
        return read_json(path, "acknowledged file")
    text = read_text(path, "acknowledged file")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 only
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError("TOML needs Python 3.11+ or the tomli package; or write the file as JSON") from None
    try:
        return tomllib.loads(text)
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ValueError("nested too deep to read") from None


def _date(value: Any, where: str) -> dt.date | None:
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{where}: 'until' must be a date like 2025-09-30, got {value!r}")


def _entry(raw: Any, where: str, known_metric: Any) -> Ack:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table with cell, metric, reason (and optional until)")
    unknown = set(raw) - {"cell", "metric", "reason", "until"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))} (accepted: cell, metric, reason, until)")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"{where}: an acknowledged regression needs a reason (why the change is accepted)")
    cell, metric = raw.get("cell", "*"), raw.get("metric")
    if not isinstance(cell, str) or not cell:
        raise ValueError(f"{where}: 'cell' must be a cell id or glob, got {cell!r}")
    if not isinstance(metric, str) or not known_metric(metric):
        raise ValueError(f"{where}: unknown metric {metric!r}")
    return Ack(cell, metric, reason.strip(), _date(raw.get("until"), where))


def load_acknowledged(path: Path) -> tuple[Ack, ...]:
    """The entries of an acknowledged-regressions file; ValueError names the file and what is wrong."""

    def known(name: str) -> bool:
        return name == "batch_size" or figure(name) is not None

    try:
        doc = _read(path)
    except ReportError as exc:  # it names the file itself
        raise ValueError(f"acknowledged file {exc}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"acknowledged file {path}: {exc}") from None
    entries = doc.get("acknowledged") if isinstance(doc, Mapping) else doc
    if not isinstance(entries, list):
        raise ValueError(f"acknowledged file {path}: expected a list of entries under 'acknowledged'")
    return tuple(_entry(raw, f"acknowledged file {path}, entry {n}", known) for n, raw in enumerate(entries, 1))

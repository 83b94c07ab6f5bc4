"""Resuming an interrupted run (``--longeff-resume REPORT``) without redoing the cells it finished.

A cell is carried over when it *passed* in REPORT and REPORT was measured under the same settings (output paths and
the shard aside: :data:`pytest_longeff.record.io.OUTPUT_SETTINGS`), the same software (pytest-longeff version and
code digest, torch, transformers) and the same kind of machine (:func:`pytest_longeff.measure.machine.mismatch` over the
facts known before a session starts). Its record goes into the new report unchanged but for ``"carried_over":
true``; its test is skipped with the reason ``carried over from REPORT`` (skipped, not deselected: the run still
lists every cell, JUnit shows why it did not run, and nothing counts as a failure). Everything else runs.

REPORT may be the file the run writes (``--longeff-json X --longeff-resume X``): it is read once, at configure,
before the first write. A REPORT that does not exist yet carries nothing (so a CI job can always pass both).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_longeff.measure.machine import mismatch
from pytest_longeff.record.io import ReportError, load_report, settings_diff, software_diff
from pytest_longeff.record.sections import is_cell

if TYPE_CHECKING:
    from pytest_longeff.ci.shard import Selection
    from pytest_longeff.config.settings import Settings

#: Machine facts compared before a session starts (``cpu_threads`` is only known once torch is configured).
KIND_KEYS: tuple[str, ...] = ("device", "accelerator", "cpu", "torch", "transformers")
CARRIED_KEY = "carried_over"


@dataclass(frozen=True)
class ResumePlan:
    """The records carried over from ``path`` and why the others are not."""

    path: str
    records: tuple[dict[str, Any], ...] = ()
    note: str = ""
    refused: dict[str, str] = field(default_factory=dict)
    """Cell id -> why a record of REPORT is not carried (not passed; or every cell, when REPORT is incomparable)."""

    @property
    def ids(self) -> frozenset[str]:
        """Ids of the carried cells."""
        return frozenset(str(r["id"]) for r in self.records)

    @property
    def reason(self) -> str:
        """The skip reason of a carried cell's test."""
        return f"carried over from {self.path}"

    def summary(self) -> dict[str, Any]:
        """The report session's ``resumed_from`` section."""
        return {"path": self.path, "carried": len(self.records), "note": self.note}


def device_kind(requested: str) -> str:
    """``cpu`` or ``cuda`` for a ``--longeff-device`` value (``auto`` asks torch, imported only here)."""
    if requested != "auto":
        return requested.split(":")[0]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def current_kind(device: str, light: Mapping[str, Any]) -> dict[str, Any]:
    """This machine's kind facts, as :data:`KIND_KEYS`, before any session starts."""
    kind = device_kind(device)
    facts = {k: light.get(k) for k in KIND_KEYS}
    facts["device"] = kind
    if kind == "cuda":
        import torch

        index = int(device.split(":")[1]) if ":" in device else 0
        facts["accelerator"] = torch.cuda.get_device_name(index)
    return facts


def incomparable(doc: Mapping[str, Any], settings: Mapping[str, Any], software: Mapping[str, Any],
                 kind: Mapping[str, Any]) -> str | None:
    """Why the records of ``doc`` cannot stand for this run's, or None."""
    if (differ := settings_diff(doc.get("settings") or {}, settings)) is not None:
        return f"other settings ({differ})"
    if (differ := software_diff(doc.get("software") or {}, software)) is not None:
        return f"other software or code ({differ})"
    old = {k: (doc.get("machine") or {}).get(k) for k in KIND_KEYS}
    if (differ := mismatch(old, kind)) is not None:
        return f"another kind of machine ({differ})"
    return None


def plan_resume(path: Path, shown_as: str, settings: Mapping[str, Any], software: Mapping[str, Any],
                kind: Mapping[str, Any], cells: Collection[str]) -> ResumePlan:
    """What to carry over from the report at ``path`` into a run of ``cells`` (ids: the matrix in this shard).
    Raises :class:`ReportError` when the file exists but is not a usable report."""
    if not path.exists():
        return ResumePlan(shown_as, note=f"{shown_as} does not exist yet: every cell runs")
    doc = load_report(path)
    ids = [str(r["id"]) for r in doc["records"] if str(r["id"]) in cells]
    why = incomparable(doc, settings, software, kind)
    if why is not None:
        return ResumePlan(shown_as, note=f"nothing carried over: {shown_as} was measured under {why}",
                          refused=dict.fromkeys(ids, why))
    carried, refused = [], {}
    for record in doc["records"]:
        if str(record["id"]) not in cells or not is_cell(record):
            continue
        if record.get("status") == "passed":
            carried.append({**record, CARRIED_KEY: True})
        else:
            refused[str(record["id"])] = f"{record.get('status')} there"
    note = f"{len(carried)} passed cell(s) carried over, {len(refused)} not passed there run again"
    return ResumePlan(shown_as, tuple(carried), note, refused)


def load_plan(resume: str, cwd: Path, settings: Mapping[str, Any], software: Mapping[str, Any],
              light: Mapping[str, Any], cells: Collection[str]) -> ResumePlan:
    """:func:`plan_resume` for the ``--longeff-resume`` value ``resume`` (relative to ``cwd``); ValueError with the
    option's name when the file is unusable."""
    path = Path(resume)
    try:
        kind = current_kind(str(settings.get("device", "auto")), light)
        return plan_resume(path if path.is_absolute() else cwd / path, resume, settings, software, kind, cells)
    except ReportError as exc:
        raise ValueError(f"--longeff-resume: {exc}") from None


def run_plan(settings: Settings, selection: Selection | None, cwd: Path) -> ResumePlan | None:
    """What ``--longeff-resume`` carries over into this run (None without the option), read once, before the run
    writes its report: this run's settings (shard resolved), software and kind of machine against the file's, over
    the matrix cells this shard runs. ValueError naming the option when the file is unusable."""
    if not settings.resume:
        return None
    from pytest_longeff.matrix import build_matrix
    from pytest_longeff.measure.machine import light_facts
    from pytest_longeff.report.roles import header_settings, header_software

    cells = {c.id for c in build_matrix(settings.families, settings.sizes, settings.lengths, settings.tasks)}
    if selection is not None:
        cells &= selection.cells
    light = light_facts(settings.device)
    return load_plan(settings.resume, cwd, header_settings(settings, selection), header_software(light), light, cells)

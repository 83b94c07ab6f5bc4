"""Reports: the JSON report written as each record finishes, predictions, the terminal matrix, CSV and Markdown.

Only the controller writes files, and every write is atomic (temp file, then rename), so a crash loses at most the
cell in flight.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_longeff.record import lookup

SCHEMA_VERSION = 1
STATUSES = ("passed", "failed", "skipped", "error")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    # NaN and infinities are not JSON: an unmeasurable figure is null, never a made-up number.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class JsonReport:
    """The JSON report of one session, rewritten atomically after every record."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.records: list[dict[str, Any]] = []
        self.session: dict[str, Any] = {}
        self.started = time.perf_counter()

    @property
    def predictions_dir(self) -> Path:
        return self.path.parent / "predictions"

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add one finished record (writing its predictions, if any) and rewrite the report."""
        record = dict(record)
        predictions = record.pop("_predictions", None)
        if predictions is not None:
            pred_path = self.predictions_dir / f"{record['id']}.json"
            atomic_write_text(pred_path, json.dumps(predictions, indent=1, ensure_ascii=False) + "\n")
            record["predictions_path"] = os.path.relpath(pred_path)
        else:
            record.setdefault("predictions_path", None)
        record = _jsonable(record)
        self.records = [r for r in self.records if r.get("id") != record["id"]] + [record]
        self.write()
        return record

    def write(self) -> None:
        doc = {"schema_version": SCHEMA_VERSION, **self.header, "session": self.session, "records": self.records}
        atomic_write_text(self.path, json.dumps(_jsonable(doc), indent=1) + "\n")


def load_report(path: Path) -> dict[str, Any]:
    """Read a JSON report (e.g. a baseline), refusing other schema versions with a clear message."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable longeff JSON report ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {doc.get('schema_version') if isinstance(doc, dict) else '?'} "
                         f"is not {SCHEMA_VERSION}")
    return doc


# ---------------------------------------------------------------------------------------------------------------
# Terminal matrix
# ---------------------------------------------------------------------------------------------------------------

NA = "n/a"


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NA
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _energy(record: dict[str, Any], part: str, key: str) -> str:
    if not lookup(record, part, "energy_valid"):
        return NA
    value = lookup(record, part, key)
    if value is None:
        return NA
    method = lookup(record, part, "energy_method") or "?"
    return f"{value:.3g} ({method})"


def _mib(value: Any) -> str:
    return NA if value is None else f"{value / 2**20:.0f}"


def matrix_rows(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The accuracy-efficiency matrix: one row per cell, ``n/a`` where a figure was not measured."""
    headers = ["cell", "status", "score", "batch", "train samp/s (median)", "train J", "infer samp/s", "p50 s/sample",
               "infer J/sample", "train peak MiB", "attention"]
    rows: list[list[str]] = []
    for r in records:
        batch = r.get("batch_size")
        source = lookup(r, "batch_search", "source")
        rows.append([
            r.get("id", "?"),
            r.get("status", "?"),
            _fmt(lookup(r, "accuracy", "score"), ".1f"),
            NA if batch is None else f"{batch} ({source})" if source else str(batch),
            _fmt(lookup(r, "train", "samples_per_s_stats", "median") or lookup(r, "train", "samples_per_s")),
            _energy(r, "train", "energy_j"),
            _fmt(lookup(r, "inference", "samples_per_s")),
            _fmt(lookup(r, "inference", "latency_s", "p50")),
            _energy(r, "inference", "j_per_sample"),
            _mib(lookup(r, "train", "peak_memory_bytes")),
            _fmt(r.get("attention")).split(" ")[0],
        ])
    return headers, rows


def is_cell(record: Mapping[str, Any]) -> bool:
    """Whether ``record`` is a matrix cell's (window records carry ``kind`` "window")."""
    return bool(record.get("kind", "cell") == "cell")


def render_windows(records: Sequence[dict[str, Any]]) -> str:
    """The measured windows of ``longeff_window`` tests: one row per (test, window)."""
    from tabulate import tabulate

    headers = ["test", "status", "window", "repeats", "median s", "energy J", "net J", "peak MiB"]
    rows = [[r.get("id", "?"), r.get("status", "?"), name, str(w.get("repeats")), _fmt(w.get("time_s")),
             _fmt(w.get("energy_j")) + (f" ({w.get('energy_method')})" if w.get("energy_j") is not None else ""),
             _fmt(w.get("energy_net_j")), _mib(w.get("peak_memory_bytes"))]
            for r in records for name, w in (r.get("windows") or {}).items()]
    return str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def render_matrix(records: Sequence[dict[str, Any]]) -> str:
    from tabulate import tabulate

    headers, rows = matrix_rows(records)
    return str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def method_notes(records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """How every figure in the matrix was obtained."""
    measured = [r for r in records if r.get("train")]
    notes = [
        ("score: SCROLLS metric x100 on greedy generations (ROUGE geometric mean; F1 for QA; exact match for "
         "multiple choice / NLI)"),
        (f"time: perf_counter between device-synchronised window edges; train samp/s is the median over steps "
         f"after {settings.get('warmup_steps')} warm-up step(s) (IQR, 95% bootstrap CI and samples / whole window "
         "are in the JSON)"),
        (f"inference: {settings.get('repeats')} pass(es) over the validation examples; each batch is one latency "
         "sample (p50 of per-sample latency)"),
    ]
    methods = sorted({str(lookup(r, part, "energy_method")) for r in measured for part in ("train", "inference")})
    energy_notes = sorted({str(lookup(r, part, "energy_note")) for r in measured for part in ("train", "inference")
                           if not lookup(r, part, "energy_valid") and lookup(r, part, "energy_note")})
    if methods:
        notes.append(f"energy: method {', '.join(methods)}; n/a = not measured" +
                     (f" ({'; '.join(energy_notes)})" if energy_notes else ""))
    if "estimate" in methods:
        notes.append("energy 'estimate' is a model (CPU time x a per-core power constant), not a measurement")
    mem = sorted({str(lookup(r, "train", "memory_method")) for r in measured})
    if mem:
        notes.append(f"memory: {', '.join(mem)} (peak per window)")
    budget = settings.get("train_budget", {})
    spec = budget.get("spec") if isinstance(budget, dict) else None
    notes.append(f"training budget: {spec}; memory budget: {settings.get('memory_budget_bytes', 0) / 2**30:.2f} "
                 f"GiB ({settings.get('memory_budget_source')}); profile {settings.get('profile')}")
    return notes


# ---------------------------------------------------------------------------------------------------------------
# CSV and Markdown
# ---------------------------------------------------------------------------------------------------------------

CSV_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("id", ("id",)), ("family", ("family",)), ("size", ("size",)), ("seq_len", ("seq_len",)), ("task", ("task",)),
    ("profile", ("profile",)), ("status", ("status",)), ("score", ("accuracy", "score")),
    ("batch_size", ("batch_size",)), ("batch_source", ("batch_search", "source")),
    ("train_samples_per_s_median", ("train", "samples_per_s_stats", "median")),
    ("train_time_s", ("train", "time_s")), ("train_energy_j", ("train", "energy_j")),
    ("train_energy_method", ("train", "energy_method")), ("train_peak_memory_bytes", ("train", "peak_memory_bytes")),
    ("train_flops_per_step", ("train", "flops_per_step")),
    ("inference_samples_per_s", ("inference", "samples_per_s")),
    ("inference_latency_p50_s", ("inference", "latency_s", "p50")),
    ("inference_j_per_sample", ("inference", "j_per_sample")),
    ("inference_energy_method", ("inference", "energy_method")),
    ("inference_peak_memory_bytes", ("inference", "peak_memory_bytes")), ("attention", ("attention",)),
)


def render_csv(records: Sequence[dict[str, Any]]) -> str:
    """One row per cell with raw numbers; an unmeasured figure is an empty field, never 0."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([name for name, _ in CSV_COLUMNS])
    for r in records:
        writer.writerow(["" if (v := lookup(r, *path)) is None else v for _, path in CSV_COLUMNS])
    return buf.getvalue()


def render_markdown(records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The terminal matrix as a Markdown table, with how each figure was obtained."""
    from tabulate import tabulate

    headers, rows = matrix_rows(records)
    notes = "\n".join(f"- {n}" for n in method_notes(records, settings))
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return f"# pytest-longeff: accuracy-efficiency matrix\n\n{table}\n\n{notes}\n"

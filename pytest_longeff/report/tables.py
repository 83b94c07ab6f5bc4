"""Reports: the JSON report written as each record finishes, predictions, the terminal matrix, CSV and Markdown.

Only the controller writes files, and every write is atomic (temp file, then rename), so a crash loses at most the
cell in flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_longeff.record.sections import lookup

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


def _energy(record: Mapping[str, Any], part: str, key: str) -> str:
    if not lookup(record, part, "energy_valid"):
        return NA
    value = lookup(record, part, key)
    if value is None:
        return NA
    method = lookup(record, part, "energy_method") or "?"
    return f"{value:.3g} ({method})"


def _mib(value: Any) -> str:
    return NA if value is None else f"{value / 2**20:.0f}"


def _batch(r: Mapping[str, Any]) -> str:
    batch, source = r.get("batch_size"), lookup(r, "batch_search", "source")
    return NA if batch is None else f"{batch} ({source})" if source else str(batch)


def _machine(r: Mapping[str, Any]) -> str:
    from pytest_longeff.report.pareto import machine_label

    return machine_label(r) or NA


@dataclass(frozen=True)
class Column:
    """A matrix column: its header, a shorter header for narrow terminals, and whether a narrow terminal keeps it
    (``keep`` 0) or in which order it gives it up (1 first)."""

    header: str
    short: str
    drop_order: int
    cell: Callable[[Mapping[str, Any]], str]


MATRIX_COLUMNS: tuple[Column, ...] = (
    Column("cell", "cell", 0, lambda r: str(r.get("id", "?"))),
    Column("status", "status", 0, lambda r: str(r.get("status", "?"))),
    Column("score", "score", 0, lambda r: _fmt(lookup(r, "accuracy", "score"), ".1f")),
    Column("batch", "batch", 4, _batch),
    Column("train samp/s (median)", "trn s/s", 0,
           lambda r: _fmt(lookup(r, "train", "samples_per_s_stats", "median") or lookup(r, "train", "samples_per_s"))),
    Column("train J", "trn J", 0, lambda r: _energy(r, "train", "energy_j")),
    Column("infer samp/s", "inf s/s", 3, lambda r: _fmt(lookup(r, "inference", "samples_per_s"))),
    Column("p50 s/sample", "p50 s", 2, lambda r: _fmt(lookup(r, "inference", "latency_s", "p50"))),
    Column("infer J/sample", "inf J/s", 0, lambda r: _energy(r, "inference", "j_per_sample")),
    Column("train peak MiB", "peak MiB", 0, lambda r: _mib(lookup(r, "train", "peak_memory_bytes"))),
    Column("attention", "attn", 1, lambda r: _fmt(r.get("attention")).split(" ")[0]),
)
MACHINE_COLUMN = Column("machine", "machine", 0, _machine)
"""Shown only for reports merged from several machines (see :func:`pareto.machine_label`)."""


def _columns(records: Sequence[Mapping[str, Any]]) -> list[Column]:
    from pytest_longeff.report.pareto import merged

    return [*MATRIX_COLUMNS[:2], MACHINE_COLUMN, *MATRIX_COLUMNS[2:]] if merged(records) else list(MATRIX_COLUMNS)


def matrix_rows(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The accuracy-efficiency matrix: one row per cell, ``n/a`` where a figure was not measured."""
    columns = _columns(records)
    return [c.header for c in columns], [[c.cell(r) for c in columns] for r in records]


def _table(columns: Sequence[Column], records: Sequence[Mapping[str, Any]], short: bool) -> str:
    from tabulate import tabulate

    headers = [c.short if short else c.header for c in columns]
    rows = [[c.cell(r) for c in columns] for r in records]
    return str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def _width(table: str) -> int:
    return max((len(line) for line in table.splitlines()), default=0)


def render_matrix(records: Sequence[dict[str, Any]], width: int | None = None, verbose: bool = False) -> str:
    """The matrix for the terminal. With ``width`` (the terminal's columns) and not ``verbose``, columns are given
    up in their drop order, then headers shortened, until the table fits; the most important columns (cell,
    status, score, train samples/s, train J, inference J/sample, peak memory) always stay, and a last line names
    what was left out (every column is in the JSON, CSV and Markdown reports). ``width=None`` shows everything."""
    columns = _columns(records)
    table = _table(columns, records, short=False)
    if verbose or width is None or _width(table) <= width:
        return table
    shown, short = list(columns), False
    for drop in sorted({c.drop_order for c in columns if c.drop_order}):
        shown = [c for c in shown if c.drop_order != drop]
        table = _table(shown, records, short=False)
        if _width(table) <= width:
            break
    else:
        short = True
        table = _table(shown, records, short=True)
    hidden = [c.header for c in columns if c not in shown]
    note = (f"({len(hidden)} column(s) left out at width {width}: {', '.join(hidden)}; -v shows them; "
            "all are in the .csv/.md reports)")
    return f"{table}\n{note}" if hidden or short else table


def render_windows(records: Sequence[dict[str, Any]]) -> str:
    """The measured windows of ``longeff_window`` tests: one row per (test, window)."""
    from tabulate import tabulate

    headers = ["test", "status", "window", "repeats", "median s", "energy J", "net J", "peak MiB"]
    rows = [[r.get("id", "?"), r.get("status", "?"), name, str(w.get("repeats")), _fmt(w.get("time_s")),
             _fmt(w.get("energy_j")) + (f" ({w.get('energy_method')})" if w.get("energy_j") is not None else ""),
             _fmt(w.get("energy_net_j")), _mib(w.get("peak_memory_bytes"))]
            for r in records for name, w in (r.get("windows") or {}).items()]
    methods = sorted({str(w.get("memory_method")) for r in records for w in (r.get("windows") or {}).values()})
    notes = ["  median s: perf_counter between device-synchronised window edges, median over repeats (CI in the JSON)",
             "  energy J: the session's meter over each repeat, median; net J: less the idle draw; n/a = not measured",
             (f"  peak MiB: memory the block added ({', '.join(methods)}); on the CPU a block served from freed heap "
              "memory adds 0")]
    return "\n".join([str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)), *notes])


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
    machines = sorted({_machine(r) for r in records} - {NA})
    if len(machines) > 1:
        notes.append(f"machine: records merged from {len(machines)} machine(s) ({', '.join(machines)}); compare "
                     "costs only within one machine")
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
    """One row per cell with raw numbers; an unmeasured figure is an empty field, never 0. The last column names
    the machine of a record merged from several machines (empty otherwise)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([name for name, _ in CSV_COLUMNS] + ["machine"])
    for r in records:
        row: list[Any] = ["" if (v := lookup(r, *path)) is None else v for _, path in CSV_COLUMNS]
        writer.writerow([*row, "" if _machine(r) == NA else _machine(r)])
    return buf.getvalue()


def render_markdown(records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The terminal matrix as a Markdown table, with how each figure was obtained."""
    from tabulate import tabulate

    headers, rows = matrix_rows(records)
    notes = "\n".join(f"- {n}" for n in method_notes(records, settings))
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return f"# pytest-longeff: accuracy-efficiency matrix\n\n{table}\n\n{notes}\n"

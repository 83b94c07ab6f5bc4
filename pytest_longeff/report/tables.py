"""Reports: the terminal matrix, CSV and Markdown, every figure column taken from the table of figures
(:data:`pytest_longeff.record.figures.FIGURES`): a column's name, and the number under it, are the figure's
everywhere (JSON, CSV, Markdown, the terminal, JUnit, CI outputs, plots and the page). Besides figures the tables
hold identity columns (which cell, its status) and qualifiers (how a figure was obtained: the energy meter, the
batch's source), never a second number under a figure's name.

Only the controller writes files, and every write is atomic (temp file, then rename), so a crash loses at most the
cell in flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_longeff.record.figures import FIGURES, FIGURES_BY_NAME, Figure
from pytest_longeff.record.sections import lookup
from pytest_longeff.text import for_terminal, markdown_cell, markdown_text, safe_lines

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


def _machine(r: Mapping[str, Any]) -> str:
    from pytest_longeff.report.pareto import machine_label

    return machine_label(r) or NA


def figure_text(fig: Figure, record: Mapping[str, Any]) -> str:
    """``fig``'s value in ``record`` as the matrix shows it: ``n/a`` where unmeasured, bytes in MiB, an energy
    figure with its meter, the batch with how it was chosen, the score to one decimal, the rest to 3 digits."""
    value = fig.value(record)
    if value is None:
        return NA
    if fig.unit == "B":
        return f"{value / 2**20:.0f}"
    if fig.energy_part is not None:
        return f"{value:.3g} ({lookup(record, *fig.energy_part.split('.'), 'energy_method') or '?'})"
    if fig.name == "batch_size":
        source = lookup(record, "batch_search", "source")
        return f"{value:.0f} ({source})" if source else f"{value:.0f}"
    return _fmt(value, ".1f" if fig.name == "score" else ".3g")


@dataclass(frozen=True)
class Column:
    """A matrix column: its header, a shorter header for narrow terminals, and whether a narrow terminal keeps it
    (``drop_order`` 0) or in which order it gives it up (1 first); ``figure`` names the figure of
    :data:`FIGURES` it shows (None for an identity column)."""

    header: str
    short: str
    drop_order: int
    cell: Callable[[Mapping[str, Any]], str]
    figure: str | None = None


def figure_column(name: str, drop_order: int = 0) -> Column:
    """The matrix column of the figure ``name``: header, short header and value all from :data:`FIGURES`."""
    fig = FIGURES_BY_NAME[name]
    return Column(fig.header, fig.short_header, drop_order, lambda r: figure_text(fig, r), fig.name)


MATRIX_FIGURES: tuple[tuple[str, int], ...] = (
    ("score", 0), ("batch_size", 4), ("train_samples_per_s", 0), ("train_energy_j", 0),
    ("inference_samples_per_s", 3), ("inference_latency_p50_s", 2), ("inference_j_per_sample", 0),
    ("train_peak_memory_bytes", 0), ("prefill_tokens_per_s", 1), ("decode_tokens_per_s", 1),
)
"""The figures the matrix shows, with the order in which a narrow terminal gives them up (0: never)."""
MATRIX_COLUMNS: tuple[Column, ...] = (
    Column("cell", "cell", 0, lambda r: str(r.get("id", "?"))),
    Column("status", "status", 0, lambda r: str(r.get("status", "?"))),
    *(figure_column(name, drop) for name, drop in MATRIX_FIGURES),
    Column("attention", "attn", 1, lambda r: _fmt(r.get("attention")).split(" ")[0]),
)
MACHINE_COLUMN = Column("machine", "machine", 0, _machine)
"""Shown only for reports merged from several machines (see :func:`pareto.machine_label`)."""


def matrix_columns(records: Sequence[Mapping[str, Any]]) -> list[Column]:
    """The matrix's columns for ``records``: :data:`MATRIX_COLUMNS`, with the machine after the status in a report
    merged from several machines."""
    from pytest_longeff.report.pareto import merged

    return [*MATRIX_COLUMNS[:2], MACHINE_COLUMN, *MATRIX_COLUMNS[2:]] if merged(records) else list(MATRIX_COLUMNS)


def matrix_rows(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The accuracy-efficiency matrix: one row per cell, ``n/a`` where a figure was not measured."""
    columns = matrix_columns(records)
    return [c.header for c in columns], [[c.cell(r) for c in columns] for r in records]


def _table(columns: Sequence[Column], records: Sequence[Mapping[str, Any]], short: bool) -> str:
    from tabulate import tabulate

    headers = [c.short if short else c.header for c in columns]
    rows = [[for_terminal(c.cell(r)) for c in columns] for r in records]
    return safe_lines(str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)))


def _width(table: str) -> int:
    return max((len(line) for line in table.splitlines()), default=0)


def render_matrix(records: Sequence[dict[str, Any]], width: int | None = None, verbose: bool = False) -> str:
    """The matrix for the terminal. With ``width`` (the terminal's columns) and not ``verbose``, columns are given
    up in their drop order, then headers shortened, until the table fits; the most important columns (cell,
    status, score, train samples/s, train J, inference J/sample, peak memory) always stay, and a last line names
    what was left out (every column is in the JSON, CSV and Markdown reports). ``width=None`` shows everything.
    Every value from the records passes through :func:`text.for_terminal`, so a cell id or a status from a report
    can neither break a line nor start a workflow command."""
    columns = matrix_columns(records)
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


def _mib(value: Any) -> str:
    return NA if value is None else f"{value / 2**20:.0f}"


def render_windows(records: Sequence[dict[str, Any]]) -> str:
    """The measured windows of ``longeff_window`` tests: one row per (test, window), every value from the records
    through :func:`text.for_terminal`."""
    from tabulate import tabulate

    headers = ["test", "status", "window", "repeats", "median s", "energy J", "net J", "peak MiB"]
    rows = [[for_terminal(cell) for cell in (
        r.get("id", "?"), r.get("status", "?"), name, str(w.get("repeats")), _fmt(w.get("time_s")),
        _fmt(w.get("energy_j")) + (f" ({w.get('energy_method')})" if w.get("energy_j") is not None else ""),
        _fmt(w.get("energy_net_j")), _mib(w.get("peak_memory_bytes")))]
            for r in records for name, w in (r.get("windows") or {}).items()]
    methods = sorted({for_terminal(w.get("memory_method")) for r in records
                      for w in (r.get("windows") or {}).values()})
    notes = ["  median s: perf_counter between device-synchronised window edges, median over repeats (CI in the JSON)",
             "  energy J: the session's meter over each repeat, median; net J: less the idle draw; n/a = not measured",
             (f"  peak MiB: memory the block added ({', '.join(methods)}); on the CPU a block served from freed heap "
              "memory adds 0")]
    return safe_lines("\n".join([str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)),
                                 *notes]))


def method_notes(records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """How every figure in the matrix was obtained, one note a line. Each note passes through
    :func:`text.for_terminal` (the records' and settings' values in it may hold anything), so it is one line in
    every medium; a writer to Markdown or HTML escapes it again for that medium."""
    measured = [r for r in records if r.get("train")]
    notes = [
        ("score: SCROLLS metric x100 on greedy generations (ROUGE geometric mean; F1 for QA; exact match for "
         "multiple choice / NLI)"),
        (f"time: perf_counter between device-synchronised window edges; train samp/s (median) is "
         f"train_samples_per_s, the median over steps after {settings.get('warmup_steps')} warm-up step(s); infer "
         "samp/s (median) is inference_samples_per_s, the median over generate() batches (95% bootstrap CIs in the "
         "JSON; the whole-window rates are train_window_samples_per_s and inference_window_samples_per_s in the "
         "CSV)"),
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
    memory = settings.get("memory_budget_bytes")
    memory_text = f"{memory / 2**30:.2f} GiB" if isinstance(memory, (int, float)) else "not recorded"
    notes.append(f"training budget: {spec}; memory budget: {memory_text} "
                 f"({settings.get('memory_budget_source')}); profile {settings.get('profile')}")
    return [for_terminal(note) for note in notes]


# ---------------------------------------------------------------------------------------------------------------
# CSV and Markdown
# ---------------------------------------------------------------------------------------------------------------

RecordPath = tuple[str, ...]
CSV_IDENTITY: tuple[tuple[str, RecordPath], ...] = (
    ("id", ("id",)), ("family", ("family",)), ("size", ("size",)), ("seq_len", ("seq_len",)), ("task", ("task",)),
    ("profile", ("profile",)), ("status", ("status",)),
)
"""The columns that say which cell a row is and how it ended (no figure among them)."""
CSV_QUALIFIERS: Mapping[str, tuple[tuple[str, RecordPath], ...]] = {
    "score": (("accuracy_meaningful", ("accuracy_meaningful",)),),
    "batch_size": (("batch_source", ("batch_search", "source")),),
    "train_energy_j": (("train_energy_method", ("train", "energy_method")),),
    "inference_energy_j": (("inference_energy_method", ("inference", "energy_method")),),
}
"""Words beside a figure's column that say how it was obtained (whether the score ranks models, the batch's
source, the energy meter); never a number."""
CSV_TRAILING: tuple[tuple[str, RecordPath], ...] = (("attention", ("attention",)),)


def _csv_columns() -> tuple[tuple[str, RecordPath], ...]:
    columns = list(CSV_IDENTITY)
    for fig in FIGURES:
        columns += [(fig.name, fig.path), *CSV_QUALIFIERS.get(fig.name, ())]
    return (*columns, *CSV_TRAILING)


CSV_COLUMNS: tuple[tuple[str, RecordPath], ...] = _csv_columns()
"""The CSV's columns as (name, path in the record): the identity columns, then every figure of :data:`FIGURES`
under its own name (each followed by its qualifiers), then the attention; ``machine`` comes last."""


def _csv_value(name: str, path: RecordPath, record: Mapping[str, Any]) -> Any:
    fig = FIGURES_BY_NAME.get(name)
    if fig is not None:  # the figure's own number (an int stays an int), or empty where unmeasured
        return "" if fig.value(record) is None else lookup(record, *path)
    value = lookup(record, *path)
    return "" if value is None else value


def render_csv(records: Sequence[dict[str, Any]]) -> str:
    """One row per cell with raw numbers; an unmeasured figure is an empty field, never 0. The last column names
    the machine of a record merged from several machines (empty otherwise)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([name for name, _ in CSV_COLUMNS] + ["machine"])
    for r in records:
        row = [_csv_value(name, path, r) for name, path in CSV_COLUMNS]
        writer.writerow([*row, "" if _machine(r) == NA else _machine(r)])
    return buf.getvalue()


def column_legend(columns: Sequence[Column]) -> list[str]:
    """What each figure column of the matrix is: its header, the figure's name (the name in the CSV, JSON, JUnit
    and the gate), unit and method."""
    figures = [FIGURES_BY_NAME[c.figure] for c in columns if c.figure is not None]
    return [f"{f.header}: {f.name} ({f.unit}), {f.method}" for f in figures]


def render_markdown(records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The terminal matrix as a Markdown table, what each column is and how each figure was obtained; every
    value from the records and settings escaped by :func:`text.markdown_cell` (table) or
    :func:`text.markdown_text` (notes)."""
    from tabulate import tabulate

    headers, rows = matrix_rows(records)
    legend = "\n".join(f"- {line}" for line in column_legend(matrix_columns(records)))
    notes = "\n".join(f"- {markdown_text(n)}" for n in method_notes(records, settings))
    cells = [[markdown_cell(value) for value in row] for row in rows]
    table = tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True)
    return (f"# pytest-longeff: accuracy-efficiency matrix\n\n{table}\n\n## Columns\n\n{legend}\n\n"
            f"## Methods\n\n{notes}\n")

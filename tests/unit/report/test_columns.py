"""One name, one number: every figure column of the CSV, the terminal matrix, the Markdown table and the page is a
figure of the one table :data:`FIGURES`, under its name, holding that figure's number; the other columns say which
cell a row is or how a figure was obtained, and never hold a figure."""

from __future__ import annotations

import csv
import io
import re

from support.report_variants import matrix, merged, skipped_and_failed, small, with_energy

from pytest_longeff.record.figures import FIGURES, FIGURES_BY_NAME, GATED
from pytest_longeff.record.sections import lookup
from pytest_longeff.report import tables
from pytest_longeff.report.page import render_html
from pytest_longeff.report.tables import (
    CSV_COLUMNS,
    CSV_IDENTITY,
    CSV_QUALIFIERS,
    CSV_TRAILING,
    MATRIX_COLUMNS,
    figure_text,
    matrix_columns,
    matrix_rows,
    render_csv,
    render_markdown,
)

#: The matrix's columns that are not figures: which cell, how it ended, its attention pattern, its machine.
MATRIX_IDENTITY = {"cell", "status", "attention", "machine"}
VARIANTS = (small(), with_energy(matrix(8)), skipped_and_failed(), merged())


def _words() -> set[str]:
    """Every CSV column that is not a figure."""
    return {n for n, _ in (*CSV_IDENTITY, *CSV_TRAILING, *(q for qs in CSV_QUALIFIERS.values() for q in qs))}


def test_every_csv_column_is_a_figure_or_says_which_cell_or_how() -> None:
    header = next(csv.reader(io.StringIO(render_csv(small()["records"]))))
    figures = [name for name in header if name in FIGURES_BY_NAME]
    assert figures == [f.name for f in FIGURES]  # every figure, under its own name, in the table's order
    assert set(header) - set(figures) == _words() | {"machine"}
    paths = {f.path for f in FIGURES}
    for name, path in CSV_COLUMNS:  # no column besides the figure's own holds a figure's number
        assert (path in paths) == (name in FIGURES_BY_NAME), name
        if name in FIGURES_BY_NAME:
            assert path == FIGURES_BY_NAME[name].path, name
    assert not _words() & {f.header for f in FIGURES}


def test_every_matrix_and_markdown_column_that_is_a_figure_is_a_figures_name() -> None:
    for records in (v["records"] for v in VARIANTS):
        for column in matrix_columns(records):
            if column.figure is None:
                assert column.header in MATRIX_IDENTITY, column.header
                continue
            fig = FIGURES_BY_NAME[column.figure]
            assert (column.header, column.short) == (fig.header, fig.short_header)
            assert all(column.cell(r) == figure_text(fig, r) for r in records)
    headers = {c.header for c in MATRIX_COLUMNS}
    assert not (headers - MATRIX_IDENTITY) - {f.header for f in FIGURES}
    assert len({f.header for f in FIGURES}) == len(FIGURES)  # a header names one figure
    doc = small()
    text = render_markdown(doc["records"], doc["settings"])
    table_head = next(line for line in text.splitlines() if line.startswith("| cell"))
    assert [h.strip() for h in table_head.strip("|").split("|")] == matrix_rows(doc["records"])[0]
    for column in (c for c in MATRIX_COLUMNS if c.figure):  # the legend names each column's figure
        assert f"- {column.header}: {column.figure} (" in text


def test_the_csv_holds_each_figures_own_number() -> None:
    for records in (v["records"] for v in VARIANTS):
        rows = list(csv.DictReader(io.StringIO(render_csv(records))))
        for r, row in zip(records, rows, strict=True):
            for fig in FIGURES:
                value = fig.value(r)
                assert (row[fig.name] == "") == (value is None), (r.get("id"), fig.name)
                if value is not None:
                    assert float(row[fig.name]) == value, (r.get("id"), fig.name)


def test_the_inference_rate_is_the_gated_median_everywhere_and_the_window_rate_has_its_own_name() -> None:
    """The bug: the CSV and the terminal showed the whole-window rate as ``inference_samples_per_s``."""
    records = matrix(4)["records"]  # the whole-window rate differs from the per-batch median in these cells
    gated, window = GATED["inference_samples_per_s"], FIGURES_BY_NAME["inference_window_samples_per_s"]
    assert not window.gated and all(gated.value(r) != window.value(r) for r in records)
    rows = list(csv.DictReader(io.StringIO(render_csv(records))))
    for r, row in zip(records, rows, strict=True):
        assert float(row["inference_samples_per_s"]) == lookup(r, "inference", "samples_per_s_stats", "median")
        assert float(row["inference_window_samples_per_s"]) == lookup(r, "inference", "samples_per_s")
    headers, cells = matrix_rows(records)
    column = headers.index(gated.header)
    assert [row[column] for row in cells] == [f"{gated.value(r):.3g}" for r in records]
    page = render_html({**matrix(4), "records": records}, draw_plots=False)
    assert f'title="inference_samples_per_s (samples/s): {gated.method}"' in page.replace("&#x27;", "'")


def test_the_page_lists_every_figure_with_its_header_and_whether_it_is_gated() -> None:
    page = render_html(small(), draw_plots=False)
    methods = page.split('id="figure-methods"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>[^<]*</td><td>[^<]*</td><td>(yes|no)</td>", methods)
    assert [(n, h, g == "yes") for n, h, g in rows] == [(f.name, f.header, f.gated) for f in FIGURES]


def test_the_matrix_shows_energy_with_its_meter_and_memory_in_mib() -> None:
    r = with_energy(small())["records"][0]
    assert figure_text(FIGURES_BY_NAME["train_energy_j"], r) == "40 (rapl)"
    mib = f"{r['train']['peak_memory_bytes'] / 2**20:.0f}"
    assert figure_text(FIGURES_BY_NAME["train_peak_memory_bytes"], r) == mib
    assert figure_text(FIGURES_BY_NAME["batch_size"], r) == f"{r['batch_size']} (searched)"
    assert figure_text(FIGURES_BY_NAME["train_energy_j"], small()["records"][0]) == tables.NA

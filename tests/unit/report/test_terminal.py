"""The terminal matrix fits the terminal; -v shows everything; n/a for unmeasured; CSV/Markdown keep every column."""

from __future__ import annotations

import csv
import io

from support.report_variants import matrix, merged, skipped_and_failed, small, with_energy

from pytest_longeff.report.tables import matrix_rows, method_notes, render_csv, render_markdown, render_matrix

ESSENTIAL = ("cell", "status", "score")


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines() if not line.startswith("("))


def test_old_call_and_verbose_show_every_column() -> None:
    records = skipped_and_failed()["records"]
    headers, _ = matrix_rows(records)
    full = render_matrix(records)
    assert all(h in full for h in headers) and "left out" not in full
    assert render_matrix(records, width=60, verbose=True) == full
    assert render_matrix(records, width=10_000) == full


def test_narrow_terminal_keeps_the_important_columns() -> None:
    records = with_energy(matrix(8))["records"]
    full = render_matrix(records)
    narrow = render_matrix(records, width=150)
    assert _widest(narrow) <= 150 < _widest(full)
    head = narrow.splitlines()[0]
    for h in (*ESSENTIAL, "train samp/s (median)", "train J", "infer J/sample", "train peak MiB"):
        assert h in head
    assert "attention" not in head and "attention" in narrow.splitlines()[-1]  # named in the last line
    assert "-v shows them" in narrow


def test_very_narrow_terminal_shortens_headers_but_keeps_the_figures() -> None:
    records = small()["records"]
    text = render_matrix(records, width=40)
    head = text.splitlines()[0]
    assert "trn s/s" in head and "inf J/s" in head and "peak MiB" in head and "batch" not in head
    assert "n/a" in text  # no energy meter: never 0


def test_na_not_zero_and_methods_unchanged() -> None:
    doc = skipped_and_failed()
    text = render_matrix(doc["records"], width=100)
    skipped = next(line for line in text.splitlines() if line.startswith("led-base-4096"))
    assert skipped.split()[1] == "skipped" and skipped.count("n/a") >= 5 and " 0 " not in skipped
    notes = method_notes(doc["records"], doc["settings"])
    assert any(n.startswith("energy: method none; n/a = not measured") for n in notes)


def test_merged_report_has_a_machine_column_everywhere() -> None:
    from pytest_longeff.report.pareto import cells

    doc = merged()
    records = cells(doc)
    assert "machine" in render_matrix(records, width=80).splitlines()[0]
    rows = list(csv.DictReader(io.StringIO(render_csv(records))))
    assert {r["machine"] for r in rows} == {"m1", "m2"}
    assert "| machine" in render_markdown(records, doc["settings"])
    assert any(n.startswith("machine: records merged from 2") for n in method_notes(records, doc["settings"]))
    rows = list(csv.DictReader(io.StringIO(render_csv(small()["records"]))))
    assert {r["machine"] for r in rows} == {""} and all(r["train_energy_j"] == "" for r in rows)

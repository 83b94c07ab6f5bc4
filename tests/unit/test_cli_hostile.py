"""Every ``pytest-longeff`` command over report files mutated at random from valid ones: deep nesting, huge
integers, ``1e999``, wrong types, strings that try to start GitHub workflow commands, out-of-range indexes, keys
deleted, text cut short.

Run in this process with ``PYTEST_LONGEFF_DEBUG=1``, so the commands' last-resort guard (an unexpected exception as
one line and exit 2) re-raises: a file the reader lets through but a command cannot work on fails here as the
exception it is. What must hold: no exception escapes; a file the loader refuses is exit 2; exit 1 only for a file
that loads and a regression ``compare`` found or a merge it refused for a listed reason; and no output line starts
a workflow command (``::``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_longeff.ab.judge import judge_cells, parse_rules
from pytest_longeff.ab.report import KIND
from pytest_longeff.ab.report import SCHEMA_VERSION as AB_SCHEMA_VERSION
from pytest_longeff.ab.report import read_ab
from pytest_longeff.cli import DEBUG_ENV, main
from pytest_longeff.record.io import load_report

TINY_RUN = Path(__file__).parents[2] / "docs" / "assets" / "tiny-run.json"
PAYLOAD = "x\n::add-mask::pwned\n::error::pwned\r::warning::x"
#: Values JSON cannot carry from Python (or that ``json.dumps`` refuses): written as a marker, then put in the text.
TEXT_VALUES = {"@deep@": "[" * 1000 + "]" * 1000, "@digits@": "9" * 5000, "@inf@": "1e999", "@nan@": "NaN",
               "@subnormal@": "5e-324"}
HOSTILE: list[Any] = [*TEXT_VALUES, 10**40, 7, -1, 0, 1.5, 1e29, "", "../../x", "a/b", PAYLOAD, "::error::x", True,
                      None, [], {}, [1, 2, 3], [PAYLOAD], {"a": PAYLOAD}, {"index": 9, "count": 2}]
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

Doc = dict[str, Any]
Edit = tuple[str, Any, Any]


def _tiny(first: int, last: int) -> Doc:
    doc: Doc = json.loads(TINY_RUN.read_text(encoding="utf-8"))
    doc["records"] = doc["records"][first:last]
    return doc


def _ab() -> Doc:
    """A small A/B report as ``pytest-longeff ab`` writes it: one cell, three pairs of rounds, judged."""
    cells: Doc = {"led-base-1024-qasper": {"rounds": [
        {"pair": pair, "round": 0, "window": window, "order": "AB", "base": {"units": units, "time_s": 0.25},
         "head": {"units": units, "time_s": 0.25 * (1 + 0.01 * pair)}}
        for pair in range(3) for window, units in (("train", 8), ("inference", 40))]}}
    doc: Doc = {"kind": KIND, "schema_version": AB_SCHEMA_VERSION, "sides": {"base": {}, "head": {}},
                "pairs_done": 3, "wall_s": 1.0, "cells": cells}
    return {**doc, **judge_cells(parse_rules("train_samples_per_s:10%"), cells, final=True)}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a document: each key of each object, each index of each list."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, sub in items:
        yield (*prefix, key)
        yield from _paths(sub, (*prefix, key))


def edits(doc: Doc) -> st.SearchStrategy[list[Edit]]:
    """One to three edits of ``doc``: a value replaced by a hostile one, a key or item deleted, the text cut."""
    places = sorted(_paths(doc), key=repr)
    one = st.one_of(st.tuples(st.just("replace"), st.sampled_from(places), st.sampled_from(HOSTILE)),
                    st.tuples(st.just("delete"), st.sampled_from(places), st.none()),
                    st.tuples(st.just("cut"), st.floats(0.0, 0.99), st.none()))
    return st.lists(one, min_size=1, max_size=3)


def apply(doc: Doc, changes: list[Edit]) -> str:
    """The file text of ``doc`` after ``changes`` (edits of a place that an earlier edit removed are skipped)."""
    doc, cut = copy.deepcopy(doc), None
    for kind, where, value in changes:
        if kind == "cut":
            cut = where
            continue
        parent: Any = doc
        try:
            for key in where[:-1]:
                parent = parent[key]
            if kind == "delete":
                del parent[where[-1]]
            else:
                parent[where[-1]] = copy.deepcopy(value)
        except (KeyError, IndexError, TypeError):
            continue
    text = json.dumps(doc, indent=1)
    for marker, literal in TEXT_VALUES.items():
        text = text.replace(json.dumps(marker), literal)
    return text if cut is None else text[: int(len(text) * cut)]


def run(argv: list[str]) -> tuple[int, str]:
    """``pytest-longeff ARGV`` in this process: its exit code and everything it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv)
    return code, out.getvalue()


def _usable(load: Callable[[Path], Any], path: Path) -> bool:
    try:
        load(path)
    except ValueError:
        return False
    return True


def check_run(argv: list[str], usable: bool, legitimate_refusal: Callable[[str], bool]) -> None:
    code, output = run(argv)
    assert code in (0, 1, 2, 3), (argv[0], code, output[-2000:])
    if not usable:
        assert code == 2, (argv[0], code, output[-2000:])
    if code == 1:
        assert usable and legitimate_refusal(output), (argv[0], output[-2000:])
    starts = [line for line in output.splitlines() if line.lstrip().startswith("::")]
    assert not starts, (argv[0], starts)


@pytest.fixture
def debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last-resort guard off (exceptions re-raised) and no GitHub Actions annotations."""
    monkeypatch.setenv(DEBUG_ENV, "1")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


@pytest.fixture
def merge_without_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """merge's figures skipped as on an installation without matplotlib (``plot`` draws them; drawing them for
    every example would take minutes)."""
    from pytest_longeff.report.plots import draw

    def no_matplotlib(*args: Any, **kwargs: Any) -> list[Path]:
        raise draw.MissingMatplotlib("matplotlib left out of this test")

    monkeypatch.setattr(draw, "render_all", no_matplotlib)


REPORT, OTHER_SHARD = _tiny(0, 2), _tiny(2, 4)


def _regression(output: str) -> bool:
    return "longeff gate: REGRESSION" in output


def _merge_refused(output: str) -> bool:
    # merge_docs's docstring: other settings, software, code or machine kind, a cell twice, cells missing.
    return "pytest-longeff merge: refused:" in output


@SETTINGS
@given(changes=edits(REPORT))
def test_report_commands_never_crash_and_an_unusable_file_is_exit_2(debugging: None, merge_without_figures: None,
                                                                     changes: list[Edit]) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bad, valid, other = tmp / "bad.json", tmp / "valid.json", tmp / "other.json"
        bad.write_text(apply(REPORT, changes), encoding="utf-8")
        valid.write_text(json.dumps(REPORT), encoding="utf-8")
        other.write_text(json.dumps(OTHER_SHARD), encoding="utf-8")
        usable = _usable(load_report, bad)
        check_run(["show", str(bad)], usable, lambda out: False)
        check_run(["merge", str(bad), str(other), "-o", str(tmp / "out" / "merged.json"), "--allow-missing"], usable,
                  _merge_refused)
        check_run(["compare", str(bad), str(valid)], usable, _regression)
        check_run(["compare", str(valid), str(bad)], usable, _regression)


PLOTTED = _tiny(0, 1)


@settings(SETTINGS, max_examples=8)
@given(changes=edits(PLOTTED))
def test_plot_never_crashes_and_an_unusable_file_is_exit_2(debugging: None, changes: list[Edit]) -> None:
    pytest.importorskip("matplotlib")
    with tempfile.TemporaryDirectory() as tmp_name:
        bad = Path(tmp_name) / "bad.json"
        bad.write_text(apply(PLOTTED, changes), encoding="utf-8")
        check_run(["plot", str(bad), "-o", str(Path(tmp_name) / "plots")], _usable(load_report, bad), lambda out: False)


AB_REPORT = _ab()


@settings(SETTINGS, max_examples=100)
@given(changes=edits(AB_REPORT))
def test_ab_commands_never_crash_and_an_unusable_file_is_exit_2(debugging: None, changes: list[Edit]) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        bad = Path(tmp_name) / "ab.json"
        bad.write_text(apply(AB_REPORT, changes), encoding="utf-8")
        usable = _usable(read_ab, bad)
        check_run(["show", str(bad)], usable, lambda out: False)
        check_run(["compare", str(bad), "--fail-on", "train_samples_per_s:1%"], usable,
                  lambda out: "regression" in out.lower())


def test_the_unchanged_documents_are_usable_and_their_commands_succeed(debugging: None, merge_without_figures: None,
                                                                        tmp_path: Path) -> None:
    """The fuzz tests start from valid documents: without an edit every command succeeds (so a refusal above comes
    from the edit)."""
    (tmp_path / "r.json").write_text(apply(REPORT, []), encoding="utf-8")
    (tmp_path / "o.json").write_text(json.dumps(OTHER_SHARD), encoding="utf-8")
    (tmp_path / "ab.json").write_text(apply(AB_REPORT, []), encoding="utf-8")
    assert run(["show", str(tmp_path / "r.json")])[0] == 0
    assert run(["merge", str(tmp_path / "r.json"), str(tmp_path / "o.json"), "-o", str(tmp_path / "m.json"),
                "--allow-missing"])[0] == 0
    assert run(["compare", str(tmp_path / "r.json"), str(tmp_path / "r.json")])[0] in (0, 3)
    assert run(["show", str(tmp_path / "ab.json")])[0] == 0
    assert run(["compare", str(tmp_path / "ab.json")])[0] in (0, 3)

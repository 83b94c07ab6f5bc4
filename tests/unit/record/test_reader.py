"""The one reader of report files from elsewhere: every hostile kind of file is a :class:`ReportError` naming the
file and what is wrong (never a RecursionError, OverflowError or a traceback from deeper in a reader), the schema
types every section a reader walks, both validators agree on what they refuse, and the reports the suite writes
still validate."""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.ab.report import read_ab
from pytest_longeff.gate.acknowledge import load_acknowledged
from pytest_longeff.record import io
from pytest_longeff.record.io import ReportError, load_report, parse_json, read_json, schema_errors
from tests.support import report_variants as variants

TINY_RUN = Path(__file__).parents[3] / "docs" / "assets" / "tiny-run.json"
Doc = dict[str, Any]


@pytest.fixture(params=["jsonschema", "fallback"])
def validator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with ``jsonschema`` and with the fallback validator (``jsonschema`` made unimportable)."""
    if request.param == "jsonschema":
        pytest.importorskip("jsonschema")
    else:
        monkeypatch.setitem(sys.modules, "jsonschema", None)
        io._validator_class.cache_clear()
        request.addfinalizer(io._validator_class.cache_clear)
    return str(request.param)


def _tiny() -> Doc:
    doc: Doc = json.loads(TINY_RUN.read_text(encoding="utf-8"))
    return doc


def _deep(n: int) -> str:
    return "[" * n + "]" * n


# -- the parser -------------------------------------------------------------------------------------------------------
def _text(doc_text: str, old: str, new: str) -> str:
    assert old in doc_text
    return doc_text.replace(old, new, 1)


HOSTILE_TEXT: dict[str, tuple[Callable[[str], str | bytes], str]] = {
    "nested 1,000 deep": (lambda t: _text(t, '"data_dir": null', '"data_dir": ' + _deep(1000)),
                          r"nested more than 64 deep at line \d+, column \d+"),
    "nested 100,000 deep": (lambda t: _deep(100_000), "nested more than 64 deep at line 1, column 65"),
    "a 5,000-digit integer": (lambda t: _text(t, '"batch_size": 4', '"batch_size": ' + "9" * 5000),
                              r"an integer of 5000 digits \(at most 30 are read\) at line \d+"),
    "1e400": (lambda t: _text(t, '"samples_per_s": ', '"samples_per_s": 1e400, "x": '), "the number 1e400"),
    "1e999": (lambda t: _text(t, '"median": ', '"median": 1e999, "x": '), "the number 1e999"),
    "NaN": (lambda t: _text(t, '"median": ', '"median": NaN, "x": '), r"NaN \(not JSON"),
    "Infinity": (lambda t: _text(t, '"time_s": ', '"time_s": Infinity, "x": '), r"Infinity \(not JSON"),
    "-Infinity": (lambda t: _text(t, '"time_s": ', '"time_s": -Infinity, "x": '), r"-Infinity \(not JSON"),
    "invalid UTF-8": (lambda t: b'{"records": "\xff\xfe"}', r"not UTF-8 text \(byte 13\)"),
    "truncated": (lambda t: t[: len(t) // 2], r"not valid JSON \(.* at line \d+, column \d+\)"),
}


@pytest.mark.parametrize("kind", list(HOSTILE_TEXT))
def test_a_hostile_file_is_a_report_error_naming_the_file_and_the_place(tmp_path: Path, kind: str) -> None:
    make, message = HOSTILE_TEXT[kind]
    content = make(TINY_RUN.read_text(encoding="utf-8"))
    path = tmp_path / "hostile.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=rf"^{path}: not a readable pytest-longeff JSON report: {message}") as info:
        load_report(path)
    assert info.value.__cause__ is None and "\n" not in str(info.value)
    with pytest.raises(ReportError, match=r"not a readable A/B report"):  # the A/B reader shares the limits
        read_ab(path)


def test_the_place_of_a_refused_value_is_its_line_and_column() -> None:
    with pytest.raises(ReportError, match=r"^r\.json: .*the number 1e999 .* at line 3, column 8;"):
        parse_json('{\n "a": 1,\n "b": [1e999]}', "r.json")
    # The object is the first level (so the 64th bracket is the 65th); brackets inside strings do not count.
    with pytest.raises(ReportError, match=r"nested more than 64 deep at line 2, column 64;"):
        parse_json('{"a": "[[[[",\n' + _deep(70) + "}", "r.json")


def test_values_within_the_limits_are_read_as_they_are() -> None:
    text = json.dumps({"big": 10**29 + 7, "neg": -(10**29), "x": [1e29, -2.5e-5, 1e-29, 0.0], "s": "[" * 500,
                       "nested": json.loads(_deep(63))})
    doc = parse_json(text, "r.json")
    assert doc["big"] == 10**29 + 7 and doc["neg"] == -(10**29) and doc["x"] == [1e29, -2.5e-5, 1e-29, 0.0]
    assert doc["s"] == "[" * 500
    with pytest.raises(ReportError, match="an integer of 31 digits"):
        parse_json(str(10**30), "r.json")


def test_a_magnitude_of_1e_minus_30_or_less_reads_as_zero() -> None:
    # The suite writes such numbers (a p-value of a large regression); as 0, no quotient of two figures overflows.
    doc = parse_json('{"p": 1e-45, "q": -5e-324, "r": 1e-30, "s": 1.1e-30}', "r.json")
    assert doc == {"p": 0.0, "q": 0.0, "r": 0.0, "s": 1.1e-30}
    assert 1e30 / doc["s"] < float("inf")


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io, "MAX_BYTES", 1000)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"x": "a" * 1000}), encoding="utf-8")
    with pytest.raises(ReportError, match=r"big\.json: not a readable report: larger than 0 MiB"):
        read_json(path, "report")
    path.write_text(json.dumps({"x": "a" * 900}), encoding="utf-8")
    assert read_json(path, "report") == {"x": "a" * 900}


def test_a_missing_file_names_the_file() -> None:
    with pytest.raises(ReportError, match=r"^/nonexistent/r\.json: not a readable pytest-longeff JSON report \("):
        load_report("/nonexistent/r.json")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("ack.json", '{"acknowledged": ' + _deep(2000) + "}", "nested more than 64 deep"),
    ("ack.json", '{"acknowledged": [1e999]}', "the number 1e999"),
    ("ack.toml", "acknowledged = " + _deep(100_000), "nested too deep to read"),
])
def test_an_unusable_acknowledged_file_is_a_value_error_naming_it(tmp_path: Path, name: str, text: str,
                                                                  message: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^acknowledged file {tmp_path / name}: .*{message}"):
        load_acknowledged(tmp_path / name)


# -- the schema and the cross-references ------------------------------------------------------------------------------
def _set(path: str, value: Any) -> Callable[[Doc], Doc]:
    """An edit putting ``value`` at a dotted path (``records.0.train``)."""
    def edit(doc: Doc) -> Doc:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        target[int(last) if isinstance(target, list) else last] = copy.deepcopy(value)
        return doc
    return edit


#: One broken field per section a reader walks, and the field the error must name.
WRONG_TYPES: dict[str, tuple[Callable[[Doc], Doc], str]] = {
    "settings a list": (_set("settings", ["profile", "tiny"]), "settings"),
    "lengths as strings": (_set("settings.lengths", ["1024"]), "settings.lengths[0]"),
    "families a string": (_set("settings.families", "led"), "settings.families"),
    "repeats a string": (_set("settings.repeats", "three"), "settings.repeats"),
    "train budget spec a number": (_set("settings.train_budget.spec", 4), "settings.train_budget.spec"),
    "machine a list": (_set("machine", [1]), "machine"),
    "machines a string": (_set("machines", "cpu"), "machines"),
    "idle power a string": (_set("machine.idle", {"idle_power_w": "lots"}), "machine.idle.idle_power_w"),
    "session wall a string": (_set("session.wall_s", "long"), "session.wall_s"),
    "findings of numbers": (_set("session.findings", [1]), "session.findings[0]"),
    "pareto fronts an object": (_set("session.pareto", {"fronts": {"a": 1}}), "session.pareto.fronts"),
    "resumed_from carried a string": (_set("session.resumed_from", {"carried": "all"}),
                                      "session.resumed_from.carried"),
    "merged_from of numbers": (_set("merged_from", [1]), "merged_from[0]"),
    "shard index a string": (_set("shard", {"index": "1", "count": 2}), "shard.index"),
    "train a string": (_set("records.0.train", "fast"), "records[0].train"),
    "train stats a list": (_set("records.0.train.samples_per_s_stats", [1, 2]), "records[0].train.samples_per_s_stats"),
    "ci95 of three": (_set("records.0.train.samples_per_s_stats.ci95", [1.0, 2.0, 3.0]),
                      "records[0].train.samples_per_s_stats.ci95"),
    "latency stats n a float": (_set("records.0.inference.latency_s.stats.n", 3.0),
                                "records[0].inference.latency_s.stats.n"),
    "energy_valid a string": (_set("records.0.inference.energy_valid", "yes"), "records[0].inference.energy_valid"),
    "accuracy score a string": (_set("records.0.accuracy.score", "high"), "records[0].accuracy.score"),
    "accuracy examples of strings": (_set("records.0.accuracy_examples", {"ex1": "good"}),
                                     "records[0].accuracy_examples.ex1"),
    "probe log a number": (_set("records.0.batch_search.probe_log", 3), "records[0].batch_search.probe_log"),
    "probe fits a string": (_set("records.0.batch_search.probe_log.0.fits", "yes"),
                            "records[0].batch_search.probe_log[0].fits"),
    "batch size a float": (_set("records.0.batch_size", 4.0), "records[0].batch_size"),
    "gate section a list": (_set("records.0.gate", [1, 2]), "records[0].gate"),
    "gate check without tolerance": (_set("records.0.gate", {"checks": [{"metric": "score", "status": "passed"}]}),
                                     "records[0].gate.checks[0]"),
    "gate check status unknown": (_set("records.0.gate", {"checks": [{"metric": "score", "status": "great",
                                                                      "tolerance": 0.1}]}),
                                  "records[0].gate.checks[0].status"),
    "windows of numbers": (_set("records.0.windows", {"step": 3}), "records[0].windows.step"),
    "window time a string": (_set("records.0.windows", {"step": {"time_s": "quick"}}),
                             "records[0].windows.step.time_s"),
    "work ops of two": (_set("records.0.work", {"train": {"ops": {"aten.mm": [1, 2]}}}),
                        "records[0].work.train.ops.aten.mm"),
    "reference stats a string": (_set("records.0.reference.stats", "good"), "records[0].reference.stats"),
    "remeasured others of numbers": (_set("records.0.remeasured", {"others": [1]}), "records[0].remeasured.others[0]"),
    "task with /": (_set("records.0.task", "gov/../../report"), "records[0].task"),
    "family with a newline": (_set("records.0.family", "led\n::error::x"), "records[0].family"),
    "id ..": (_set("records.0.id", ".."), "records[0].id"),
    "machine_index a float": (_set("records.0.machine_index", 0.0), "records[0].machine_index"),
}


@pytest.mark.parametrize("kind", list(WRONG_TYPES))
def test_a_wrong_type_in_a_walked_section_is_refused_naming_the_field(tmp_path: Path, validator: str,
                                                                      kind: str) -> None:
    edit, field = WRONG_TYPES[kind]
    doc = edit(_tiny())
    errors = schema_errors(doc)
    assert [e.split(": ", 1)[0] for e in errors] == [field], errors
    (tmp_path / "bad.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ReportError, match=rf"bad\.json: not a valid pytest-longeff report: {re.escape(field)}: "):
        load_report(tmp_path / "bad.json")


def test_both_validators_name_the_same_fields_on_the_same_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jsonschema")
    docs = [edit(_tiny()) for edit, _ in WRONG_TYPES.values()]
    # Several faults in one document too: every record broken at once, each error still named the same way.
    many = _tiny()
    many["records"] = [edit(_tiny())["records"][0] for edit, field in WRONG_TYPES.values()
                       if field.startswith("records")]
    docs.append(many)

    def fields() -> list[list[str]]:
        return [sorted(e.split(": ", 1)[0] for e in schema_errors(doc)) for doc in docs]

    with_jsonschema = fields()
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    io._validator_class.cache_clear()
    try:
        fallback = fields()
    finally:
        io._validator_class.cache_clear()
    assert fallback == with_jsonschema
    assert len(with_jsonschema[-1]) >= 20  # the records' faults, each at its own index


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: {**d, "machines": [d["machine"]], "records": [{**r, "machine_index": 7} for r in d["records"]]},
     r"records\[0\]\.machine_index: 7, but machines has 1 entries"),
    (lambda d: {**d, "records": [{**r, "machine_index": 0} for r in d["records"]]},
     r"records\[0\]\.machine_index: 0, but machines has 0 entries"),
    (lambda d: {**d, "shard": {"index": 5, "count": 2}}, "shard: index 5 is above count 2"),
    (lambda d: {**d, "records": [d["records"][0], *d["records"]]},
     r"records\[1\]\.id: 'led-base-1024-gov_report' is also records\[0\]"),
    (lambda d: {**d, "records": [{**d["records"][0], "task": "qasper"}, *d["records"][1:]]},
     r"records\[0\]\.id: 'led-base-1024-gov_report' is not family-size-seq_len-task \('led-base-1024-qasper'\)"),
    (lambda d: {**d, "settings": {**d["settings"], "families": [f"f{i}" for i in range(400)],
                                  "sizes": [f"s{i}" for i in range(400)]}},
     r"settings: a matrix of 1280000 cells"),
])
def test_cross_references_are_checked_after_the_schema(tmp_path: Path, validator: str,
                                                       edit: Callable[[Doc], Doc], message: str) -> None:
    doc = edit(_tiny())
    assert schema_errors(doc) == []  # each is valid by the schema alone
    (tmp_path / "bad.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ReportError, match=rf"bad\.json: not a valid pytest-longeff report: {message}"):
        load_report(tmp_path / "bad.json")


def _merged() -> Doc:
    """``variants.merged`` with the second machine's cells at other lengths: a merged report holds each cell once."""
    doc = variants.merged()
    for r in doc["records"]:
        if r["machine_index"] == 1:
            r["seq_len"] *= 4
            r["id"] = f"{r['family']}-{r['size']}-{r['seq_len']}-{r['task']}"
    return doc


@pytest.mark.parametrize("make", [
    _tiny, variants.small, variants.matrix, lambda: variants.with_energy(variants.matrix()), variants.single_cell,
    variants.skipped_and_failed, _merged, lambda: variants.gated(_merged())])
def test_the_reports_the_suite_ships_and_writes_still_validate(tmp_path: Path, validator: str,
                                                               make: Callable[[], Doc]) -> None:
    doc = make()
    assert schema_errors(doc) == []
    (tmp_path / "r.json").write_text(json.dumps(doc), encoding="utf-8")
    assert load_report(tmp_path / "r.json") == doc


def test_a_window_record_is_named_by_its_test_node_id_and_a_cell_by_a_file_name(validator: str) -> None:
    window = {"id": "tests/bench/test_w.py::test_x[a/b]", "kind": "window", "device": "cpu", "status": "passed",
              "reason": None, "windows": {"nap": {"repeats": 3, "time_s": 0.01, "time_s_stats": None}}}
    doc = {**_tiny(), "records": [window]}
    assert schema_errors(doc) == []  # a node id holds the test file's path
    for bad_id, kind in (("tests/x.py::test\n::error::x", "window"), ("led/../x", "cell"), ("led/../x", None)):
        record = {**window, "id": bad_id, "kind": kind} if kind else {k: v for k, v in window.items() if k != "kind"}
        record["id"] = bad_id
        assert [e.split(": ", 1)[0] for e in schema_errors({**doc, "records": [record]})] == ["records[0].id"]


def test_a_name_ending_in_a_line_break_is_refused(validator: str) -> None:
    # Python's ``$`` matches before a final newline; the patterns must not let "gov_report\n" through to file names.
    doc = _tiny()
    doc["records"][0]["task"] = "gov_report\n"
    assert any("records[0].task" in e for e in schema_errors(doc))
    doc = _tiny()
    doc["records"][0]["id"] = doc["records"][0]["id"] + "\n"
    assert any("records[0].id" in e for e in schema_errors(doc))


def test_the_fallback_runs_whenever_jsonschema_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jsonschema")
    assert schema_errors(_tiny()) == []  # jsonschema used (and its validator class cached)
    calls: list[int] = []

    def fallback(*args: Any) -> Any:
        calls.append(1)
        return iter(())

    monkeypatch.setitem(sys.modules, "jsonschema", None)
    monkeypatch.setattr(io, "_subset_errors", fallback)
    assert schema_errors(_tiny()) == [] and calls == [1]

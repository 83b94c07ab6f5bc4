"""Merging shard reports (the schema, merge_docs, the merge command) without running pytest."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.cli import MergeRefused, main, merge_docs
from pytest_longeff.record import io as reportio
from pytest_longeff.record.io import SCHEMA_VERSION, ReportError, check_document, load_report

SETTINGS = {"profile": "tiny", "families": ["led"], "sizes": ["base", "large"], "lengths": [1024],
            "tasks": ["qasper"], "train_budget": {"spec": "steps=2"}, "shard": None, "json_path": "x.json"}


SOFTWARE = {"pytest_longeff": "0.1.0", "code_digest": "abc", "torch": "2.13.0", "transformers": "5.0"}


MACHINE = {"device": "cpu", "cpu": "Xeon", "cpu_threads": 2, "torch": "2.13.0", "transformers": "5.0"}
BASE, LARGE = "led-base-1024-qasper", "led-large-1024-qasper"


def _record(cell_id: str, status: str = "passed") -> dict[str, Any]:
    return {"id": cell_id, "status": status, "reason": None, "family": "led", "size": [*cell_id.split("-"), "", ""][1],
            "seq_len": 1024, "task": "qasper",
            "train": {"time_s": 1.5, "energy_j": None}, "accuracy": {"score": 12.0}, "cell_wall_s": 3.0}


def _doc(ids: list[str], shard: tuple[int, int] | None = None, **settings: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "machine": dict(MACHINE), "software": dict(SOFTWARE),
            "settings": {**SETTINGS, **settings, "shard": f"{shard[0]}/{shard[1]}" if shard else None},
            "shard": {"index": shard[0], "count": shard[1]} if shard else None,
            "session": {"model_builds": 1, "wall_s": 5.0}, "records": [_record(i) for i in ids]}


@pytest.fixture(params=["jsonschema", "fallback"])
def validator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with ``jsonschema`` (what load_report prefers) and with the fallback validator (``jsonschema``
    made unimportable)."""
    if request.param == "jsonschema":
        pytest.importorskip("jsonschema")
    else:
        monkeypatch.setitem(sys.modules, "jsonschema", None)  # ``from jsonschema import ...`` raises ImportError
    return str(request.param)


def test_schema_rejects_old_and_foreign_reports(tmp_path: Path, validator: str) -> None:
    check_document(_doc([BASE]), "ok.json")
    cases = [("old.json", {"schema_version": 1, "records": []},
              "old.json: schema_version 1 is not 2: written by an older"),
             ("foreign.json", {"tests": [], "summary": {}}, "foreign.json: not a pytest-longeff JSON report")]
    for name, doc, message in cases:
        (tmp_path / name).write_text(json.dumps(doc))
        with pytest.raises(ReportError, match=re.escape(message)):
            load_report(tmp_path / name)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ReportError, match=r"broken\.json: not a readable"):
        load_report(tmp_path / "broken.json")


@pytest.mark.parametrize(("record", "field", "value"), [
    ({"id": "x", "status": "done"}, "records[0].status", "'done'"),
    ({**_record("x"), "train": {"time_s": "fast"}}, "records[0].train.time_s", "'fast'"),
])
def test_schema_refuses_a_malformed_record_naming_the_file_and_the_field(
        tmp_path: Path, validator: str, record: dict[str, Any], field: str, value: str) -> None:
    # The validators word their reasons differently ("is not one of" / "is not of type"): what is checked is that
    # the file is refused as invalid, and which field and value are named.
    (tmp_path / "bad.json").write_text(json.dumps({**_doc([]), "records": [record]}))
    with pytest.raises(ReportError) as info:
        load_report(tmp_path / "bad.json")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'bad.json'}: not a valid pytest-longeff report: {field}: ")
    assert value in message.split(f"{field}: ", 1)[1]


def test_the_shipped_schema_is_draft_2020_12_and_matches_written_reports() -> None:
    schema = reportio.report_schema()
    assert schema["$schema"].endswith("2020-12/schema") and schema["properties"]["schema_version"]["const"] == 2


def test_merge_joins_shards_and_keeps_each_records_machine(validator: str) -> None:
    other_host = _doc([LARGE], (2, 2))
    other_host["machine"]["idle"] = {"idle_power_w": 3.0}  # same kind of machine, another runner
    merged = merge_docs([("a.json", _doc([BASE], (1, 2))), ("b.json", other_host)])
    assert [r["id"] for r in merged["records"]] == [BASE, LARGE] and merged["missing"] == []
    assert [r["machine_index"] for r in merged["records"]] == [0, 1] and len(merged["machines"]) == 2
    assert merged["settings"]["shard"] is None and merged["session"]["model_builds"] == 2
    assert [m["shard"] for m in merged["merged_from"]] == ["1/2", "2/2"]
    check_document(merged, "merged")


@pytest.mark.parametrize(("second", "message"), [
    (_doc([LARGE], (2, 2), lr=1e-3), "b.json: other settings than a.json (lr None vs 0.001)"),
    ({**_doc([LARGE], (2, 2)), "software": {**SOFTWARE, "code_digest": "def"}},
     "b.json: other software or code than a.json (code_digest 'abc' vs 'def')"),
    (_doc([BASE, LARGE], (2, 2)), "cell led-base-1024-qasper is in both a.json and b.json"),
    (_doc([], (2, 2)), "1 cell(s) of the matrix missing: led-large-1024-qasper"),
    (_doc([LARGE], (1, 2)), "shard 1/2 twice: a.json and b.json"),
])
def test_merge_refuses_what_cannot_be_joined(second: dict[str, Any], message: str) -> None:
    with pytest.raises(MergeRefused) as info:
        merge_docs([("a.json", _doc([BASE], (1, 2))), ("b.json", second)])
    assert message in info.value.problems


def test_merge_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str], validator: str) -> None:
    (tmp_path / "a.json").write_text(json.dumps(_doc([BASE], (1, 2))))
    (tmp_path / "old.json").write_text(json.dumps({"schema_version": 1, "records": []}))
    out = tmp_path / "out" / "m.json"
    assert main(["merge", str(tmp_path / "a.json"), "-o", str(out)]) == 1
    assert "missing: led-large-1024-qasper" in capsys.readouterr().err and not out.exists()
    assert main(["merge", str(tmp_path / "a.json"), str(tmp_path / "old.json"), "-o", str(out)]) == 2
    assert "old.json: schema_version 1 is not 2" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "a.json"), "-o", str(out), "--allow-missing"]) == 0
    assert load_report(out)["missing"] == [LARGE] and out.with_suffix(".csv").exists()


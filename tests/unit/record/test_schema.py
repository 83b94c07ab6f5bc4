"""The shipped report schema against reports the writer actually produces, with both validators: ``jsonschema``
(preferred when installed) and the built-in fallback for the keywords the schema uses."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.energy import EnergyReading, IdleBaseline
from pytest_longeff.measure.machine import light_facts
from pytest_longeff.record.io import (
    SCHEMA_VERSION,
    JsonReport,
    ReportError,
    load_report,
    report_schema,
    schema_errors,
)
from pytest_longeff.record.sections import (
    Accuracy,
    BatchChoice,
    CellRecord,
    Energy,
    Identity,
    InferenceWindow,
    ModelFacts,
    TrainWindow,
)
from pytest_longeff.stats import summarize

SMALL_REPORT = Path(__file__).parents[2] / "support" / "data" / "report_small.json"


@pytest.fixture(params=["jsonschema", "fallback"])
def validator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs once with ``jsonschema`` and once with the fallback validator (``jsonschema`` made
    unimportable)."""
    if request.param == "jsonschema":
        pytest.importorskip("jsonschema")
    else:
        monkeypatch.setitem(sys.modules, "jsonschema", None)  # ``from jsonschema import ...`` raises ImportError
    return str(request.param)


def _reading(joules: float | None, seconds: float) -> EnergyReading:
    return EnergyReading(joules, seconds, "nvml" if joules else "none", joules is not None, None, 2, None, None,
                         uncertainty_j=1.0 if joules else None)


def _cell(cell_id: str = "led-base-1024-qasper", energy_j: float | None = 500.0) -> CellRecord:
    family, size, length, task = cell_id.split("-")
    idle = IdleBaseline(20.0, 10.0, "nvml", True, None)
    record = CellRecord(Identity(cell_id, family, size, int(length), task, "tiny", "cpu"))
    record.model = ModelFacts(1000, "tiny LED", {"d_model": 32}, True, 1.5, 2**29, {"spec": "steps=4"},
                              {"name": "AdamW"}, 3, accuracy_meaning="tiny weights", accuracy_meaningful=False)
    record.batch = BatchChoice(4, "searched", 2, 3 * 2**20, {"probe_log": [], "start": 1}, accumulation=2)
    record.train = TrainWindow(
        steps=5, samples=40, time_s=10.0, eval_time_s=2.0, throughput=summarize([4.0, 5.0, 6.0]),
        warmup_steps_excluded=1, input_tokens_per_step=8192, losses=[3.0, 2.5], evaluations=[{"step": 2.0}],
        best_step=2, peak_memory_bytes=2**20, memory_method="m", within_memory_budget=True, stopped_by="steps",
        energy=Energy.from_reading(_reading(energy_j, 10.0), idle), flops_per_step=1000, flops_method="f",
        median_step_s=2.0, decoder_positions=128, label_padding="study", epochs=0.5)
    record.inference = InferenceWindow(
        samples=9, passes=3, time_s=3.0, throughput=summarize([3.0, 3.0, 3.0]), latency=summarize([0.2, 0.3, 0.4]),
        latency_p50_s=0.3, latency_p90_s=0.38, generated_tokens=90, max_new_tokens=25, peak_memory_bytes=2**19,
        memory_method="m", energy=Energy.from_reading(_reading(energy_j and energy_j / 5, 3.0), idle),
        scored_generated_tokens=40, generation_config={"num_beams": 1})
    record.attention = "sliding_window"
    record.accuracy = Accuracy({"f1": 12.5, "score": 12.5}, "greedy generation, SCROLLS f1, x100",
                               examples={"ex1": {"f1": 12.5}})
    record.predictions = {"ex1": "an answer"}
    record.cell_wall_s = 14.0
    record.finish("passed", None, None)
    return record


def _written(tmp_path: Path) -> Path:
    """A report as the controller writes it: the header of a real run, a full passed cell, a failed cell with its
    first sections only and no energy meter, and a skipped one."""
    small = json.loads(SMALL_REPORT.read_text(encoding="utf-8"))
    facts = light_facts("cpu")
    header = {"machine": facts, "software": {"pytest_longeff": "0.1.0", "code_digest": "0123456789abcdef",
                                             "pytest": pytest.__version__, "torch": facts["torch"],
                                             "transformers": facts["transformers"], "python": facts["python"]},
              "settings": small["settings"], "shard": None}
    report = JsonReport(tmp_path / "out" / "report.json", header)
    full = _cell()
    report.add(full.to_dict(), full.predictions)
    failed = CellRecord(Identity("led-large-1024-qasper", "led", "large", 1024, "qasper", "tiny", "cpu"))
    failed.model = _cell().model
    failed.finish("failed", "CUDA out of memory at batch 1", None)
    report.add(failed.to_dict())
    unmeasured = _cell("bigbird-base-2048-gov_report", energy_j=None)
    unmeasured.finish("skipped", "pretrained weights only", None)
    report.add(unmeasured.to_dict())
    report.session = {"model_builds": 2, "wall_s": 30.0}
    report.write()
    return report.path


def test_a_written_report_is_valid(tmp_path: Path, validator: str) -> None:
    path = _written(tmp_path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["schema_version"] == SCHEMA_VERSION and len(doc["records"]) == 3
    assert schema_errors(doc) == []
    loaded = load_report(path)
    assert [r["status"] for r in loaded["records"]] == ["passed", "failed", "skipped"]
    assert loaded["records"][0]["inference"]["j_per_sample"] == pytest.approx(100.0 / 9)


def test_the_stored_real_report_is_valid(validator: str) -> None:
    assert schema_errors(json.loads(SMALL_REPORT.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(("where", "change"), [
    (("records", 0, "status"), "done"),
    (("records", 0, "train", "time_s"), "fast"),
    (("records", 1, "seq_len"), 0),
    (("records", 2, "id"), ""),
    (("records", 0, "inference", "energy_j"), True),
    (("schema_version",), 1),
])
def test_both_validators_refuse_a_broken_field_of_a_written_report_and_name_it(
        tmp_path: Path, validator: str, where: tuple[str | int, ...], change: Any) -> None:
    doc = json.loads(_written(tmp_path).read_text(encoding="utf-8"))
    broken = copy.deepcopy(doc)
    target = broken
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = change
    errors = schema_errors(broken)
    # The field is named as the messages name it (records[0].train.time_s), whichever validator found it.
    field = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(where))
    assert len(errors) == 1 and errors[0].startswith(f"{field}: "), errors
    (tmp_path / "broken.json").write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ReportError, match=r"broken\.json: (not a valid pytest-longeff report|schema_version 1)"):
        load_report(tmp_path / "broken.json")


def test_both_validators_report_a_missing_required_key(validator: str) -> None:
    errors = schema_errors({"schema_version": SCHEMA_VERSION, "records": [{"id": "x"}]})
    assert len(errors) == 1 and errors[0].startswith("records[0]: ") and "'status'" in errors[0]
    assert report_schema()["$defs"]["record"]["required"] == ["id", "status"]


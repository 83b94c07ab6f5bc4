"""Acceptance tests: the plugin run by pytester on small matrices; reports are parsed, not grepped."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

# A small, fast matrix: every figure still comes from real training, generation and scoring.
FAST = [
    "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-train-budget=steps=2", "--longeff-eval-samples=2",
    "--longeff-idle-s=0", "--longeff-max-batch=2", "--longeff-device=cpu", "--longeff-energy=none",
    "-p", "no:randomly",
]


def _report(pytester: pytest.Pytester, name: str = "reports/longeff.json") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((pytester.path / name).read_text())
    return doc



def test_small_matrix_writes_records_predictions_and_junit(bench: pytest.Pytester) -> None:
    result = bench.runpytest("--longeff-tasks=qasper,gov_report", "--junitxml=junit.xml", "--longeff-plots=figs",
                             *FAST)
    result.assert_outcomes(passed=4)
    doc = _report(bench)
    # The run ends with its figures, the page and the Pareto fronts (the plots extra is installed for the tests).
    assert sorted(p.name for p in (bench.path / "figs").glob("tradeoff-inference-*.svg")) == [
        "tradeoff-inference-gov_report.svg", "tradeoff-inference-qasper.svg"]
    assert "<svg" in (bench.path / "reports" / "longeff.html").read_text()
    assert {f["task"] for f in doc["session"]["pareto"]["fronts"]} == {"gov_report", "qasper"}
    assert doc["schema_version"] == 2
    assert {"machine", "software", "settings", "session"} <= doc.keys()
    assert doc["session"]["model_builds"] == 2  # one per (family, size), reset for every cell
    ids = sorted(r["id"] for r in doc["records"])
    assert ids == ["bigbird-base-256-gov_report", "bigbird-base-256-qasper", "led-base-256-gov_report",
                   "led-base-256-qasper"]
    for r in doc["records"]:
        assert r["status"] == "passed" and r["reason"] is None
        assert r["params"] > 0 and r["model_config"]["architectures"][0].endswith("ForConditionalGeneration")
        assert r["batch_size"] >= 1 and r["batch_search"]["source"] in ("searched", "cached")
        assert r["train"]["steps"] == 2 and r["train"]["stopped_by"] == "steps"
        assert r["train"]["samples_per_s"] > 0 and r["inference"]["samples"] == 2 * r["inference"]["passes"] == 6
        # Latency and throughput come from the same batch timings by different arithmetic: with an odd number of
        # batches, the median throughput is batch size / the median batch time, i.e. 1 / the median latency.
        inf = r["inference"]
        if inf["latency_s"]["stats"]["n"] % 2 == 1:
            assert inf["samples_per_s_stats"]["median"] == pytest.approx(1 / inf["latency_s"]["stats"]["median"])
        assert inf["latency_s"]["p50"] == inf["latency_s"]["stats"]["median"] <= inf["latency_s"]["p90"]
        # From the peaks the windows measured, not from the probe (a cached batch ran no probe).
        assert r["train"]["within_memory_budget"] is (max(r["train"]["peak_memory_bytes"],
                                                          r["inference"]["peak_memory_bytes"]) <=
                                                      doc["settings"]["memory_budget_bytes"])
        # No meter on this machine: unmeasured energy is null with a reason, never 0.
        for part in ("train", "inference"):
            if not r[part]["energy_valid"]:
                assert r[part]["energy_j"] is None and r[part]["energy_note"]
        expected = {"f1", "score"} if r["task"] == "qasper" else {"rouge1", "rouge2", "rougeL", "score"}
        assert set(r["accuracy"]) == expected
        predictions = json.loads((bench.path / r["predictions_path"]).read_text())
        assert len(predictions) == 2 and all(isinstance(v, str) for v in predictions.values())
    attention = {r["family"]: r["attention"].split(" ")[0] for r in doc["records"]}
    assert attention == {"led": "sliding_window", "bigbird": "block_sparse"}
    # xunit2 (pytest's default junit_family): figures are suite properties, none inside a testcase.
    root = ET.parse(bench.path / "junit.xml").getroot()
    assert not [case for case in root.iter("testcase") if case.find("properties") is not None]
    suite = {str(p.get("name")): str(p.get("value")) for p in root.iter("property")}
    assert all(float(suite[f"longeff_train_samples_per_s[{i}]"]) > 0 for i in ids)
    assert "longeff: accuracy-efficiency matrix" in result.stdout.str()
    import csv

    rows = list(csv.DictReader((bench.path / "reports" / "longeff.csv").open()))
    assert sorted(r["id"] for r in rows) == ids
    assert all(r["train_energy_j"] == "" and float(r["train_samples_per_s"]) > 0 for r in rows)
    assert "| led-base-256-qasper" in (bench.path / "reports" / "longeff.md").read_text()


def test_k_selects_exactly_the_named_cells(bench: pytest.Pytester) -> None:
    for expr, n in (("led and 4096", 8), ("bigbird", 32), ("base and qasper", 8)):
        result = bench.runpytest("--collect-only", "-q", "-k", expr)
        ids = [line for line in result.outlines if "::test_cell[" in line]
        assert len(ids) == n, (expr, ids)
        words = expr.replace(" and ", " ").split()
        assert all(all(w in line.split("[")[1].rstrip("]").split("-") for w in words) for line in ids)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--longeff-profile=huge"], "--longeff-profile: got 'huge'; accepted: tiny, dims, paper, recent"),
        (["--longeff-lengths=1024,abc"], "--longeff-lengths: expected a comma list of positive integers"),
        (["--longeff-families=gpt"], "--longeff-families: unknown 'gpt'; accepted: led, bigbird"),
        (["--longeff-tasks=squad"], "--longeff-tasks: unknown 'squad'; accepted: gov_report"),
        (["--longeff-sizes=xl"], "--longeff-sizes: unknown sizes 'xl'; accepted: base, large"),
        (["--longeff-memory-budget=lots"], "--longeff-memory-budget"),
        (["--longeff-train-budget=forever"], "--longeff-train-budget"),
        (["--longeff-energy=solar"], "--longeff-energy: unknown meter 'solar'; accepted: auto, nvml, nvml-power"),
        (["--longeff-device=tpu"], "--longeff-device: got 'tpu'; accepted: auto, cpu, cuda, cuda:N"),
        (["--longeff-lr=nan"], "--longeff-lr: expected a positive number, got 'nan'"),
        (["--longeff-memory-budget=0B"], "--longeff-memory-budget: expected a size above 0"),
    ],
)
def test_bad_option_values_are_usage_errors(bench: pytest.Pytester, args: list[str], message: str) -> None:
    result = bench.runpytest("--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_bad_ini_value_names_the_ini_key(bench: pytest.Pytester) -> None:
    bench.makeini("[pytest]\nlongeff_lengths = many\n")
    result = bench.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "longeff_lengths" in result.stderr.str()


def _scrolls_dir(root: Path, task: str, n: int = 3) -> Path:
    from pytest_longeff.data.scrolls import generate_task

    folder = root / task
    folder.mkdir(parents=True)
    for split, rows in generate_task(task, seed=7, n_train=n, n_validation=2).items():
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps({"id": r.id, "pid": r.pid, "input": r.input, "output": r.output}) + "\n"
                    for r in rows))
    return root


def test_data_dir_runs_the_cells_on_user_data(bench: pytest.Pytester) -> None:
    data = _scrolls_dir(bench.path / "scrolls", "qasper")
    result = bench.runpytest(f"--longeff-data-dir={data}", "--longeff-tasks=qasper", "--longeff-families=led",
                             *FAST)
    result.assert_outcomes(passed=1)
    (record,) = _report(bench)["records"]
    assert record["validation_examples"] == 2


def test_missing_task_folder_is_a_clear_error_and_other_cells_go_on(bench: pytest.Pytester) -> None:
    data = _scrolls_dir(bench.path / "scrolls", "qasper")
    result = bench.runpytest(f"--longeff-data-dir={data}", "--longeff-tasks=qasper,qmsum",
                             "--longeff-families=led", *FAST)
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "no folder for task 'qmsum'" in out and "Traceback" not in out
    records = {r["id"]: r for r in _report(bench)["records"]}
    assert records["led-base-256-qmsum"]["status"] == "error"
    assert "no folder for task 'qmsum'" in records["led-base-256-qmsum"]["reason"]
    assert records["led-base-256-qasper"]["status"] == "passed"


def test_malformed_line_names_file_and_line(bench: pytest.Pytester) -> None:
    data = _scrolls_dir(bench.path / "scrolls", "qasper")
    with (data / "qasper" / "train.jsonl").open("a") as fh:
        fh.write('{"id": "x", "input": "no output"}\n')
    result = bench.runpytest(f"--longeff-data-dir={data}", "--longeff-tasks=qasper", "--longeff-families=led",
                             *FAST)
    result.assert_outcomes(errors=1)
    assert "train.jsonl:7: missing field(s) pid, output" in result.stdout.str()


def _qasper_zip_and_tokenizer(root: Path) -> tuple[Any, Path]:
    """A generated qasper split written as SCROLLS publishes it (a zip of JSONL per task) under ``root/zips``, and a
    tokenizer trained on it: what a local mirror of the hub holds beside a checkpoint."""
    import zipfile

    from pytest_longeff.data.scrolls import generate_task
    from pytest_longeff.data.tokenizer import train_tokenizer

    rows = generate_task("qasper", seed=3, n_train=3, n_validation=2)
    tokenizer = train_tokenizer([r.input for r in rows["train"]] + [r.output for r in rows["train"]])
    data = root / "zips"
    data.mkdir()
    with zipfile.ZipFile(data / "qasper.zip", "w") as zf:
        for split, split_rows in rows.items():
            zf.writestr(f"qasper/{split}.jsonl", "".join(
                json.dumps({"id": r.id, "pid": r.pid, "input": r.input, "output": r.output}) + "\n"
                for r in split_rows))
    return tokenizer, data


def test_paper_profile_loads_checkpoints_and_scrolls_zips_from_a_local_mirror(bench: pytest.Pytester) -> None:
    """The hub is unreachable here: the paper path is exercised against a save_pretrained folder and a zip laid
    out like SCROLLS' that this test writes."""
    from transformers import LEDForConditionalGeneration

    from pytest_longeff.models.families import LEDFamily

    tokenizer, data = _qasper_zip_and_tokenizer(bench.path)
    checkpoint = bench.path / "mirror" / "allenai" / "led-base-16384"
    config = LEDFamily().config("base", "tiny", len(tokenizer), 512)
    LEDForConditionalGeneration(config).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    result = bench.runpytest("--longeff-profile=paper", f"--longeff-model-dir={bench.path / 'mirror'}",
                             f"--longeff-data-dir={data}", "--longeff-families=led", "--longeff-tasks=qasper",
                             *FAST)
    result.assert_outcomes(passed=1)
    (record,) = _report(bench)["records"]
    assert record["profile"] == "paper" and record["model"] == "allenai/led-base-16384"
    assert record["validation_examples"] == 2


@pytest.mark.parametrize("family", ["llama", "longt5", "pegasus_x"])
def test_recent_profile_loads_todays_checkpoints_from_a_local_mirror(bench: pytest.Pytester, family: str) -> None:
    """The recent profile's checkpoints (Qwen2.5 for the decoder-only base, LongT5 and PEGASUS-X) come from the hub
    or a local mirror laid out as <org>/<name>; the hub is unreachable here, so each family's real loading path
    (AutoModelForCausalLM for the decoder-only, the family's class otherwise) reads a save_pretrained folder of a
    small model of the checkpoint's own architecture (Qwen2 for Qwen2.5) that this test writes, and the cell trains,
    generates and scores in the profile's own precision (bf16; on the CPU under autocast). The record's parameter
    count and architecture are the written model's, so random weights of another size or class cannot pass."""
    import transformers

    from pytest_longeff.models.families import BUILTIN_FAMILIES

    fam = next(f for f in BUILTIN_FAMILIES if f.name == family)
    tokenizer, data = _qasper_zip_and_tokenizer(bench.path)
    checkpoint = bench.path / "mirror" / fam.checkpoint("base")
    if family == "llama":  # the base checkpoint is Qwen2.5's: a Qwen2 model at the tiny decoder's dimensions
        c = fam.config("base", "tiny", len(tokenizer), 512)
        keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**{k: getattr(c, k) for k in keys}))
    else:
        model = fam.build("base", "tiny", len(tokenizer), 512, None)
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    result = bench.runpytest("--longeff-profile=recent", f"--longeff-model-dir={bench.path / 'mirror'}",
                             f"--longeff-data-dir={data}", f"--longeff-families={family}", "--longeff-tasks=qasper",
                             *FAST)
    result.assert_outcomes(passed=1)
    doc = _report(bench)
    (record,) = doc["records"]
    assert doc["settings"]["precision"] == "bf16"  # the profile's default, not set here
    assert record["profile"] == "recent" and record["model"] == fam.checkpoint("base")
    assert record["params"] == sum(p.numel() for p in model.parameters())
    assert record["model_config"]["model_type"] == model.config.model_type
    assert record["validation_examples"] == 2 and record["status"] == "passed"
    assert set(record["accuracy"]) == {"f1", "score"} and record["train"]["samples_per_s"] > 0
    predictions = json.loads((bench.path / record["predictions_path"]).read_text())
    assert len(predictions) == 2 and all(isinstance(v, str) for v in predictions.values())


def test_records_survive_a_crash_of_a_later_cell(bench: pytest.Pytester) -> None:
    # The report is rewritten after every cell: a session killed mid-way keeps every finished record.
    bench.makeconftest('''
import os
import pytest

@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if report.when == "teardown" and "qasper" in report.nodeid:
        os._exit(3)
''')
    result = bench.runpytest_subprocess("--longeff-tasks=gov_report,qasper", "--longeff-families=led", *FAST)
    assert result.ret == 3
    records = _report(bench)["records"]
    assert [r["id"] for r in records] == ["led-base-256-gov_report", "led-base-256-qasper"]


def test_a_session_that_cannot_start_reports_every_cell_plainly(bench: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    result = bench.runpytest("--longeff-tasks=qasper", *FAST, "--longeff-device=cuda")
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "no CUDA device is usable here" in out and "Traceback" not in out
    records = _report(bench)["records"]
    assert len(records) == 2 and all(r["status"] == "error" and "no CUDA" in r["reason"] for r in records)


def test_paper_profile_skips_the_big_bird_base_that_does_not_exist(bench: pytest.Pytester) -> None:
    result = bench.runpytest("--longeff-profile=paper", "--longeff-families=bigbird", "--longeff-tasks=qasper",
                             *FAST)
    result.assert_outcomes(skipped=1)
    (record,) = _report(bench)["records"]
    assert record["status"] == "skipped" and "no pretrained Big Bird base" in record["reason"]


def test_a_cell_does_not_change_with_the_rest_of_the_matrix(bench: pytest.Pytester) -> None:
    narrow = [a for a in FAST if not a.startswith("--longeff-lengths")]
    bench.runpytest("--longeff-families=led", "--longeff-tasks=qasper", *FAST).assert_outcomes(passed=1)
    alone = _report(bench)["records"][0]
    bench.runpytest("--longeff-families=led", "--longeff-tasks=qasper,qmsum", "--longeff-lengths=256,512",
                    *narrow).assert_outcomes(passed=4)
    together = next(r for r in _report(bench)["records"] if r["id"] == alone["id"])
    assert together["params"] == alone["params"]
    assert together["model_config"] == alone["model_config"]
    assert together["train"]["loss_first"] == pytest.approx(alone["train"]["loss_first"])


def test_unrelated_suites_hear_nothing_from_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "longeff:" not in result.stdout.str()  # (pytest itself lists the installed plugin)
    assert not (pytester.path / "reports").exists()


def test_a_keyboard_interrupt_keeps_finished_records_and_stops_the_meter(bench: pytest.Pytester) -> None:
    """Guards against losing finished records, or leaving the meter's sampling thread running, when the user
    presses Ctrl-C mid-run. The meter is a fake with a thread (the machine may have no real one)."""
    bench.makeconftest('''
import json
import threading

import pytest
import pytest_longeff.cell.resources
from pytest_longeff.energy import EstimateMeter


class ThreadedMeter(EstimateMeter):
    def __init__(self):
        super().__init__()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._stop.wait, name="fake-meter-sampler", daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self._thread.join()


pytest_longeff.cell.resources.make_meter = lambda name, device, **kw: (ThreadedMeter(), [])


def pytest_runtest_setup(item):
    if "qasper" in item.nodeid:
        raise KeyboardInterrupt


def pytest_unconfigure(config):
    alive = [t.name for t in threading.enumerate() if t.name == "fake-meter-sampler"]
    with open("threads.json", "w") as fh:
        json.dump(alive, fh)
''')
    result = bench.runpytest_subprocess("--longeff-tasks=gov_report,qasper", "--longeff-families=led", *FAST)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    (record,) = _report(bench)["records"]
    assert record["id"] == "led-base-256-gov_report" and record["status"] == "passed"
    assert record["train"]["energy_method"] == "estimate"  # the fake meter was the one in use
    assert json.loads((bench.path / "threads.json").read_text()) == []


def test_a_failing_body_is_recorded_with_its_reason(bench: pytest.Pytester) -> None:
    """Also: --longeff-teacher-forced adds the study's scoring, and JUnit xunit1 properties of a cell are numbers
    or method strings, never "None" (the inference energy here is unmeasured)."""
    bench.makepyfile(test_bench="def test_cell(longeff_record):\n    assert False, 'the body says no'\n")
    result = bench.runpytest("--longeff-tasks=qasper", "--longeff-families=led", "--longeff-teacher-forced",
                             "--junitxml=junit.xml", "-o", "junit_family=xunit1", *FAST)
    result.assert_outcomes(failed=1)
    (record,) = _report(bench)["records"]
    assert record["status"] == "failed" and "the body says no" in record["reason"]
    assert set(record["accuracy_teacher_forced"]) == {"f1", "score"}
    (case,) = ET.parse(bench.path / "junit.xml").getroot().iter("testcase")
    props = {str(p.get("name")): str(p.get("value")) for p in case.iter("property")}
    assert props["longeff_train_energy_method"] == "none" and "longeff_train_energy_j" not in props
    for name, value in props.items():
        assert value != "None", name
        if not name.endswith("_energy_method"):
            float(value)  # every figure is a number
    assert float(props["longeff_train_samples_per_s"]) > 0 and int(props["longeff_batch_size"]) >= 1


def _same(written: str, value: float | None) -> bool:
    """Whether a figure as a file wrote it (CSV field, JUnit property) is ``value``: empty where unmeasured."""
    return written == "" if value is None else float(written) == value


def test_one_name_means_one_number_in_every_output(bench: pytest.Pytester) -> None:
    """Every figure of the table, for every cell of a real run, is the same number in the JSON, the CSV, the JUnit
    properties, the github-action-benchmark files and the terminal matrix; the page says what the records say about
    their weights."""
    import csv

    from pytest_longeff.record.figures import FIGURES, FIGURES_BY_NAME, GATED
    from pytest_longeff.report.tables import figure_text, matrix_columns

    args = [a for a in FAST if not a.startswith("--longeff-energy")]
    result = bench.runpytest("--longeff-tasks=qasper", "--longeff-energy=estimate", "--junitxml=junit.xml",
                             "--longeff-benchmark-json=bench", "-v", *args)
    result.assert_outcomes(passed=2)
    records = {r["id"]: r for r in _report(bench)["records"]}
    rows = {r["id"]: r for r in csv.DictReader((bench.path / "reports" / "longeff.csv").open())}
    junit = {str(p.get("name")): str(p.get("value")) for p in ET.parse(bench.path / "junit.xml").getroot().iter(
        "property")}
    entries = {e["name"]: e["value"] for f in ("longeff-smaller-is-better.json", "longeff-bigger-is-better.json")
               for e in json.loads((bench.path / "bench" / f).read_text())}
    assert sorted(rows) == sorted(records) and len(records) == 2
    for cell_id, record in records.items():
        for fig in FIGURES:
            value = fig.value(record)
            assert _same(rows[cell_id][fig.name], value), (cell_id, fig.name)
            assert _same(junit.get(f"longeff_{fig.name}[{cell_id}]", ""), value), (cell_id, fig.name)
            if f"{cell_id} {fig.name}" in entries:
                assert entries[f"{cell_id} {fig.name}"] == value, (cell_id, fig.name)
        inference = record["inference"]  # the figure the gate names, never the whole-window rate under its name
        assert float(rows[cell_id]["inference_samples_per_s"]) == GATED["inference_samples_per_s"].value(record)
        assert float(rows[cell_id]["inference_samples_per_s"]) == inference["samples_per_s_stats"]["median"]
        assert float(rows[cell_id]["inference_window_samples_per_s"]) == inference["samples_per_s"]
        assert entries[f"{cell_id} inference_samples_per_s"] == inference["samples_per_s_stats"]["median"]
        assert record["train"]["energy_method"] == "estimate" and rows[cell_id]["train_energy_j"] != ""
        row = next(line for line in result.outlines if line.startswith(f"{cell_id} "))  # -v: every column
        shown = [figure_text(FIGURES_BY_NAME[c.figure], record) for c in matrix_columns([record]) if c.figure]
        assert row.split()[2:] and all(f" {text} " in f"{row} " for text in shown), (row, shown)
    page = (bench.path / "reports" / "longeff.html").read_text()
    meaning = {r["accuracy_meaning"] for r in records.values()}
    assert len(meaning) == 1 and all(r.get("accuracy_meaningful") is True for r in records.values())
    assert "checkpoints shipped in the package" in meaning.pop()  # the default: the shipped pretrained checkpoints
    banner = page.split('id="accuracy-meaning">')[1].split("</p>")[0]
    assert "checkpoints shipped in the package" in banner and "random-init" not in banner

"""The families added after the study, end to end: one cell each through the matrix, the findings, the Pareto
fronts, the gate, the prefill/decode section and the figures; the attention option; the RULER-style tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEW = [
    "--longeff-families=llama,longt5,pegasus_x", "--longeff-sizes=base", "--longeff-lengths=256",
    "--longeff-eval-samples=2", "--longeff-idle-s=0", "--longeff-batch-size=2", "--longeff-train-budget=steps=2",
    "--longeff-device=cpu", "--longeff-energy=none", "--longeff-tiny-weights=random", "-p", "no:randomly",
]


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_one_cell_each_runs_with_findings_pareto_phases_and_the_gate(bench: pytest.Pytester) -> None:
    first = bench.runpytest(*NEW, "--longeff-tasks=qasper", "--longeff-json=base.json", "--longeff-plots=figs")
    first.assert_outcomes(passed=3)
    doc = _doc(bench.path / "base.json")
    records = {r["id"]: r for r in doc["records"]}
    assert set(records) == {"llama-base-256-qasper", "longt5-base-256-qasper", "pegasus_x-base-256-qasper"}
    arch = {r["family"]: r["model_config"]["architectures"][0] for r in records.values()}
    assert arch == {"llama": "LlamaForCausalLM", "longt5": "LongT5ForConditionalGeneration",
                    "pegasus_x": "PegasusXForConditionalGeneration"}
    impl = {r["family"]: r["model_config"]["attn_implementation"] for r in records.values()}
    assert impl == {"llama": "sdpa", "longt5": "eager", "pegasus_x": "eager"}
    assert records["llama-base-256-qasper"]["attention"].startswith("causal_full (sdpa")
    assert records["longt5-base-256-qasper"]["attention"].startswith("transient_global")
    for r in records.values():
        ph = r["phases"]
        assert ph["prefill"]["input_tokens"] == 2 * 256 * r["inference"]["passes"]
        assert ph["prefill"]["tokens_per_s"] > 0 and ph["decode"]["tokens_per_s"] > 0
        # Every batch's decode stamps: one per new token of the fixed-length generation.
        assert ph["decode"]["tokens"] == r["inference"]["samples"] * (r["inference"]["max_new_tokens"] - 1)
        assert ph["decode"]["ttft_s"]["p50"] > 0 and ph["decode"]["inter_token_latency_s"]["samples"] > 0
        assert ph["kv_cache"]["ratio"] == pytest.approx(1.0, abs=0.05)
        assert ph["check"]["generation_s"] > 0
        # Batch by batch: every generated batch has its prefill (same batches, same passes, same order).
        assert ph["check"]["pairs"]["n"] == ph["prefill"]["batches"] == r["inference"]["passes"]  # 1 batch a pass
        assert ph["check"]["pairs"]["min"] <= ph["check"]["pairs"]["median"] <= ph["check"]["pairs"]["max"]
    # The findings and the Pareto fronts are computed over the new families as over the study's.
    fronts = {f["cost"]: f for f in doc["session"]["pareto"]["fronts"]}
    assert {f["task"] for f in fronts.values()} == {"qasper"}
    for cost in ("inference_latency_p50_s", "train_time_s"):  # energy is not measured here: time fronts
        assert fronts[cost]["points"] == 3 and set(fronts[cost]["front"]) <= set(records) and fronts[cost]["front"]
    # The study's claims are about LED and Big Bird: over these families they say so rather than guess.
    assert {f["verdict"] for f in doc["session"]["findings"]} == {"cannot tell"}
    assert (bench.path / "figs" / "phases-qasper.svg").is_file()
    # The benchmark script that prints the phases' checks reads the same report.
    script = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "phase_checks.py"),
                             str(bench.path / "base.json")], capture_output=True, text=True, timeout=120, check=False)
    assert script.returncode == 0, script.stdout + script.stderr
    assert "3 cells with prefill and decode measured; 0 with a KV cache off its formula" in script.stdout
    assert "| (pre+dec)/gen | batch median |" in script.stdout
    page = (bench.path / "base.html").read_text()
    assert "prefill tok/s" in page and "decode tok/s" in page

    # The gate, against that report: every cell judged, the run passes at generous tolerances.
    again = bench.runpytest(*NEW, "--longeff-tasks=qasper", "--longeff-baseline=base.json",
                            "--longeff-fail-on=train_samples_per_s:1000%,inference_samples_per_s:1000%,work:0%")
    again.assert_outcomes(passed=3)
    for r in _doc(bench.path / "reports" / "longeff.json")["records"]:
        metrics = {c["metric"] for c in r["gate"]["checks"]}
        assert {"train_samples_per_s", "inference_samples_per_s"} <= metrics


def test_gradient_checkpointing_runs_and_is_recorded(bench: pytest.Pytester) -> None:
    result = bench.runpytest(*[a for a in NEW if not a.startswith("--longeff-families")], "--longeff-families=llama",
                             "--longeff-tasks=qasper", "--longeff-gradient-checkpointing", "--longeff-json=gc.json")
    result.assert_outcomes(passed=1)
    doc = _doc(bench.path / "gc.json")
    assert doc["settings"]["gradient_checkpointing"] is True
    (record,) = doc["records"]
    assert record["model_config"]["gradient_checkpointing"] is True and record["train"]["steps"] == 2


def test_the_interleaved_check_measures_each_family_in_pairs() -> None:
    script = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "phase_checks.py"), "--interleaved",
                             "--lengths=128", "--pairs=2", "--new-tokens=4", "--threads=1"],
                            capture_output=True, text=True, timeout=300, check=False)
    # 1: a median off by more than 5 % (timing, not judged here); never a traceback.
    assert script.returncode in (0, 1) and "Traceback" not in script.stderr, script.stdout + script.stderr
    rows = [line.split(" | ") for line in script.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row[0].strip("| ") for row in rows[1:]] == ["llama", "longt5", "pegasus_x"]
    for row in rows[1:]:
        prefill, ttft, generation, median = (float(row[k]) for k in (2, 3, 4, 5))
        low, high = (float(x) for x in row[6].split("-"))
        # The first token comes inside the generation, after a prefill's worth of work; the median is a pair's.
        assert 0 < ttft < generation and prefill > 0 and low <= median <= high
    assert "2 interleaved pairs a cell, 1 row(s) of 4 new tokens" in script.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "phase_checks.py"), "--interleaved",
                          "--lengths=many"], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "--lengths: 'many'" in bad.stderr
    # The measuring options belong to --interleaved; a report is not read with it.
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "phase_checks.py"), "--pairs=3"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "--pairs: only with --interleaved" in bad.stderr


def test_attention_option_is_refused_where_a_family_cannot_run_it(bench: pytest.Pytester) -> None:
    result = bench.runpytest("--collect-only", "--longeff-families=led,llama", "--longeff-attn-implementation=sdpa")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "--longeff-attn-implementation" in err and "'led' does not support" in err and "supports eager" in err
    result = bench.runpytest("--collect-only", "--longeff-families=llama",
                             "--longeff-attn-implementation=flash_attention_2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "flash-attn" in result.stderr.str()
    result = bench.runpytest("--collect-only", "--longeff-attn-implementation=fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "accepted: auto, eager, sdpa" in result.stderr.str()


def test_eager_decoder_only_and_ruler_tasks_run_and_select_exactly(bench: pytest.Pytester) -> None:
    args = [*NEW[1:], "--longeff-families=llama,led", "--longeff-attn-implementation=eager",
            "--longeff-tasks=niah_single,vt", "--longeff-lengths=256,512", "-k", "llama and 512"]
    # led supports eager, llama too: accepted; -k keeps exactly the two llama cells at 512.
    result = bench.runpytest(*args)
    result.assert_outcomes(passed=2)
    records = _doc(bench.path / "reports" / "longeff.json")["records"]
    assert sorted(r["id"] for r in records) == ["llama-base-512-niah_single", "llama-base-512-vt"]
    for r in records:
        assert r["model_config"]["attn_implementation"] == "eager"
        assert "ruler_all" in r["accuracy_method"]


def test_shipped_checkpoints_skip_lengths_they_were_not_trained_for(bench: pytest.Pytester) -> None:
    result = bench.runpytest(*[a for a in NEW if not a.startswith("--longeff-tiny-weights")],
                             "--longeff-families=led", "--longeff-lengths=8192", "--longeff-tasks=qasper")
    result.assert_outcomes(skipped=1)
    (record,) = _doc(bench.path / "reports" / "longeff.json")["records"]
    assert "pretrained up to 4096 tokens" in record["reason"] and "--longeff-tiny-weights random" in record["reason"]

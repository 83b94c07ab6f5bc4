"""Reports for the rendering tests, made by editing a real one: ``tests/data/report_small.json`` is the JSON
report of a real two-cell run (``pytest benchmarks/test_cells.py -k "led-base-1024-gov_report or
bigbird-large-2048-qasper" --longeff-tasks gov_report,qasper --longeff-lengths 1024,2048``, tiny profile, CPU,
no energy meter)."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

SMALL = Path(__file__).parent / "data" / "report_small.json"


def small() -> dict[str, Any]:
    """The real two-cell report (energy not measured: the CPU had no RAPL)."""
    doc: dict[str, Any] = json.loads(SMALL.read_text(encoding="utf-8"))
    return doc


def _cell(doc: dict[str, Any], i: int, family: str, size: str, length: int, task: str) -> dict[str, Any]:
    r: dict[str, Any] = copy.deepcopy(doc["records"][i % len(doc["records"])])
    r.update(id=f"{family}-{size}-{length}-{task}", family=family, size=size, seq_len=length, task=task)
    r["accuracy"]["score"] = float((i * 37) % 11)
    r["train"]["samples_per_s_stats"]["median"] = 100.0 / (i + 1)
    r["inference"]["samples_per_s"] = 50.0 / (i + 2)
    r["batch_size"] = 1 + (i % 4)
    return r


def matrix(n: int = 16) -> dict[str, Any]:
    """``n`` cells over 2 families x 2 sizes x 2 lengths x 2 tasks (and more lengths past 16)."""
    doc = small()
    combos = itertools.product(("led", "bigbird"), ("base", "large"), (1024, 2048, 3072, 4096),
                               ("gov_report", "qasper"))
    keys = sorted(combos, key=lambda c: (c[2] > 2048, c[3] != "gov_report", c))[:n]
    doc["records"] = [_cell(doc, i, *key) for i, key in enumerate(keys)]
    return doc


def with_energy(doc: dict[str, Any], every: int = 1) -> dict[str, Any]:
    """``doc`` with valid energy readings on every ``every``-th cell (the rest stay unmeasured)."""
    doc = copy.deepcopy(doc)
    for i, r in enumerate(doc["records"]):
        if i % every or "train" not in r:
            continue
        for part, joules in (("train", 40.0 + i), ("inference", 3.0 + i)):
            sec = r[part]
            sec.update(energy_j=joules, energy_valid=True, energy_method="rapl", energy_note="")
            sec["samples_per_kj"] = sec["samples"] / (joules / 1000)
        r["inference"]["j_per_sample"] = r["inference"]["energy_j"] / r["inference"]["samples"]
    return doc


def single_cell() -> dict[str, Any]:
    """The real report cut to one cell."""
    doc = small()
    doc["records"] = doc["records"][:1]
    return doc


def skipped_and_failed() -> dict[str, Any]:
    """The real cells plus a skipped cell (did not fit at batch 1), a failed one (gated) and an error one."""
    doc = small()
    base = doc["records"][0]
    ident = {k: base[k] for k in ("family", "size", "task", "profile", "device")}
    skipped = {**ident, "id": "led-base-4096-gov_report", "seq_len": 4096, "status": "skipped",
               "reason": "does not fit the memory budget at batch 1", "predictions_path": None}
    error = {**ident, "id": "led-base-3072-gov_report", "seq_len": 3072, "status": "error",
             "reason": "RuntimeError: boom", "batch_size": 2, "predictions_path": None}
    failed = copy.deepcopy(base)
    failed.update(id="led-base-2048-gov_report", seq_len=2048, status="failed", reason="gate: regression")
    doc["records"] += [skipped, failed, error]
    return doc


def merged() -> dict[str, Any]:
    """The real cells as measured on two machines, as ``pytest-longeff merge`` writes them (``machines`` and each
    record's ``machine_index``); the second machine twice as fast. Each cell appears once per machine, under the
    same id: fine for the renderers, which this serves, but a report reader refuses an id twice."""
    doc = small()
    records = []
    for index, factor in ((0, 1.0), (1, 2.0)):
        for r in copy.deepcopy(doc["records"]):
            r["machine_index"] = index
            r["train"]["samples_per_s_stats"]["median"] *= factor
            r["inference"]["latency_s"]["stats"]["median"] /= factor
            records.append(r)
    doc["machines"] = [doc["machine"], {**doc["machine"], "device": "cuda:0", "accelerator": "NVIDIA H100"}]
    doc["records"] = records
    return doc


def gated(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with a gate section on each cell: a failed, a within-noise and an unmeasured check."""
    doc = copy.deepcopy(doc)
    for i, r in enumerate(doc["records"]):
        r["gate"] = {"baseline": "baseline.json", "refused": None, "checks": [
            {"metric": "train_samples_per_s", "status": "failed" if i % 2 else "inconclusive", "baseline": 10.0,
             "current": 8.0 - i, "change": (-2.0 - i) / 10, "tolerance": 0.1, "note": "intervals apart"},
            {"metric": "inference_j_per_sample", "status": "unmeasured", "baseline": None, "current": None,
             "change": None, "tolerance": 0.1, "note": "not measured on one side: nothing to compare"}]}
    return doc

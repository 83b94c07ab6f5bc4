"""``--longeff-resume``: a run killed mid-way and resumed records every cell exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.ci.resume import load_plan, plan_resume
from pytest_longeff.record.io import SCHEMA_VERSION

TINY = ["--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=1024",
        "--longeff-tasks=gov_report,qasper,qmsum", "--longeff-train-budget=steps=2", "--longeff-eval-samples=2",
        "--longeff-repeats=1", "--longeff-idle-s=0", "--longeff-device=cpu", "--longeff-energy=none",
        "--longeff-batch-size=1", "-p", "no:randomly"]
BENCH = ("from pytest_longeff import check_record\n\n"
         "def test_cell(longeff_record):\n    check_record(longeff_record)\n")
# Figures are another module's work and take seconds: this test leaves them out.
NO_FIGURES = "import pytest_longeff.report.outputs as r\nr.render_extras = lambda *a, **k: []\n"
SOFTWARE = {"pytest_longeff": "0.1.0", "code_digest": "abc", "torch": "2", "transformers": "5"}
KIND = {"device": "cpu", "cpu": "Xeon", "torch": "2", "transformers": "5"}
SETTINGS = {"profile": "tiny", "lr": 2e-5, "json_path": "a.json", "shard": None}


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text())["records"])
    except (OSError, ValueError, KeyError):
        return []


def test_a_killed_run_resumes_with_every_cell_recorded_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH, conftest=NO_FIGURES)
    report = pytester.path / "reports" / "run.json"
    cmd = [sys.executable, "-m", "pytest", "test_bench.py", *TINY, "--longeff-json=reports/run.json",
           "--longeff-resume=reports/run.json", "-rs"]
    first = subprocess.Popen(cmd, cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _records(report) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = _records(report)
    assert 1 <= len(before) < 3, "the run was to be killed after its first record"
    second = subprocess.run(cmd, check=False, cwd=pytester.path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "carried over from" in second.stdout, [ln for ln in second.stdout.splitlines() if "resume" in ln]
    after = _records(report)
    ids = [r["id"] for r in after]
    assert sorted(ids) == sorted(f"led-base-1024-{t}" for t in ("gov_report", "qasper", "qmsum"))
    assert len(set(ids)) == 3
    by_id = {r["id"]: r for r in after}
    for old in before:
        carried = dict(by_id[old["id"]])
        assert carried.pop("carried_over") is True
        assert json.dumps(carried) == json.dumps(old)  # unchanged, key order included
    assert sum("carried_over" in r for r in after) == len(before)
    assert f"{len(before)} skipped" in second.stdout and "carried over from reports/run.json" in second.stdout
    doc = json.loads(report.read_text())
    assert doc["session"]["resumed_from"]["carried"] == len(before)
    assert doc["software"]["code_digest"] and doc["schema_version"] == SCHEMA_VERSION


def _doc(records: list[dict[str, Any]], **settings: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "machine": {**KIND, "cpu_threads": 2}, "software": SOFTWARE,
            "settings": {**SETTINGS, **settings}, "session": {}, "records": records}


def test_only_passed_cells_of_a_comparable_report_are_carried(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(_doc([{"id": "a", "status": "passed"}, {"id": "b", "status": "failed"},
                                     {"id": "c", "status": "passed"}])))
    plan = plan_resume(path, "a.json", {**SETTINGS, "json_path": "other.json", "resume": "a.json"}, SOFTWARE, KIND,
                       {"a", "b"})
    assert plan.ids == {"a"} and plan.refused == {"b": "failed there"} and plan.reason == "carried over from a.json"
    for settings, software, kind, why in (({**SETTINGS, "lr": 1.0}, SOFTWARE, KIND, "other settings (lr"),
                                          (SETTINGS, {**SOFTWARE, "code_digest": "x"}, KIND, "code_digest 'abc'"),
                                          (SETTINGS, SOFTWARE, {**KIND, "cpu": "Epyc"}, "another kind of machine")):
        plan = plan_resume(path, "a.json", settings, software, kind, {"a", "b"})
        assert not plan.ids and why in plan.note
    assert "does not exist yet" in plan_resume(tmp_path / "none.json", "none.json", SETTINGS, SOFTWARE, KIND,
                                               {"a"}).note


def test_an_unusable_resume_file_is_an_error_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text(json.dumps({"schema_version": 1, "records": []}))
    with pytest.raises(ValueError, match=r"--longeff-resume: .*old.json: schema_version 1 is not 2"):
        load_plan("old.json", tmp_path, {"device": "cpu"}, SOFTWARE, KIND, {"a"})

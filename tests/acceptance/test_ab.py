"""``pytest-longeff ab`` end to end: two environments (directories with their own benchmark module, the same
interpreter), real models measured in paired rounds, and a head whose layers do real extra work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_longeff.ab.side import node_cores

ROOT = Path(__file__).resolve().parents[2]
CELL = ["--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
        "--longeff-eval-samples=2", "--longeff-idle-s=0", "--longeff-batch-size=2", "--longeff-device=cpu",
        "--longeff-energy=none", "-p", "no:randomly"]
QUICK = ["--pairs", "2", "--min-pairs", "2", "--rounds", "1", "--window-s", "0.05"]


def _env(tmp: Path, name: str, regression: bool) -> Path:
    side = tmp / name
    side.mkdir()
    shutil.copy(ROOT / "benchmarks" / "test_cells.py", side / "test_cells.py")
    if regression:
        shutil.copy(ROOT / "benchmarks" / "regressions" / "slower_families.py", side / "conftest.py")
    return side


def _ab(tmp: Path, head: Path, *extra: str, regression: str = "none") -> tuple[int, dict, str]:  # type: ignore[type-arg]
    out = tmp / f"{head.name}.json"
    env = {**os.environ, "LONGEFF_REGRESSION": regression}
    cmd = [sys.executable, "-m", "pytest_longeff.cli", "ab", "--base", str(tmp / "base"), "--head", str(head),
           "--json", str(out), *QUICK, *extra, "--", "test_cells.py", *CELL]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    return done.returncode, json.loads(out.read_text()), done.stdout + done.stderr


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ab")
    _env(tmp, "base", False)
    _env(tmp, "same", False)
    _env(tmp, "slower", True)
    return tmp


def test_identical_sides_report_every_round_and_the_same_work(sides: Path) -> None:
    # Two pairs of one round decide little about time: once the pair budget is spent, a figure whose interval lies
    # above 0 and whose change is at least half the tolerance is a regression, which identical sides give up to
    # 2.5 % of the time a figure (the interval's one side) when the noise is wider than the tolerance. So the timed
    # figures are gated here with a tolerance nothing can exceed, and the work exactly.
    code, report, text = _ab(sides, sides / "same", "--fail-on",
                             "train_samples_per_s:100%,inference_tokens_per_s:100%,work:0%")
    assert code == 0, text
    assert report["kind"] == "longeff-ab" and report["pairs_done"] == 2
    (cell,) = report["cells"].values()
    assert {r["window"] for r in cell["rounds"]} == {"train", "inference"}
    assert {r["order"] for r in cell["rounds"]} <= {"AB", "BA"}
    assert all(r["base"]["time_s"] > 0 and r["head"]["time_s"] > 0 for r in cell["rounds"])
    assert len(cell["rounds"]) == 2 * 2  # two windows a round, one round a pair, two pairs: every one kept
    if hasattr(os, "sched_setaffinity"):
        # Every window ran on its pair's one core, both sides alike; between windows each side's process could use
        # that core's NUMA node (so both sides' unmeasured work runs at once where there are cores for it).
        measuring = report["sides"]["base"]["cpus_by_pair"]
        assert measuring == report["sides"]["head"]["cpus_by_pair"] and all(len(c) == 1 for c in measuring)
        assert all(r["base"]["cpus"] == r["head"]["cpus"] == measuring[r["pair"]] for r in cell["rounds"])
        allowed = os.sched_getaffinity(0)  # the sides start with this job's cores
        for m, between in zip(measuring, report["sides"]["base"]["cpus_between_windows_by_pair"], strict=True):
            near = (node_cores(m) or set()) & allowed
            assert between == sorted(near or allowed)
    work = next(v for v in cell["verdicts"] if v["figure"] == "work")
    assert work["verdict"] == "no regression" and work["diff"] == []
    assert cell["work"]["base"]["train"]["flops"] == cell["work"]["head"]["train"]["flops"] > 0
    assert "longeff A/B gate" in text


def test_extra_work_the_clock_cannot_see_fails_on_the_counters_with_the_operator_diff(sides: Path) -> None:
    code, report, text = _ab(sides, sides / "slower", regression="copy:1")
    assert code == 1, text
    (cell,) = report["cells"].values()
    work = next(v for v in cell["verdicts"] if v["figure"] == "work")
    assert work["verdict"] == "regression"
    assert any(line.startswith("train: aten.clone: calls") for line in work["diff"]), work["diff"]
    assert "work diff" in text and "aten.clone" in text

    # The saved report read back: `show` prints the verdicts, `compare` judges its rounds again under other rules.
    saved = sides / "slower.json"
    shown = _cli("show", str(saved))
    assert shown.returncode == 0 and "longeff A/B gate: REGRESSION" in shown.stdout and "aten.clone" in shown.stdout
    again = _cli("compare", str(saved), "--fail-on", "work:0%")
    assert again.returncode == 1 and "work (exact)" in again.stdout
    timed_only = _cli("compare", str(saved), "--fail-on", "train_samples_per_s:1000%")
    assert timed_only.returncode == 0, timed_only.stdout  # a drop of 1000 % is tolerated: no regression
    assert "work (exact)" not in timed_only.stdout
    broken = json.loads(saved.read_text())
    next(iter(broken["cells"].values()))["rounds"][0]["base"]["time_s"] = "fast"
    (sides / "broken.json").write_text(json.dumps(broken))
    refused = _cli("compare", str(sides / "broken.json"))
    assert refused.returncode == 2 and "rounds[0].base.time_s: expected a finite number" in refused.stderr
    assert "Traceback" not in refused.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_longeff.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_a_side_that_cannot_start_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_longeff.cli", "ab", "--base", str(tmp_path / "nowhere"),
                           "--head", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "--base" in done.stderr and "neither a directory" in done.stderr


def test_an_unknown_figure_names_the_accepted_ones(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_longeff.cli", "ab", "--base", str(tmp_path), "--head",
                           str(tmp_path), "--fail-on", "speed:10%"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown figure 'speed'" in done.stderr and "inference_tokens_per_s" in done.stderr

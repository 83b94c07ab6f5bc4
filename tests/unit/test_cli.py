"""The ``pytest-longeff`` command: show, help, dispatch and exit codes."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_longeff.cli import main
from pytest_longeff.record.io import SCHEMA_VERSION

RECORD = {"id": "led-base-1024-qasper", "family": "led", "size": "base", "seq_len": 1024, "task": "qasper",
          "status": "passed", "reason": None, "batch_size": 2, "batch_search": {"source": "searched"},
          "train": {"samples_per_s_stats": {"median": 4.5}, "energy_valid": False, "energy_j": None,
                    "energy_method": "none", "energy_note": "no meter"},
          "inference": {"samples_per_s": 3.0, "samples_per_s_stats": {"median": 3.25},
                        "latency_s": {"p50": 0.31, "stats": {"median": 0.31}}, "energy_valid": False,
                        "energy_method": "none", "energy_note": "no meter"},
          "accuracy": {"f1": 12.5, "score": 12.5}, "attention": "sliding_window"}


def _report(tmp_path: Path, **extra: Any) -> Path:
    doc = {"schema_version": SCHEMA_VERSION, "machine": {}, "software": {}, "session": {},
           "settings": {"profile": "tiny", "repeats": 1, "warmup_steps": 1, "train_budget": {"spec": "steps=2"},
                        "memory_budget_bytes": 2**29}, "records": [RECORD], **extra}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    return path


def test_show_prints_the_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(_report(tmp_path, shard={"index": 2, "count": 4}))]) == 0
    out = capsys.readouterr().out
    assert "1 cells, 0 window records (shard 2/4; schema 2)" in out
    row = next(line.split() for line in out.splitlines() if line.startswith("led-base-1024-qasper"))
    # infer samp/s is the gated figure (the median per batch), not the whole-window rate (3.0)
    assert row[:4] == ["led-base-1024-qasper", "passed", "12.5", "2"] and "3.25" in row and "3" not in row
    assert "training budget: steps=2" in out


def test_unusable_input_and_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junit.json").write_text('{"tests": []}')
    assert main(["show", str(tmp_path / "junit.json")]) == 2
    assert "junit.json: not a pytest-longeff JSON report" in capsys.readouterr().err
    assert main(["show"]) == 2 and main(["frobnicate"]) == 2 and main([]) == 2


@pytest.mark.parametrize("command", [[], ["merge"], ["show"], ["compare"], ["plot"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Guards help text that argparse cannot format (a bare % in compare's default --fail-on crashed it)."""
    assert main([*command, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(("command", "module"), [("compare", "pytest_longeff.ci.compare"),
                                                 ("plot", "pytest_longeff.report.plots.draw")])
def test_compare_and_plot_dispatch_to_their_modules(command: str, module: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[str]]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append((command, argv))
        raise SystemExit(1)  # e.g. a regression, said through argparse-style exit

    monkeypatch.setattr(importlib, "import_module", lambda name: SimpleNamespace(main=fake_main) if name == module
                        else pytest.fail(f"dispatched to {name}"))
    assert main([command, "a.json", "b.json", "--fail-on", "score:5%"]) == 1
    assert seen == [(command, ["a.json", "b.json", "--fail-on", "score:5%"])]


def test_module_entry_point_runs_as_a_script(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest_longeff.cli", "show", str(_report(tmp_path))],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "led-base-1024-qasper" in result.stdout

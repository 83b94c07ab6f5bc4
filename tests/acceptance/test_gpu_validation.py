"""The GPU validation script, prepared on the CPU: its commands use real options, its verdicts follow the
figures, and its report says what ran. (`python benchmarks/gpu_validation.py --rehearse` runs every step at tiny
size on the CPU; it takes about a minute and a half, so the suite checks the pieces.)"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from support.scripts import load_script

from pytest_longeff.config.settings import OPTIONS


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("gpu_validation")


@pytest.mark.parametrize("rehearse", [False, True])
def test_cell_commands_use_only_real_options(script: ModuleType, rehearse: bool, tmp_path: Path) -> None:
    command = script._cells_command(rehearse, tmp_path / "r.json")
    flags = {a for a in command if a.startswith("--longeff-")}
    assert flags <= {o.flag for o in OPTIONS}
    assert "--longeff-precision" in flags and "steps=3" in command
    if not rehearse:
        assert command[command.index("--longeff-memory-budget") + 1] == "48GiB"
        assert command[command.index("--longeff-profile") + 1] == "dims"


def _record(peak: int, within: bool, energy_valid: bool, status: str = "passed") -> dict[str, object]:
    return {"id": "led-base-4096-gov_report", "status": status, "batch_size": 3, "reason": None,
            "batch_search": {"peak_memory_bytes": peak},
            "train": {"steps": 3, "peak_memory_bytes": peak, "within_memory_budget": within,
                      "energy_valid": energy_valid, "energy_j": 900.0 if energy_valid else None,
                      "energy_uncertainty_j": 7.0, "energy_method": "nvml"}}


@pytest.mark.parametrize(("peak", "within", "energy", "status", "expected"), [
    (40 * 2**30, True, True, "passed", True),
    (49 * 2**30, True, True, "passed", False),   # the steady-state peak overran the budget
    (40 * 2**30, False, True, "passed", False),  # the exact probe said it did not fit
    (40 * 2**30, True, False, "passed", False),  # energy not valid on a GPU
    (40 * 2**30, True, True, "failed", False),   # e.g. out of memory at step 2
])
def test_a_cell_passes_only_within_budget_with_valid_energy(script: ModuleType, peak: int, within: bool,
                                                           energy: bool, status: str, expected: bool) -> None:
    row, ok = script._cell_row(_record(peak, within, energy, status), 48 * 2**30, need_energy=True)
    assert ok is expected
    assert row[-1].startswith("PASS" if expected else "FAIL")


def test_report_says_what_ran_and_exit_status_follows_failures(script: ModuleType, tmp_path: Path) -> None:
    def runner(rehearse: bool, workdir: Path) -> tuple[list[tuple[str, bool | None, str]], list[str]]:
        return [("(a) energy", None, "skipped"), ("(b) memory", True, "table"), ("(c) overhead", False, "0.9")], \
            ["- date: today"]

    out = tmp_path / "v.md"
    assert script.main(["--out", str(out)], runner=runner) == 1
    text = out.read_text()
    assert "| (a) energy | not run |" in text and "| (b) memory | PASS |" in text and "| (c) overhead | FAIL |" in text
    assert "CPU rehearsal" not in text
    assert script.main(["--rehearse", "--out", str(out)], runner=lambda r, w: ([("(b)", True, "")], [])) == 0
    assert "CPU rehearsal: not a GPU result" in out.read_text()


@pytest.mark.parametrize("rehearse", [False, True])
def test_the_recent_families_command_uses_only_real_options(script: ModuleType, rehearse: bool,
                                                           tmp_path: Path) -> None:
    command = script._recent_command(rehearse, tmp_path / "r.json")
    assert {a for a in command if a.startswith("--longeff-")} <= {o.flag for o in OPTIONS}
    assert command[command.index("--longeff-families") + 1] == "llama,longt5,pegasus_x"
    if not rehearse:
        assert command[command.index("--longeff-lengths") + 1] == "8192"


def test_a_recent_cell_passes_only_within_budget_with_the_kv_cache_on_its_formula(script: ModuleType) -> None:
    record = {"id": "llama-base-8192-niah_single", "status": "passed", "batch_size": 1,
              "train": {"peak_memory_bytes": 10 * 2**30},
              "phases": {"kv_cache": {"ratio": 1.0}, "check": {"ratio": 0.98}, "prefill": {"tokens_per_s": 9e4},
                         "decode": {"tokens_per_s": 50.0, "ttft_s": {"p50": 0.1}}}}
    assert script._phase_row(record, 48 * 2**30)[1] is True
    record["phases"]["kv_cache"]["ratio"] = 1.2  # type: ignore[index]
    row, ok = script._phase_row(record, 48 * 2**30)
    assert ok is False and row[-1].startswith("FAIL")

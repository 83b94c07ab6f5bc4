"""The GPU energy device check runs on the CPU with the fake pynvml and a CPU load standing in for the GPU's."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import ModuleType

import pytest
from support.fake_pynvml import FakeGpu, FakeNvml
from support.scripts import load_script


def _script() -> ModuleType:
    return load_script("device_check_energy")


def _cpu_load(seconds: float) -> int:
    steps = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sum(range(1000))
        steps += 1
    return steps


@pytest.mark.parametrize("align", [False, True])
def test_device_check_passes_on_a_fake_gpu_and_writes_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], align: bool
) -> None:
    fake = FakeNvml([FakeGpu(name="NVIDIA Fake H200", power_w=300.0, pstate=8, instant_power=True)])
    out = tmp_path / "check.md"
    argv = ["--seconds", "0.4", "--idle-seconds", "0.25", "--sample-hz", "100", "--markdown", str(out)]
    status = _script().main([*argv, "--align"] if align else argv, nvml=fake, load=_cpu_load)
    printed = capsys.readouterr().out
    assert status == 0, printed
    text = out.read_text()
    assert text.startswith("# Energy device check (a)")
    period = re.search(r"\| counter update period \| ([0-9.]+) ms", text)
    # The fake counter ticks every 100 ms; polling on a loaded machine may see each change a few ms late.
    assert period is not None and 85 <= float(period.group(1)) <= 115, text
    for needle in (
        "| agree | True",
        "| result | PASS |",
        "idle state | P8",
        "POWER_INSTANT",
    ):
        assert needle in text, needle
    assert "nvml energy" in printed and "+/-" in printed


def test_device_check_fails_when_another_process_shares_the_gpu(tmp_path: Path) -> None:
    fake = FakeNvml([FakeGpu(power_w=300.0, processes=[4242])])
    out = tmp_path / "check.md"
    argv = ["--seconds", "0.3", "--idle-seconds", "0.2", "--markdown", str(out)]
    assert _script().main(argv, nvml=fake, load=_cpu_load) == 1
    assert "| nvml other processes | 4242 |" in out.read_text()


def test_device_check_without_nvml_exits_2() -> None:
    assert _script().main(["--seconds", "0.1"], nvml=FakeNvml(library_present=False), load=_cpu_load) == 2

"""Device check (a) of the GPU validation: do the ``nvml`` (energy counter) and ``nvml-power`` (sampled power)
meters agree within their stated uncertainties on a real GPU?

Measures the counter's update period, an idle baseline (with the GPU's performance state and clocks), then one
window of a matmul loop on the GPU (default 15 s) with both meters at once. Reports both energies with their
uncertainties, whether they agree within the combined uncertainty, the power source of ``nvml-power``
(instantaneous or a 1-s average), and any throttling or other processes seen. Run from the repository root on a
machine with an NVIDIA GPU:

    python benchmarks/device_check_energy.py [--seconds 15] [--idle-seconds 10] [--markdown PATH] [--align]

Exit status: 0 when both readings are valid and agree, 1 otherwise, 2 when there is no usable GPU. Takes about
30 s. ``main(argv, nvml=..., load=...)`` runs it with an injected pynvml and load (the tests use a fake NVML and
a CPU loop).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

# A script run as `python benchmarks/x.py` has benchmarks/ on sys.path, not the repository root; the package
# need not be installed on the GPU machine.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_longeff.energy import EnergyReading, IdleBaseline, Meter, MeterUnavailable, make_meter, measure_idle

MATMUL_N = 8192

Load = Callable[[float], int]
"""Runs work for about the given seconds, synchronised at the end; returns how many steps it ran."""


def gpu_matmul_load(seconds: float) -> int:
    """fp16 matmuls of :data:`MATMUL_N` squared on cuda:0 for ``seconds``, synchronised every 8 steps."""
    import torch

    a = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.float16)
    b = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.float16)
    torch.cuda.synchronize()
    steps = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        a = (a @ b) * 1e-4
        steps += 1
        if steps % 8 == 0:
            torch.cuda.synchronize()  # else the CPU races ahead of the queue and the window ends first
    torch.cuda.synchronize()
    return steps


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the measured load (default 15)")
    parser.add_argument("--sample-hz", type=float, default=20.0, help="nvml-power sampling rate (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle baseline window (default 10)")
    parser.add_argument("--align", action="store_true", help="align the counter's window edges to its ticks")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results as Markdown here")
    return parser.parse_args(argv)


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} {unit}"


def _ms(seconds: object) -> str:
    return f"{seconds * 1000:.1f} ms" if isinstance(seconds, float) else "n/a"


def _reading_rows(label: str, r: EnergyReading) -> list[tuple[str, str]]:
    mean_w = r.energy_j / r.time_s if r.energy_j is not None and r.time_s > 0 else None
    return [
        (f"{label} energy", f"{_fmt(r.energy_j, 'J')} +/- {_fmt(r.uncertainty_j, 'J', 2)}"),
        (f"{label} window", f"{r.time_s:.3f} s, mean {_fmt(mean_w, 'W')}, {r.samples} samples, coarse={r.coarse}"),
        (f"{label} valid", f"{r.valid}: {r.note}"),
        (f"{label} other processes", ", ".join(map(str, r.other_processes)) or "none"),
        (f"{label} clock-event reasons", ", ".join(r.throttle_reasons) or "none"),
    ]


def _agreement(a: EnergyReading, b: EnergyReading) -> tuple[bool, str]:
    if a.energy_j is None or b.energy_j is None or a.uncertainty_j is None or b.uncertainty_j is None:
        return False, "n/a (a reading or its uncertainty is missing)"
    diff = b.energy_j - a.energy_j
    combined = a.uncertainty_j + b.uncertainty_j
    agree = abs(diff) <= combined
    return agree, f"{diff:+.2f} J ({diff / a.energy_j * 100:+.2f} %), combined uncertainty {combined:.2f} J"


def _idle_rows(idle: IdleBaseline) -> list[tuple[str, str]]:
    return [
        ("idle power", f"{_fmt(idle.power_w, 'W')} +/- {_fmt(idle.uncertainty_w, 'W', 2)} over {idle.time_s:.1f} s"),
        ("idle state", f"P{idle.pstate}, SM {idle.sm_clock_mhz} MHz, memory {idle.mem_clock_mhz} MHz"),
        ("idle valid", f"{idle.valid}: {idle.note}"),
    ]


def _write_markdown(path: Path, rows: list[tuple[str, str]]) -> None:
    lines = ["# Energy device check (a): nvml vs nvml-power", "", "| what | result |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _measure(counter: Meter, power: Meter, load: Load, args: argparse.Namespace) -> list[tuple[str, str]]:
    facts = counter.describe()
    gpus = facts.get("gpus")
    gpu = gpus[0] if isinstance(gpus, list) and gpus else {}
    rows = [
        ("GPU", f"{gpu.get('name')} (NVML index {gpu.get('nvml_index')}), limit {gpu.get('power_limit_w')} W"),
        ("driver", str(facts.get("driver_version"))),
        ("counter meter", f"{counter.method} (a fallback to nvml-power shows here)"),
        ("counter update period", f"{_ms(facts.get('counter_update_period_s'))} ({facts.get('counter_update_note')})"),
        ("nvml-power source", str(power.describe().get("power_source"))),
    ]
    rows += _idle_rows(measure_idle(counter, args.idle_seconds))
    counter.start()
    power.start()
    steps = load(args.seconds)
    power_reading = power.stop()
    counter_reading = counter.stop()
    agree, how = _agreement(counter_reading, power_reading)
    rows += [("load", f"{steps} steps over {args.seconds:g} s")]
    rows += _reading_rows(counter.method, counter_reading) + _reading_rows(power.method, power_reading)
    ok = counter_reading.valid and power_reading.valid and agree
    rows += [("agree", f"{agree}: nvml-power - {counter.method} = {how}"), ("result", "PASS" if ok else "FAIL")]
    return rows


def main(argv: list[str] | None = None, *, nvml: ModuleType | None = None, load: Load | None = None) -> int:
    """Run the check; ``nvml`` and ``load`` replace pynvml and the GPU matmul loop (tests)."""
    args = _parse(argv)
    if load is None:
        import torch

        if not torch.cuda.is_available():
            print(f"device_check_energy: no CUDA GPU visible to PyTorch (torch {torch.__version__})", file=sys.stderr)
            return 2
        load = gpu_matmul_load
        load(1.0)  # warm-up: kernel selection and allocation stay out of the windows
    try:
        counter, warnings = make_meter("nvml", "cuda", nvml=nvml, legacy=False, align=args.align)
        power, more = make_meter("nvml-power", "cuda", nvml=nvml, sample_hz=args.sample_hz, legacy=False)
    except MeterUnavailable as exc:
        print(f"device_check_energy: NVML meters unavailable: {exc}", file=sys.stderr)
        return 2
    try:
        rows = [("warning", w) for w in warnings + more] + _measure(counter, power, load, args)
    finally:
        counter.close()
        power.close()
    for key, value in rows:
        print(f"{key:<28} {value}")
    if args.markdown is not None:
        _write_markdown(args.markdown, rows)
    return 0 if rows[-1][1] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

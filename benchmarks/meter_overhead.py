"""Overhead of the nvml-power sampling thread on a fixed CPU workload. Target: at most 1 % slowdown.

Runs a fixed torch matmul workload (calibrated to about ``--seconds`` once, then held fixed) ``--runs`` times
without a meter and ``--runs`` times with the sampling thread running, interleaved so that drift in the
machine's speed hits both equally, and prints the median times and the slowdown.

With NVML present the thread is the real ``nvml-power`` meter reading GPU power. Without NVML (a CPU-only
machine) the same sampling loop (``PowerSampler``) is driven by a stand-in power source that reads a clock;
that measures the loop's own cost (thread wake-ups, GIL hand-offs, bookkeeping) but not the driver call, and
the output says so.

    python benchmarks/meter_overhead.py [--runs 5] [--seconds 3] [--sample-hz 20]

Exit status 0 when the slowdown is within the target, 1 when above (re-run on a quiet machine before believing
a small excess: run-to-run noise on a shared machine is often around 1 %).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# A script run as `python benchmarks/x.py` has benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_longeff.energy import MeterUnavailable, NvmlPowerMeter, PowerSampler, make_meter

TARGET_SLOWDOWN_PCT = 1.0
MATRIX_N = 384
WARMUP_MAX_S = 20.0


def make_workload(seconds: float) -> Callable[[], None]:
    """A CPU matmul loop that takes about ``seconds`` here, with its iteration count fixed after calibration."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(MATRIX_N, MATRIX_N, generator=generator)
    b = torch.randn(MATRIX_N, MATRIX_N, generator=generator)

    def run(iterations: int) -> None:
        c = a
        for _ in range(iterations):
            # Renormalise so that values stay finite and the work per iteration stays constant.
            c = torch.tanh(c @ b)

    # Warm up until the speed settles: thread-pool start-up, and on some VMs the first seconds of multi-threaded
    # work run several times slower than the rest, which would make the calibration (and run 1) meaningless.
    probe = 20
    previous_s: float | None = None
    deadline = time.perf_counter() + WARMUP_MAX_S
    while True:
        start = time.perf_counter()
        run(probe)
        per_iteration_s = (time.perf_counter() - start) / probe
        settled = previous_s is not None and abs(per_iteration_s - previous_s) <= 0.05 * previous_s
        if settled or time.perf_counter() > deadline:
            break
        previous_s = per_iteration_s
    iterations = max(1, round(seconds / per_iteration_s))
    return lambda: run(iterations)


class _Sampling:
    """Start/stop a sampling thread around one run: the real nvml-power meter if NVML works, else a stand-in."""

    def __init__(self, sample_hz: float) -> None:
        self._meter: NvmlPowerMeter | None = None
        try:
            meter, _ = make_meter("nvml-power", "cuda", sample_hz=sample_hz)
        except MeterUnavailable:
            self._sampler = PowerSampler(time.perf_counter, sample_hz=sample_hz)
            self.label = (
                f"STAND-IN power source (time.perf_counter) in the real PowerSampler loop at {sample_hz:g} Hz; "
                "NVML is unavailable here, so the driver call's cost is not included"
            )
        else:
            assert isinstance(meter, NvmlPowerMeter)
            self._meter = meter
            self._sampler = meter.sampler
            self.label = f"real nvml-power meter at {sample_hz:g} Hz"
        self.samples: list[int] = []
        self.thread_cpu_s: list[float] = []

    def start(self) -> None:
        if self._meter is not None:
            self._meter.start()
        else:
            self._sampler.start()

    def stop(self) -> None:
        if self._meter is not None:
            self.samples.append(self._meter.stop().samples)
        else:
            self._sampler.stop()
            self.samples.append(len(self._sampler.samples()))
        self.thread_cpu_s.append(self._sampler.cpu_time_s)

    def close(self) -> None:
        if self._meter is not None:
            self._meter.close()
        self._sampler.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="runs with and without the meter each (default 5)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one workload run (default 3)")
    parser.add_argument("--sample-hz", type=float, default=20.0, help="sampling rate (default 20)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    workload = make_workload(args.seconds)
    sampling = _Sampling(args.sample_hz)
    print(f"meter        {sampling.label}")
    print(f"workload     {MATRIX_N}x{MATRIX_N} float32 matmuls on {torch.get_num_threads()} torch thread(s)")

    bare_s: list[float] = []
    metered_s: list[float] = []
    try:
        for i in range(args.runs):
            # Alternate which goes first so that a trend in machine speed does not favour one side.
            order = ("bare", "metered") if i % 2 == 0 else ("metered", "bare")
            for kind in order:
                if kind == "metered":
                    sampling.start()
                start = time.perf_counter()
                workload()
                elapsed = time.perf_counter() - start
                if kind == "metered":
                    sampling.stop()
                    metered_s.append(elapsed)
                else:
                    bare_s.append(elapsed)
    finally:
        sampling.close()

    bare = statistics.median(bare_s)
    metered = statistics.median(metered_s)
    medians_pct = (metered / bare - 1.0) * 100.0
    # Each run i pairs a bare and a metered run made back to back, so their ratio cancels slow drift in the
    # machine's speed; the median over pairs also ignores a single run hit by a stall.
    paired_pct = statistics.median((m / b - 1.0) * 100.0 for m, b in zip(metered_s, bare_s, strict=True))
    noise_pct = statistics.median(abs(t / bare - 1.0) * 100.0 for t in bare_s)
    print(f"runs         {args.runs} each; samples per metered run: {sampling.samples}")
    print(f"without      median {bare:.4f} s  ({', '.join(f'{t:.3f}' for t in bare_s)})")
    print(f"with meter   median {metered:.4f} s  ({', '.join(f'{t:.3f}' for t in metered_s)})")
    print(
        f"slowdown     {medians_pct:+.2f} % (ratio of medians), {paired_pct:+.2f} % (median of paired ratios)"
    )
    # The thread's own CPU time is free of run-to-run noise: what it costs directly, before any cache or
    # scheduling effects on the workload.
    thread_pct = math.fsum(sampling.thread_cpu_s) / math.fsum(metered_s) * 100.0
    per_sample_us = math.fsum(sampling.thread_cpu_s) / max(1, sum(sampling.samples)) * 1e6
    print(
        f"thread CPU   {math.fsum(sampling.thread_cpu_s) * 1000:.1f} ms over {math.fsum(metered_s):.1f} s of metered "
        f"runs = {thread_pct:.3f} % of one core ({per_sample_us:.0f} us per sample)"
    )
    print(f"noise        median deviation of runs without meter from their median: {noise_pct:.2f} %")
    within = paired_pct <= TARGET_SLOWDOWN_PCT
    print(
        f"result       paired slowdown {paired_pct:+.2f} % (target <= {TARGET_SLOWDOWN_PCT:g} %): "
        + ("within target" if within else "ABOVE target")
    )
    if noise_pct > TARGET_SLOWDOWN_PCT:
        print(
            "caution      run-to-run noise exceeds the target on this machine; the verdict is not resolved. "
            "Use more --runs, --threads 1, or a quieter machine."
        )
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())

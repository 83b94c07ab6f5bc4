"""Run the benchmark matrix as a SLURM job array through submitit: one array task per shard.

    pip install "pytest-longeff[submitit]"
    python examples/slurm_submitit.py --shards 4 --partition gpu -- --longeff-profile dims --longeff-device cuda
    pytest-longeff merge reports/shards/shard-*.json -o reports/longeff.json
    pytest-longeff compare baseline.json reports/longeff.json --fail-on "train_samples_per_s:10%"

Each task runs ``pytest benchmarks --longeff-shard K/N --longeff-json DIR/shard-K.json ARGS`` in-process through
``pytest.main``; ``--cluster local`` runs the array on this machine (submitit's local executor), ``--cluster debug``
in this process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_shard(k: int, n: int, out_dir: str, args: list[str], tests: str = "benchmarks") -> int:
    """The job function: shard ``k`` of ``n`` into ``out_dir/shard-k.json``; returns pytest's exit code."""
    import pytest

    report = Path(out_dir) / f"shard-{k}.json"
    return int(pytest.main([tests, f"--longeff-shard={k}/{n}", f"--longeff-json={report}", "-p", "no:cacheprovider",
                            *args]))


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Arguments; everything after ``--`` goes to pytest."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--shards", type=int, default=4, help="number of shards (array tasks)")
    p.add_argument("--out", default="reports/shards", help="where the shard reports go")
    p.add_argument("--folder", default="submitit-logs", help="submitit's log folder")
    p.add_argument("--cluster", default=None, help="slurm (default when available), local or debug")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per task (0 on a CPU-only machine)")
    p.add_argument("--timeout-min", type=int, default=240, help="time limit per task, minutes")
    p.add_argument("--tests", default="benchmarks", help="the benchmark folder or file")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then pytest arguments")
    ns = p.parse_args(argv)
    ns.pytest_args = [a for a in ns.pytest_args if a != "--"]
    return ns


def main(argv: list[str] | None = None) -> int:
    """Submit the array, wait for it, and return the worst exit code of its tasks."""
    import submitit

    ns = parse(argv)
    Path(ns.out).mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=ns.folder, cluster=ns.cluster)
    executor.update_parameters(timeout_min=ns.timeout_min, slurm_array_parallelism=ns.shards, gpus_per_node=ns.gpus,
                               tasks_per_node=1, nodes=1, name="longeff")
    if ns.partition:
        executor.update_parameters(slurm_partition=ns.partition)
    ks = list(range(1, ns.shards + 1))
    jobs = executor.map_array(run_shard, ks, [ns.shards] * len(ks), [str(Path(ns.out).resolve())] * len(ks),
                              [ns.pytest_args] * len(ks), [ns.tests] * len(ks))
    print(f"submitted {len(jobs)} tasks: {', '.join(str(j.job_id) for j in jobs)}")
    codes = [int(j.result()) for j in jobs]
    print(f"exit codes per shard: {codes}; merge with: pytest-longeff merge {ns.out}/shard-*.json -o longeff.json")
    return max(codes, default=0)


if __name__ == "__main__":
    sys.exit(main())

"""Does the batch-size probe cover what training holds, cell by cell, at the tiny scale?

    .venv/bin/python benchmarks/probe_steady_state.py [--families led,bigbird] [--sizes base,large]
        [--lengths 1024,2048,3072,4096] [--budget 512MiB] [--steps 12] [--threads N]

For each cell (tiny profile, the shipped checkpoint where there is one, the generated gov_report training split
prepared as a tiny cell prepares it) the suite's own search finds the batch under ``--budget`` with its real
probes; then, in the same process and under the same allocator settings as a session, a fresh AdamW trains
``--steps`` steps at that batch on successive rows (the cell's training step and the study's clipping), and its
peak is read as a train window reads it: the process high-water mark above the start, plus the weights. Printed per
cell: the chosen batch, the probe's figure, the training peak after its first step, after as many steps as a probe
takes, and after all of them, and the last one's ratio to the probe's. A ratio above 1 is memory the probe did not
see; a peak above the budget is a budget the search did not hold: exit 1 when a cell's is.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from tiny_matrix import TinyCells, add_cell_arguments, proc_status, reset_high_water_mark

    add_cell_arguments(parser, lengths="1024,2048,3072,4096")
    parser.add_argument("--budget", default=None,
                        help="memory budget of the search (default: the tiny profile's, 512MiB)")
    parser.add_argument("--steps", type=int, default=12, help="training steps after the search (default %(default)s)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, not {args.steps}")
    cells = TinyCells(parser, args)

    from pytest_longeff.cell.batch import probe_steps
    from pytest_longeff.cell.train import _optimizer_step, make_optimizer, train_step, weight_bytes
    from pytest_longeff.measure.window import release_memory, settle_cpu_allocator
    from pytest_longeff.units import parse_size

    budget_text = args.budget or cells.profile.default_memory_budget
    try:
        budget = parse_size(budget_text)
    except ValueError as exc:
        parser.error(f"--budget: {exc}")
    settle_cpu_allocator("cpu")
    k = probe_steps("cpu")
    head = ["cell", "batch", "probe MiB", "training after 1 step", f"after {k}", f"after {args.steps}",
            f"after {args.steps} / probe"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head), flush=True)
    ratios: list[float] = []
    over_budget = 0
    for name, size, length in cells:
        split, built = cells.prepare(name, size, length)
        found = cells.search(built, split, budget)
        if found.batch_size < 1 or found.peak_memory_bytes is None:
            print(f"| {name} {size} {length} | none fits | | | | | |", flush=True)
            continue
        batch, probe = found.batch_size, found.peak_memory_bytes
        model = built.model.train()
        model.zero_grad(set_to_none=True)
        opt = make_optimizer(model, 1e-9)
        release_memory("cpu")
        start = proc_status("VmRSS")
        reset_high_water_mark()
        peaks = []
        for step in range(args.steps):
            index = [(step * batch + i) % len(split.ids) for i in range(batch)]
            train_step(built, split, index, "cpu", 1)
            _optimizer_step(model, opt, None)
            model.zero_grad(set_to_none=True)
            peaks.append(proc_status("VmHWM") - start + weight_bytes(model))
        ratio = peaks[-1] / probe
        ratios.append(ratio)
        over_budget += peaks[-1] > budget
        at_k = peaks[min(k, len(peaks)) - 1]
        print(f"| {name} {size} {length} | {batch} | {probe / MIB:.1f} | {peaks[0] / MIB:.1f} | "
              f"{at_k / MIB:.1f} | {peaks[-1] / MIB:.1f} | {ratio:.3f} |", flush=True)
        del built, model, split, opt
        release_memory("cpu")
    if not ratios:
        print(f"\nno cell fits {budget_text}: nothing to compare")
        return 1
    over = sum(r > 1 for r in ratios)
    print(f"\n{len(ratios)} cells, budget {budget_text}, probes of {k} steps; training peak after {args.steps} steps "
          f"over the probe's figure: median {statistics.median(ratios):.3f}, max {max(ratios):.3f}; {over} cell(s) "
          f"above the probe, {over_budget} above the budget.")
    return 1 if over_budget else 0


if __name__ == "__main__":
    raise SystemExit(main())

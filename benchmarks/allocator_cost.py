"""What glibc's mmap threshold costs and hides in a cell's training and generation on the CPU.

    .venv/bin/python benchmarks/allocator_cost.py [--families led,bigbird] [--sizes base,large]
        [--lengths 1024,4096] [--rounds 6] [--steps 3] [--new-tokens 16] [--threads N]

For each cell (tiny profile, the shipped checkpoint, the generated gov_report training split, the batch the suite's
search finds under the tiny budget) the same model trains and generates in rounds under several settings of
malloc's mmap threshold (``--thresholds``; the last is the reference, by default 32 MiB: glibc's dynamic ceiling,
which a session's windows and probes run at), in ABBA order. A round is ``--steps`` training steps (forward,
backward, clipping, AdamW) and one greedy generation of ``--new-tokens`` tokens of the first batch (the end token
suppressed until then, so every setting does the same work). Each round starts from a trimmed heap and a reset
high-water mark.

Printed per cell: the median step time under each setting, the median of the rounds' paired ratios (each setting
over the reference) with their range for training steps and generation, and the training rounds' peak memory (the
process high-water mark above the round's start, plus the weights, as a train window reports it) under each
setting against the batch-size probe's figure for the same batch. A peak above the probe's is a budget the search
would not have held.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 2**20


def _ratio_cell(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from tiny_matrix import TinyCells, add_cell_arguments, proc_status, reset_high_water_mark

    add_cell_arguments(parser, lengths="1024,4096")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per setting, ABBA order (default %(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per round (default %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per round (default %(default)s)")
    parser.add_argument("--thresholds", default="4MiB,32MiB",
                        help="mmap thresholds to compare, the last being the reference (default %(default)s)")
    args = parser.parse_args(argv)
    for name in ("rounds", "steps", "new_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    from pytest_longeff.units import parse_size

    try:
        settings = {t.strip(): parse_size(t.strip()) for t in args.thresholds.split(",")}
    except ValueError as exc:
        parser.error(f"--thresholds: {exc}")
    if len(settings) < 2:
        parser.error(f"--thresholds takes at least two sizes, not {args.thresholds!r}")
    cells = TinyCells(parser, args)

    import torch

    from pytest_longeff.cell.fixed import Stepper
    from pytest_longeff.cell.infer import pin_generation
    from pytest_longeff.cell.train import batch_tensors, weight_bytes
    from pytest_longeff.measure.window import RELAXED_MMAP_THRESHOLD

    libc = ctypes.CDLL("libc.so.6")
    budget = parse_size(cells.profile.default_memory_budget)

    labels = list(settings)
    ref = labels[-1]
    others = labels[:-1]
    head = (["cell", "batch"] + [f"step s {k}" for k in labels] + [f"step {k}/{ref}" for k in others]
            + [f"generate {k}/{ref}" for k in others] + ["probe MiB"] + [f"train peak MiB {k}" for k in labels])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head), flush=True)
    above: dict[str, int] = dict.fromkeys(labels, 0)
    for name, size, length in cells:
        split, built = cells.prepare(name, size, length)
        family = built.family
        found = cells.search(built, split, budget)
        if found.batch_size < 1 or found.peak_memory_bytes is None:
            print(f"| {name} {size} {length} | none fits |" + " |" * (len(head) - 2), flush=True)
            continue
        batch, probe = found.batch_size, found.peak_memory_bytes
        model = built.model
        index = list(range(batch))
        ids, mask, _ = batch_tensors(split, index, "cpu")
        steps: dict[str, list[float]] = {k: [] for k in labels}
        gens: dict[str, list[float]] = {k: [] for k in labels}
        peaks: dict[str, list[int]] = {k: [] for k in labels}
        for r in range(args.rounds):
            for label in (labels if r % 2 == 0 else labels[::-1]):
                libc.mallopt(-3, settings[label])
                libc.malloc_trim(0)
                stepper = Stepper(built, split, batch, "cpu", lr=1e-9)  # the cell's steps: clipping, AdamW
                start = proc_status("VmRSS")
                reset_high_water_mark()
                times = [stepper.run(1) for _ in range(args.steps)]
                peaks[label].append(proc_status("VmHWM") - start + weight_bytes(model))
                steps[label].append(statistics.median(times))
                del stepper
                model.eval()
                pin_generation(model)
                with torch.no_grad():
                    t0 = time.perf_counter()
                    model.generate(**family.model_inputs(ids, mask), max_new_tokens=args.new_tokens,
                                   min_new_tokens=args.new_tokens, num_beams=1, do_sample=False)
                    gens[label].append(time.perf_counter() - t0)
        row = [f"{name} {size} {length}", str(batch)]
        row += [f"{statistics.median(steps[k]):.4f}" for k in labels]
        row += [_ratio_cell([x / y for x, y in zip(steps[k], steps[ref], strict=True)]) for k in others]
        row += [_ratio_cell([x / y for x, y in zip(gens[k], gens[ref], strict=True)]) for k in others]
        row += [f"{probe / MIB:.1f}"] + [f"{max(peaks[k]) / MIB:.1f}" for k in labels]
        for k in labels:
            above[k] += max(peaks[k]) > probe
        print("| " + " | ".join(row) + " |", flush=True)
        del built, model, split, ids, mask
        libc.mallopt(-3, RELAXED_MMAP_THRESHOLD)
        libc.malloc_trim(0)
    print(f"\n{args.rounds} rounds, each setting once a round (order reversed every other round); {args.steps} "
          f"training steps and one {args.new_tokens}-token generation a setting a round; torch threads "
          f"{torch.get_num_threads()}. Ratios: median (range) of the rounds' paired ratios against {ref}; peaks: "
          f"the highest round's. Cells whose training peak exceeded the batch-size probe's figure: "
          + ", ".join(f"{above[k]} under {k}" for k in labels) + ".")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

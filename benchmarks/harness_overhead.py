"""Harness overhead: the cell's fine-tuning loop against an independent bare PyTorch loop, in one process.

Both train the same model (reset to the same initial weights before every run), at the same batch size, on the same
tokenised data, with the same optimiser settings; they alternate in pairs (harness, bare, harness, bare, ...) so
drifting machine load hits both alike. Each run's throughput is samples / wall time of its steps after one warm-up
step, measured from outside both loops with the device synchronised. The ratio harness / bare is printed per pair
and as a median; 1.0 means no overhead, and the target is at least 0.97.

    python benchmarks/harness_overhead.py                      # tiny LED base at 1024 tokens, 7 pairs
    python benchmarks/harness_overhead.py --profile dims --length 1024 --batch 2 --steps 3 --pairs 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pytest_longeff.cell.budget import parse_train_budget
from pytest_longeff.cell.precision import Precision
from pytest_longeff.cell.prepare import TokenizedSplit
from pytest_longeff.cell.train import TrainPlan, fine_tune
from pytest_longeff.data.scrolls import generate_task
from pytest_longeff.data.tokenizer import train_tokenizer
from pytest_longeff.matrix import Cell
from pytest_longeff.measure.window import synchronize
from pytest_longeff.models.families import BUILTIN_FAMILIES, BuiltModel, build_model

WARMUP_STEPS = 1


def _data(task: str, length: int, rows: int) -> tuple[TokenizedSplit, Any]:
    train = generate_task(task, seed=0, n_train=rows, n_validation=2)["train"]
    inputs, outputs = [r.input for r in train], [r.output for r in train]
    tok = train_tokenizer(inputs + outputs)
    enc = tok(inputs, max_length=length, truncation=True, padding="max_length", return_tensors="pt")
    tgt = tok(outputs, max_length=128, truncation=True, padding="longest", return_tensors="pt")
    labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
    split = TokenizedSplit([str(i) for i in range(len(inputs))], enc["input_ids"], enc["attention_mask"], labels,
                           int(enc["attention_mask"].sum()))
    return split, tok


def _bare(built: BuiltModel, split: TokenizedSplit, batch: int, steps: int, device: str, lr: float) -> list[float]:
    """A plain loop: AdamW, forward, backward, clip, step; returns each step's wall time."""
    model = built.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.001)
    rng = random.Random(0)
    times = []
    for _ in range(steps):
        index = torch.tensor(rng.sample(range(len(split.ids)), batch))
        labels = split.labels[index]
        width = int((labels != -100).sum(dim=1).max()) or 1
        ids = split.input_ids[index].to(device)
        mask = split.attention_mask[index].to(device)
        t0 = time.perf_counter()
        out = model(**built.family.model_inputs(ids, mask), labels=labels[:, :width].to(device))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def _throughput(batch: int, times: list[float]) -> float:
    timed = times[WARMUP_STEPS:]
    return batch * len(timed) / sum(timed)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("tiny", "dims"), default="tiny")
    parser.add_argument("--family", default="led")
    parser.add_argument("--size", default="base")
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6, help="steps per run (the first is warm-up)")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16", "fp16"), default="fp32")
    return parser


def measure(argv: list[str] | None = None, out: Any = sys.stdout) -> list[float]:
    """Run the pairs and return the harness/bare throughput ratios (printing each pair)."""
    args = _parser().parse_args(argv)
    family = next(f for f in BUILTIN_FAMILIES if f.name == args.family)
    split, tok = _data("gov_report", args.length, max(16, args.batch * args.steps))
    built = build_model(family, args.size, args.profile, len(tok), max(4096, args.length), None, seed=0)
    built.model.to(args.device)
    family.prepare(built.model, args.length)
    precision = Precision(args.precision, args.device)
    cell = Cell(args.family, args.size, args.length, "gov_report")
    print(f"harness vs bare loop: {built.label}, {cell.id}, batch {args.batch}, {args.steps} steps per run "
          f"({WARMUP_STEPS} warm-up), {args.pairs} pairs, device {args.device}, precision {args.precision}", file=out)
    ratios = []
    with precision.matmul():
        for pair in range(args.pairs):
            built.reset()
            plan = TrainPlan(args.batch, 1, parse_train_budget(f"steps={args.steps}"), args.device, 0, 2e-5,
                             precision=precision)
            result = fine_tune(built, split, split, plan)
            synchronize(args.device)
            harness = _throughput(args.batch, result.step_times_s)
            built.reset()
            bare = _throughput(args.batch, _bare(built, split, args.batch, args.steps, args.device, 2e-5))
            ratios.append(harness / bare)
            print(f"  pair {pair + 1}: harness {harness:.3f} samples/s, bare {bare:.3f} samples/s, ratio "
                  f"{harness / bare:.3f}", file=out)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    print(f"median ratio harness/bare: {statistics.median(ratios):.3f} (IQR {q[0]:.3f}..{q[2]:.3f}; target >= 0.97)",
          file=out)
    return ratios


def main(argv: list[str] | None = None) -> int:
    measure(argv)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())

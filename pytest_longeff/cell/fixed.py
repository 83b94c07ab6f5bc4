"""Fixed work, for figures that do not move with what a model learnt: training steps on fixed rows, generation of a
fixed number of new tokens, and the work counters of each (:mod:`pytest_longeff.measure.work`).

A cell's fine-tuning stops when its budget says and its generations end when the model emits an end token, so
whole-window figures change when training changes what the model says. A step on the same rows and a generation of
exactly ``tokens`` new tokens per row (the end token suppressed until then) cost the same whatever the weights: this
is what :mod:`pytest_longeff.ab` times on both sides and what the work counters count.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from pytest_longeff.cell.infer import pin_generation
from pytest_longeff.cell.precision import FP32, Precision
from pytest_longeff.cell.train import MAX_GRAD_NORM, batch_tensors, make_optimizer, train_step
from pytest_longeff.measure.window import synchronize
from pytest_longeff.measure.work import Work, count_work

if TYPE_CHECKING:
    from pytest_longeff.cell.prepare import TokenizedSplit
    from pytest_longeff.models.families import BuiltModel

STEP_WORK = "forward and backward of one micro-batch at the cell's batch size (no optimiser step)"
TOKEN_WORK = "greedy generation of a fixed number of new tokens for one batch, per generated token"


def rows(split: TokenizedSplit, batch_size: int, start: int = 0) -> list[int]:
    """``batch_size`` row indices from ``start``, wrapping around the split."""
    return [(start + i) % len(split.ids) for i in range(batch_size)]


class Stepper:
    """Training steps at a fixed batch with the study's optimiser, each on the next rows in order (no shuffling), so
    that both sides of a comparison do the same steps."""

    def __init__(self, built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str,
                 precision: Precision = FP32, lr: float = 5e-5) -> None:
        self.built, self.split, self.batch_size, self.device, self.precision = built, split, batch_size, device, precision
        self.opt = make_optimizer(built.model, lr)
        self.next_row = 0

    def run(self, steps: int) -> float:
        """Take ``steps`` optimiser steps; their wall time in seconds between device-synchronised edges."""
        model = self.built.model
        model.train()
        synchronize(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(self.built, self.split, rows(self.split, self.batch_size, self.next_row), self.device, 1,
                       self.precision)
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            self.opt.step()
            model.zero_grad(set_to_none=True)
            self.next_row = (self.next_row + self.batch_size) % len(self.split.ids)
        synchronize(self.device)
        return time.perf_counter() - t0


@torch.no_grad()
def generate_fixed(built: BuiltModel, split: TokenizedSplit, batch_size: int, tokens: int, device: str,
                   precision: Precision = FP32) -> tuple[float, Any]:
    """Greedy generation of exactly ``tokens`` new tokens for the first ``batch_size`` rows; (seconds, output)."""
    built.model.eval()
    pin_generation(built.model)
    ids, mask, _ = batch_tensors(split, rows(split, batch_size), device)
    synchronize(device)
    t0 = time.perf_counter()
    with precision.autocast():
        out = built.model.generate(**built.family.model_inputs(ids, mask), max_new_tokens=tokens,
                                   min_new_tokens=tokens, num_beams=1, do_sample=False)
    synchronize(device)
    return time.perf_counter() - t0, out


def count_step(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str,
               precision: Precision = FP32) -> Work:
    """The work of one training micro-batch (:data:`STEP_WORK`), on an untimed step; gradients are cleared after."""
    built.model.train()
    built.model.zero_grad(set_to_none=True)
    with count_work("step", 1, device) as work:
        train_step(built, split, rows(split, batch_size), device, 1, precision)
    built.model.zero_grad(set_to_none=True)
    return work


def count_tokens(built: BuiltModel, split: TokenizedSplit, batch_size: int, tokens: int, device: str,
                 precision: Precision = FP32) -> Work:
    """The work of generating ``tokens`` new tokens for one batch (:data:`TOKEN_WORK`), counted per token."""
    with count_work("token", batch_size * tokens, device) as work:
        generate_fixed(built, split, batch_size, tokens, device, precision)
    return work

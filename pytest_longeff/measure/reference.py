"""A machine-speed reference: a short fixed workload measured beside each cell, so the gate can remove drift.

On a shared machine whole runs drift against each other (other tenants, clocks, thermals): every figure based on time
moves together, and no interval inside one run can see it. :func:`reference` times a fixed workload in the process
and on the device the cells use: forward and backward of one small transformer-like block (self-attention and an
MLP, fp32) on fixed random data, in a few short repeats, summarised like every other figure (median, IQR, bootstrap
95 % CI). Measured right before a cell's training window and right after its inference window
(:meth:`CellReference.from_readings`), it sees the conditions the cell saw; the gate
(:func:`pytest_longeff.gate.suite.drift`) then compares time-based figures as if both runs had the same machine
speed. About 0.2 s per reading on a 2-core CPU.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from pytest_longeff.stats import Summary, summarize

#: The workload's shape: batch, tokens, width, heads; and passes per timed repeat.
BATCH, TOKENS, WIDTH, HEADS = 2, 64, 128, 4
PASSES_PER_REPEAT = 8
FIRST_USE_PASSES = 10  # one-time warm-up per device: lazy initialisation of autograd and the thread pool
REPEATS, WARMUP = 7, 1
MIN_REPEATS, BUDGET_S = 3, 0.5  # under heavy contention a reading stops after MIN_REPEATS once past BUDGET_S
SEED = 1234
METHOD = (f"reference block v1: fp32 forward+backward of one attention+MLP block (batch {BATCH}, {TOKENS} tokens, "
          f"width {WIDTH}, {HEADS} heads) on fixed random data; passes/s per repeat of {PASSES_PER_REPEAT} passes, "
          f"{REPEATS} repeats after {WARMUP} warm-up, device-synchronised perf_counter; median with bootstrap 95% CI")


@dataclass(frozen=True)
class ReferenceReading:
    """One measurement of the reference workload: passes per second over repeats."""

    device: str
    rates: tuple[float, ...]
    """Passes per second, one value per repeat."""
    stats: Summary
    """Summary of ``rates``."""
    seconds: float
    """Wall time the reading took (warm-up included), in seconds."""

    @property
    def ops_per_s(self) -> float:
        """Median passes per second."""
        return self.stats.median


@dataclass(frozen=True)
class CellReference:
    """The reference around one cell: the readings before its training window and after its inference window,
    pooled (the cell's conditions lie between them)."""

    before: ReferenceReading
    after: ReferenceReading
    stats: Summary
    """Passes per second over the pooled repeats of both readings."""
    settings: tuple[tuple[str, Any], ...] = ()
    """The process-wide torch settings when the readings were pooled, right after the cell (:func:`torch_settings`)."""

    @classmethod
    def from_readings(cls, before: ReferenceReading, after: ReferenceReading) -> CellReference:
        """Pool two readings (same workload) into the cell's reference, with the torch settings in force now."""
        pooled = summarize([*before.rates, *after.rates])
        if pooled is None:
            raise ValueError("two empty reference readings")
        return cls(before, after, pooled, tuple(torch_settings().items()))

    @property
    def ops_per_s(self) -> float:
        """Median passes per second over both readings."""
        return self.stats.median

    def to_dict(self) -> dict[str, Any]:
        """The record's ``reference`` section (what :func:`pytest_longeff.gate.suite.drift` reads), with the
        process-wide torch settings it ran under (:func:`torch_settings`)."""
        return {"ops_per_s": self.ops_per_s, "unit": "reference passes/s", "stats": self.stats.to_dict(),
                "before_ops_per_s": self.before.ops_per_s, "after_ops_per_s": self.after.ops_per_s,
                "cost_s": self.before.seconds + self.after.seconds, "method": METHOD,
                "torch_settings": dict(self.settings) or torch_settings()}


def torch_settings() -> dict[str, Any]:
    """Process-wide torch settings that slow every kernel alike, the reference included: a drift correction across
    a difference in them would cancel the very regression they cause (anomaly mode left on, deterministic
    algorithms, another thread count), so the gate refuses to correct across one."""
    return {"anomaly_mode": bool(torch.is_anomaly_enabled()),
            "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "num_threads": int(torch.get_num_threads()),
            "float32_matmul_precision": str(torch.get_float32_matmul_precision())}


@functools.lru_cache(maxsize=4)
def _workload(device: str) -> tuple[torch.Tensor, ...]:
    """The block's fixed inputs and weights on ``device`` (drawn from a private generator: the global random state
    of the cells is left alone)."""
    g = torch.Generator().manual_seed(SEED)

    def draw(*shape: int, grad: bool = True) -> torch.Tensor:
        scale = 1.0 / math.sqrt(shape[0]) if grad else 1.0
        t = (torch.randn(*shape, generator=g) * scale).to(device)
        return t.requires_grad_(grad)

    x = draw(BATCH, TOKENS, WIDTH, grad=False)
    tensors = (x, draw(WIDTH, 3 * WIDTH), draw(WIDTH, WIDTH), draw(WIDTH, 4 * WIDTH), draw(4 * WIDTH, WIDTH))
    with torch.enable_grad():
        for _ in range(FIRST_USE_PASSES):
            _one_pass(*tensors)
    _sync(device)
    return tensors


def _one_pass(x: torch.Tensor, w_qkv: torch.Tensor, w_out: torch.Tensor, w_up: torch.Tensor,
              w_down: torch.Tensor) -> None:
    """Forward and backward of the block once (gradients are dropped again)."""
    b, t, d = x.shape
    q, k, v = torch.split(x @ w_qkv, d, dim=-1)
    heads = [z.reshape(b, t, HEADS, d // HEADS).transpose(1, 2) for z in (q, k, v)]
    att = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / math.sqrt(d // HEADS), dim=-1) @ heads[2]
    h = torch.nn.functional.layer_norm(x + att.transpose(1, 2).reshape(b, t, d) @ w_out, (d,))
    out = torch.nn.functional.layer_norm(h + torch.nn.functional.gelu(h @ w_up) @ w_down, (d,))
    grads = torch.autograd.grad(out.square().mean(), (w_qkv, w_out, w_up, w_down))
    del grads


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def reference(device: str, repeats: int = REPEATS, warmup: int = WARMUP,
              budget_s: float = BUDGET_S) -> ReferenceReading:
    """Time the reference workload on ``device`` now: ``repeats`` repeats of :data:`PASSES_PER_REPEAT` passes after
    ``warmup`` untimed ones; passes per second per repeat, summarised (median, IQR, bootstrap 95 % CI). Past
    ``budget_s`` (first use on a device excluded) it stops after :data:`MIN_REPEATS` repeats."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    start = time.perf_counter()
    tensors = _workload(device)
    begun = time.perf_counter()
    with torch.enable_grad():
        rates: list[float] = []
        for i in range(warmup + repeats):
            if len(rates) >= min(MIN_REPEATS, repeats) and time.perf_counter() - begun > budget_s:
                break
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(PASSES_PER_REPEAT):
                _one_pass(*tensors)
            _sync(device)
            elapsed = time.perf_counter() - t0
            if i >= warmup and elapsed > 0:
                rates.append(PASSES_PER_REPEAT / elapsed)
    stats = summarize(rates)
    if stats is None:  # a clock that did not move: no reading worth keeping
        raise RuntimeError("the reference workload took no measurable time")
    return ReferenceReading(device, tuple(rates), stats, time.perf_counter() - start)

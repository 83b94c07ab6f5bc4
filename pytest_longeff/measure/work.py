"""Work counters: what a piece of model code asks the machine to do, counted per operator, so that a figure does not
drift with the machine's speed or its neighbours.

Under :class:`WorkCounter` every ATen operator call is counted with the bytes its fresh outputs occupy (views and
in-place results allocate nothing and count 0) and the FLOPs torch's own counter
(:class:`torch.utils.flop_counter.FlopCounterMode`) gives it; on CUDA the caching allocator's cumulative allocated
bytes and the host-device synchronisations (torch's sync debug mode) are read too. Counting slows the code it
watches, so it runs on untimed work outside every measured window. The same code on the same inputs gives the same
counts in every process, which is why the gate compares them exactly (:func:`work_diff`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

METHOD = ("ATen operator calls under a TorchDispatchMode (calls; bytes of fresh, non-view outputs), FLOPs from "
          "torch.utils.flop_counter.FlopCounterMode; on CUDA also the allocator's cumulative allocated bytes and "
          "torch's sync debug mode; on untimed work outside the measured windows")
#: The totals a work section carries, in the order reports show them.
TOTALS = ("calls", "flops", "output_bytes")


def _allocates(func: Any) -> bool:
    """Whether ``func``'s outputs are fresh tensors (not views or in-place results of its inputs)."""
    schema = getattr(func, "_schema", None)
    return schema is None or all(r.alias_info is None for r in schema.returns)


class _OpTally(TorchDispatchMode):
    """Counts every operator call and the bytes of its fresh outputs, by operator."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        self.calls[name] += 1
        if _allocates(func):
            self.bytes[name] += sum(int(t.numel()) * int(t.element_size()) for t in tree_leaves(out)
                                    if isinstance(t, torch.Tensor))
        return out


@dataclass
class Work:
    """What one piece of work did, by operator: ``ops[name] = [calls, flops, output bytes]``, for ``units`` units
    (training steps or generated tokens); CUDA-only counts are None elsewhere."""

    unit: str
    units: int
    ops: dict[str, list[int]] = field(default_factory=dict)
    cuda_allocated_bytes: int | None = None
    syncs: int | None = None

    def total(self, key: str) -> int:
        """The sum of ``key`` (one of :data:`TOTALS`) over operators."""
        return sum(v[TOTALS.index(key)] for v in self.ops.values())

    def to_dict(self) -> dict[str, Any]:
        """The record's form: totals per unit beside the per-operator table."""
        per = max(self.units, 1)
        return {"unit": self.unit, "units": self.units,
                **{f"{k}_per_{self.unit}": self.total(k) / per for k in TOTALS},
                **{k: self.total(k) for k in TOTALS},
                "cuda_allocated_bytes": self.cuda_allocated_bytes, "syncs": self.syncs,
                "ops": {k: list(v) for k, v in sorted(self.ops.items())}, "method": METHOD}


@contextmanager
def count_work(unit: str, units: int, device: str) -> Iterator[Work]:
    """Count the work done inside the block; the :class:`Work` is filled in when it exits."""
    from torch.utils.flop_counter import FlopCounterMode

    work = Work(unit, units)
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    before = torch.cuda.memory_stats(device).get("allocated_bytes.all.allocated", 0) if cuda else 0
    previous_mode = torch.cuda.get_sync_debug_mode() if cuda else 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with FlopCounterMode(display=False) as flops, _OpTally() as tally:
                yield work
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(previous_mode)
    per_op = {str(op): int(n) for op, n in flops.get_flop_counts().get("Global", {}).items()}
    work.ops = {name: [tally.calls[name], per_op.get(name, 0), tally.bytes[name]] for name in tally.calls}
    if cuda:
        work.cuda_allocated_bytes = torch.cuda.memory_stats(device).get("allocated_bytes.all.allocated", 0) - before
        work.syncs = sum(1 for w in caught if "synchroniz" in str(w.message))


@dataclass(frozen=True)
class OpChange:
    """One operator whose counts differ between two work sections (per unit of work)."""

    op: str
    base: tuple[float, float, float]
    head: tuple[float, float, float]

    def line(self) -> str:
        """The change as a profiler diff reads: calls, FLOPs and bytes, base -> head."""
        parts = [f"{k} {b:.6g} -> {h:.6g}" for k, b, h in zip(TOTALS, self.base, self.head, strict=True) if b != h]
        return f"{self.op}: " + ", ".join(parts)


def _per_unit(section: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    per = max(int(section.get("units") or 1), 1)
    ops = section.get("ops") if isinstance(section.get("ops"), Mapping) else {}
    return {str(k): tuple(float(x) / per for x in v[:3]) for k, v in ops.items()  # type: ignore[misc]
            if isinstance(v, (list, tuple)) and len(v) >= 3}


def work_diff(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[OpChange]:
    """Every operator whose calls, FLOPs or output bytes per unit differ, largest change in FLOPs, then bytes,
    first."""
    a, b = _per_unit(base), _per_unit(head)
    zero = (0.0, 0.0, 0.0)
    changes = [OpChange(op, a.get(op, zero), b.get(op, zero)) for op in sorted(set(a) | set(b))
               if a.get(op, zero) != b.get(op, zero)]
    return sorted(changes, key=lambda c: (-abs(c.head[1] - c.base[1]), -abs(c.head[2] - c.base[2]), c.op))


def totals_per_unit(section: Mapping[str, Any]) -> dict[str, float]:
    """A work section's totals per unit (calls, FLOPs, output bytes)."""
    per = _per_unit(section)
    return {k: sum(v[i] for v in per.values()) for i, k in enumerate(TOTALS)}

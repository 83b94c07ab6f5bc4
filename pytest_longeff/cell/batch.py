"""Choosing a cell's training batch: fixed by option, cached from an earlier run, or searched under the memory
budget with real training-step probes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_longeff.cell.fixed import Stepper
from pytest_longeff.cell.precision import FP32, Precision
from pytest_longeff.cell.search import AtLeast, search_batch_size
from pytest_longeff.cell.train import make_optimizer, train_step, weight_bytes
from pytest_longeff.errors import CellUnavailable, LongeffWarning
from pytest_longeff.measure.machine import machine_key
from pytest_longeff.measure.window import release_memory, settle_cpu_allocator, window
from pytest_longeff.record.sections import BatchChoice

if TYPE_CHECKING:
    from pytest_longeff.cell.prepare import TokenizedSplit
    from pytest_longeff.cell.resources import LongeffSession
    from pytest_longeff.matrix import Cell
    from pytest_longeff.models.families import BuiltModel

# Bumped whenever what a probe measures changes, so batch sizes found the old way are searched again. It is in
# the key and in the entry (which says what wrote it).
# 7: CPU probes take four steps under the windows' allocator settings; 6: entries carry their version and are
# checked on load; 5: labels keep the padded width.
PROBE_VERSION = 7


@dataclass(frozen=True)
class BatchCache:
    """Found batch sizes across runs: ``get(key)`` / ``set(key, value)`` over ``config.cache``. ``get`` returns
    None for no entry, and an :class:`Unreadable` for an entry whose stored form cannot be read."""

    get: Callable[[str], Any]
    set: Callable[[str, Any], None]


@dataclass(frozen=True)
class Unreadable:
    """A cache entry that exists but cannot be read (e.g. truncated JSON): a miss, with a warning."""

    where: str
    """The entry's file (or key), for the warning."""


def batch_cache_key(session: LongeffSession, cell: Cell, built: BuiltModel) -> str:
    """Everything a found batch size depends on: machine and software, the model as configured, the tokenizer
    (its vocabulary sizes the embeddings), the data the probes read (its file's version: the generator's version
    is in its path), the cell, the budget, the allocator's share of it on a GPU and the largest batch allowed.
    Nothing of other cells enters a probe (idle models wait off the device), so nothing of them enters the key."""
    from pytest_longeff._version import __version__
    from pytest_longeff.cell.resources import limit_key

    s = session.settings
    from pytest_longeff.models.common import recipe_at_defaults_dropped

    # What every key held before the recipe choices were recorded: their cached batches stand.
    config = recipe_at_defaults_dropped(built.config_dict())
    raw = json.dumps([machine_key(session.facts()), __version__, PROBE_VERSION, s.profile, cell.id,
                      s.memory_budget_bytes, s.max_batch, s.precision, session.profile.weights, config,
                      session.inputs.tokenizer_digest(cell), session.inputs.data_key(cell.task, cell.seq_len, cell),
                      limit_key(session.memory_enforcement)],
                     sort_keys=True, default=str)
    return "longeff/batch/" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def optimizer_state_bytes(opt: Any) -> int:
    """Bytes held by the optimizer's state tensors (AdamW: two moments per parameter)."""
    import torch

    return sum(int(t.numel()) * int(t.element_size()) for state in opt.state.values() for t in state.values()
               if isinstance(t, torch.Tensor))


def _materialise_state(model: Any, opt: Any) -> None:
    """Create the optimizer's state before a probe is measured: AdamW allocates its moment buffers at its first
    step, so a probe of the first step alone misses them during forward and backward, and training from step 2
    on holds them throughout. A step on zero gradients at a negligible rate creates them (the cell resets the
    weights after the probes anyway)."""
    import torch

    for param in model.parameters():
        if param.requires_grad:
            param.grad = torch.zeros_like(param)
    opt.step()
    model.zero_grad(set_to_none=True)


#: Training steps a CPU probe takes, each on the next rows of the split. On the CPU the figure is the process's
#: resident high-water mark, and glibc's heap keeps part of what each step frees. Measured on the 16 tiny cells of
#: the default matrix (``benchmarks/probe_steady_state.py``): the first step's peak was 52-90 % of what 12 steps
#: reach, the fourth step's 92-100 % (median 98 %); 12 steps of training then peaked a median 3 % (at most 12 %)
#: above a four-step probe. More steps would buy little for a probe that runs at every candidate batch. On CUDA a
#: step's peak allocated bytes repeat from one step to the next (the optimizer's state already exists), so one step
#: is measured there.
CPU_PROBE_STEPS = 4


def probe_steps(device: str) -> int:
    """How many training steps a batch-size probe takes on ``device`` (see :data:`CPU_PROBE_STEPS`)."""
    return 1 if device.startswith("cuda") else CPU_PROBE_STEPS


def probe_batch(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str,
                flops: dict[int, int] | None = None, precision: Precision = FP32, *, stop_above: int | None = None,
                steps_taken: dict[int, int] | None = None) -> int:
    """Peak memory in bytes of steady-state training (forward, backward, clipping, optimiser step) at
    ``batch_size``: weights, optimizer state, gradients and activations at once, as training holds them from its
    second step on.

    On the CPU the figure is the process high-water mark above what it held before the steps, over
    :data:`CPU_PROBE_STEPS` steps on successive rows, under the allocator settings the session's windows run with
    (so the heap keeps what it keeps in training), plus the weights and the optimizer state (already resident, so
    not in that difference); on CUDA the peak allocated bytes of one step, which include both. When ``flops`` is
    given and empty, the first step's FLOPs are counted too (probes are not timed, so the counter's overhead costs
    nothing measured).

    ``stop_above`` (the search's budget): a CPU probe whose figure already exceeds it after a step stops there. The
    figure is a high-water mark, so it can only grow over the remaining steps: the answer "does not fit" is the
    one the whole probe would give, and the returned figure is a lower bound of the whole probe's. The steps
    taken go into ``steps_taken[batch_size]`` when given.
    """
    from torch.utils.flop_counter import FlopCounterMode

    settle_cpu_allocator(device)  # a probe outside a session measures as one inside it does
    model = built.model
    model.train()
    model.zero_grad(set_to_none=True)
    # The study's steps on successive rows (clipping, AdamW); lr 1e-9: their memory, not their effect, is measured.
    steps = Stepper(built, split, batch_size, device, precision, lr=1e-9)
    _materialise_state(model, steps.opt)
    release_memory(device, full=False)  # the zero gradients' memory goes back, so the steps cannot reuse it
    resident = weight_bytes(model) + optimizer_state_bytes(steps.opt)
    # One count per cell is enough (FLOPs scale linearly with the batch); the counter slows the step it watches.
    counter = FlopCounterMode(display=False) if flops is not None and not flops else None
    total, taken = probe_steps(device), 0
    try:
        with window("probe", device, None) as w:
            with counter if counter is not None else contextlib.nullcontext():
                steps.run(1)
            taken = 1
            while taken < total and not _over(w.peak_so_far(), resident, device, stop_above):
                steps.run(1)
                taken += 1
    finally:  # also for a probe that ran out of memory: the steps it completed
        if steps_taken is not None:
            steps_taken[batch_size] = taken
    if counter is not None and flops is not None:
        flops[batch_size] = int(counter.get_total_flops())
    del steps
    if w.peak_memory_bytes is None:
        raise CellUnavailable("peak memory cannot be read on this system, so the batch-size search cannot run; "
                              "pass --longeff-batch-size N")
    figure = w.peak_memory_bytes if device.startswith("cuda") else w.peak_memory_bytes + resident
    return AtLeast(figure) if taken < total else figure


def _over(so_far: int | None, resident: int, device: str, budget: int | None) -> bool:
    """Whether a probe's figure so far already exceeds ``budget`` (never, without a budget or a reading)."""
    if budget is None or so_far is None:
        return False
    return (so_far if device.startswith("cuda") else so_far + resident) > budget


class _Releaser:
    """Frees memory between probes: a young-generation collection after a probe that fitted, a full one after a
    probe that raised (its traceback may have held tensors in reference cycles)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.raised = False

    def probe(self, run: Callable[[], int]) -> int:
        try:
            return run()
        except BaseException:
            self.raised = True
            raise

    def release(self) -> None:
        release_memory(self.device, full=self.raised)
        self.raised = False


def _start(found: dict[tuple[str, str, int], int], cell: Cell, max_batch: int) -> int:
    """Where the search starts: the same model at the same length under another task needs about the same memory;
    else the answer at the nearest shorter length, an upper bound (memory grows with the input); else batch 1."""
    same = found.get((cell.family, cell.size, cell.seq_len))
    shorter = [(length, b) for (f, z, length), b in found.items()
               if f == cell.family and z == cell.size and length < cell.seq_len and b > 0]
    hint = same if same is not None else max(shorter)[1] if shorter else 1
    return min(max(hint, 1), max_batch)


def _whole(value: Any, low: int, high: int | None = None) -> bool:
    """Whether ``value`` is a plain ``int`` (never a bool) in ``[low, high]``."""
    return type(value) is int and value >= low and (high is None or value <= high)


_REQUIRED = ("version", "batch_size", "probes", "peak_memory_bytes")
_OPTIONAL = ("flops", "after_out_of_memory_at")


def entry_problem(hit: Mapping[str, Any], max_batch: int) -> str | None:
    """What is wrong with a batch-cache entry (a dict read back from the cache), or None when it can be used: every
    field present and of its type, the batch a whole number in ``[1, max_batch]``, written by this probe version."""
    missing = [k for k in _REQUIRED if k not in hit]
    unknown = sorted(str(k) for k in hit if k not in _REQUIRED + _OPTIONAL)
    if missing or unknown:
        return f"fields missing {missing}, unknown {unknown}"
    if hit["version"] != PROBE_VERSION:
        return f"version is {hit['version']!r}, not {PROBE_VERSION}"
    if not _whole(hit["batch_size"], 1, max_batch):
        return f"batch_size is {hit['batch_size']!r}, not a whole number from 1 to {max_batch} (--longeff-max-batch)"
    if not _whole(hit["probes"], 0):
        return f"probes is {hit['probes']!r}, not a whole number >= 0"
    if hit["peak_memory_bytes"] is not None and not _whole(hit["peak_memory_bytes"], 1):
        return f"peak_memory_bytes is {hit['peak_memory_bytes']!r}, not null or a whole number >= 1"
    failed = hit.get("after_out_of_memory_at")
    if failed is not None and not _whole(failed, hit["batch_size"] + 1):
        return f"after_out_of_memory_at is {failed!r}, not null or a whole number above batch_size"
    counted = hit.get("flops", {})
    if not isinstance(counted, dict) or not all(
            isinstance(b, str) and b.isdigit() and _whole(n, 0) for b, n in counted.items()):
        return f"flops is {counted!r}, not an object of batch size to a whole number of FLOPs"
    return None


def _cached(cache: BatchCache | None, key: str, flops: dict[int, int], max_batch: int) -> BatchChoice | None:
    """A batch size found by an earlier run (and the FLOPs its probe counted, so no step is spent counting). An
    entry that cannot be read or fails :func:`entry_problem` is a miss with a warning (the caller searches again
    and overwrites it), never used."""
    hit = cache.get(key) if cache is not None else None
    if hit is None:
        return None
    problem = (f"{hit.where} cannot be read" if isinstance(hit, Unreadable)
               else f"not an object but {type(hit).__name__}" if not isinstance(hit, dict)
               else entry_problem(hit, max_batch))
    if problem is not None:
        if cache is not None:
            cache.set(key, None)  # before the warning, which ``-W error`` raises: the bad entry never stays
        warnings.warn(f"cached batch size {key} ignored: {problem}; searching again and overwriting it (delete "
                      "the pytest cache, or pass --longeff-batch-reset, to start afresh)", LongeffWarning,
                      stacklevel=2)
        return None
    flops.update({int(b): n for b, n in hit.get("flops", {}).items()})
    details = {"searched_probes": hit["probes"]}
    if hit.get("after_out_of_memory_at") is not None:
        details["after_out_of_memory_at"] = hit["after_out_of_memory_at"]
    return BatchChoice(hit["batch_size"], "cached", 0, hit["peak_memory_bytes"], details)


def forget_batch(session: LongeffSession, cell: Cell, built: BuiltModel, cache: BatchCache | None) -> None:
    """Drop the cell's cached batch size (after it ran out of memory), so the next run searches again."""
    if cache is not None and session.settings.batch_size is None:
        cache.set(batch_cache_key(session, cell, built), None)


def remember_batch(session: LongeffSession, cell: Cell, built: BuiltModel, cache: BatchCache | None,
                   choice: BatchChoice) -> None:
    """Cache the batch a cell ran at after an out-of-memory retry, in place of the one that failed, so the next run
    starts there instead of failing again mid-cell (``--longeff-batch-reset`` searches afresh)."""
    if cache is not None and session.settings.batch_size is None:
        failed = (choice.details.get("out_of_memory") or {}).get("batch_size")
        cache.set(batch_cache_key(session, cell, built),
                  {"version": PROBE_VERSION, "batch_size": choice.batch_size, "probes": 0, "peak_memory_bytes": None,
                   "after_out_of_memory_at": failed})


def probed_at(choice: BatchChoice, batch_size: int) -> bool:
    """Whether a probe of this search ran a whole training step at ``batch_size`` in this process."""
    log = choice.details.get("probe_log") or []
    return any(isinstance(p, dict) and p.get("batch_size") == batch_size and p.get("peak_memory_bytes") is not None
               for p in log)


def warm_up_step(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str,
                 precision: Precision = FP32) -> None:
    """One untimed training step (forward, backward, optimiser step) at ``batch_size``, outside every window;
    the caller resets the weights after it."""
    model = built.model
    model.train()
    model.zero_grad(set_to_none=True)
    opt = make_optimizer(model, 1e-9)
    train_step(built, split, [i % len(split.ids) for i in range(batch_size)], device, 1, precision)
    opt.step()
    model.zero_grad(set_to_none=True)
    del opt
    release_memory(device, full=False)


def choose_batch(session: LongeffSession, cell: Cell, built: BuiltModel, train: TokenizedSplit,
                 cache: BatchCache | None, flops: dict[int, int], precision: Precision = FP32) -> BatchChoice:
    """The training batch: fixed by option, cached from an earlier run, or searched under the memory budget.
    ``flops`` receives the FLOP count of one probe (see :func:`probe_batch`)."""
    s = session.settings
    if s.batch_size is not None:
        return BatchChoice(s.batch_size, "fixed", 0, None)
    key = batch_cache_key(session, cell, built)
    hit = None if s.batch_reset else _cached(cache, key, flops, s.max_batch)
    if hit is not None:
        return hit
    start = _start(session.found_batches, cell, s.max_batch)
    releaser = _Releaser(session.device)
    taken: dict[int, int] = {}
    found = search_batch_size(lambda b: releaser.probe(lambda: probe_batch(
        built, train, b, session.device, flops, precision, stop_above=s.memory_budget_bytes, steps_taken=taken)),
        s.memory_budget_bytes, max_batch=s.max_batch, start=start, release=releaser.release)
    session.found_batches[(cell.family, cell.size, cell.seq_len)] = found.batch_size
    details = {k: v for k, v in found.to_dict().items() if k not in ("batch_size", "probes", "peak_memory_bytes")}
    # Each probe's training steps: fewer than probe_steps() where its figure passed the budget early (a lower bound
    # of what the whole probe would read; it did not fit either way).
    details["probe_log"] = [{**p.to_dict(), "steps": taken.get(p.batch_size)} for p in found.probes]
    if cache is not None:
        # A cell that fits at no batch is not cached (batch 0 is no valid entry): the next run's search fails at
        # batch 1 again in one or two probes. Whatever was there (an invalid entry) is cleared.
        cache.set(key, None if found.batch_size < 1 else {
            "version": PROBE_VERSION, "batch_size": found.batch_size, "probes": len(found.probes),
            "peak_memory_bytes": found.peak_memory_bytes, "flops": {str(b): n for b, n in flops.items()}})
    return BatchChoice(found.batch_size, "searched", len(found.probes), found.peak_memory_bytes,
                       {**details, "start": start})

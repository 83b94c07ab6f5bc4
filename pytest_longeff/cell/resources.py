"""The resources the cells of one pytest session (one xdist worker) share: device, energy meter and idle
baseline, prepared inputs, and the model cache. Complete when constructed; :meth:`LongeffSession.close` gives back
what it holds and restores the process-wide settings it changed."""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pytest_longeff.cell.prepare import Inputs
from pytest_longeff.energy import IdleBaseline, Meter, MeterBuilder, MeterUnavailable, make_meter, measure_idle
from pytest_longeff.errors import CellUnavailable
from pytest_longeff.matrix import DEFAULT_LENGTHS, Cell
from pytest_longeff.measure import machine
from pytest_longeff.measure.window import release_memory, restore_cpu_allocator, settle_cpu_allocator
from pytest_longeff.models.families import BuiltModel, build_model
from pytest_longeff.profiles import PROFILES, Profile

if TYPE_CHECKING:
    from pytest_longeff.config.settings import Settings
    from pytest_longeff.measure.reference import ReferenceReading
    from pytest_longeff.models.families import Family
    from pytest_longeff.tasks.metrics import Metric
    from pytest_longeff.tasks.specs import TaskSpec


GPU_IDLE_S, CPU_IDLE_S = 10.0, 2.0


def xdist_worker() -> tuple[int, int] | None:
    """``(index, count)`` of this pytest-xdist worker, or None outside xdist (its environment variables are the
    one place the runner learns about workers)."""
    name, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if name.startswith("gw") and name[2:].isdigit() and count.isdigit():
        return int(name[2:]), int(count)
    return None


def resolve_device(requested: str, share_gpus: bool = False) -> str:
    """``auto`` is ``cuda`` when a GPU is usable, else ``cpu``; an explicit ``cuda`` without one is an error. Under
    pytest-xdist each worker gets a GPU of its own (``auto`` and bare ``cuda``: worker ``i`` on ``cuda:i``); more
    workers than GPUs, or several workers on one ``cuda:N``, are refused unless ``share_gpus``."""
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise CellUnavailable(f"--longeff-device {requested}: no CUDA device is usable here (torch "
                              f"{torch.__version__}); use --longeff-device cpu or auto")
    if requested == "auto" and not torch.cuda.is_available():
        return "cpu"
    worker = xdist_worker()
    if not requested.startswith("cuda") and requested != "auto":
        return requested
    if worker is None or worker[1] == 1:
        return "cuda" if requested == "auto" else requested
    count = torch.cuda.device_count()
    if requested in ("auto", "cuda"):
        # One GPU per worker, so a device's time, memory and energy belong to one cell at a time.
        if worker[1] > count and not share_gpus:
            raise CellUnavailable(
                f"{worker[1]} pytest-xdist workers for {count} GPU(s): workers would share GPUs, and each cell's "
                f"time, memory and energy would include another's work; run with -n {count} or fewer, or pass "
                "--longeff-share-gpus to accept shared GPUs")
        return f"cuda:{worker[0] % count}"
    if not share_gpus:
        raise CellUnavailable(
            f"--longeff-device {requested} with {worker[1]} pytest-xdist workers: every worker would use that one "
            f"GPU; use --longeff-device auto (one GPU per worker, -n {count} or fewer), or pass "
            "--longeff-share-gpus to accept a shared GPU")
    return requested


def memory_fraction(budget_bytes: int, device: str) -> tuple[float, dict[str, Any], str | None]:
    """How a memory budget is enforced on a CUDA device: the per-process fraction for the caching allocator, what
    the record says about it, and a warning when the budget cannot be honoured.

    A real card of ``budget_bytes`` holds the CUDA context (and whatever else is on the device) in the same
    memory, so the allocator's share is the budget less what the device already holds outside this process's
    allocator, measured now. The fraction caps *reserved* bytes (what the allocator holds from the driver), so
    a step fits when its reserved peak stays under that share; peak figures in the record are allocated bytes,
    with the reserved peak beside them."""
    torch.zeros(1, device=device)  # the context exists before it is measured
    free, total = torch.cuda.mem_get_info(device)
    outside = max(0, total - free - torch.cuda.memory_reserved(device))
    allocator = budget_bytes - outside
    warning = None
    if outside > CONTEXT_BYTES_PLAUSIBLE:
        # cudaMemGetInfo is device-wide: another process's memory is in it, and comes out of this budget.
        warning = (f"{outside / 2**30:.2f} GiB of the GPU is held outside this process's allocator (more than a "
                   "CUDA context takes): another process is likely using it, and the memory budget counts it")
    if budget_bytes >= total:
        warning = (f"--longeff-memory-budget {budget_bytes / 2**30:.2f} GiB is at least the card's "
                   f"{total / 2**30:.2f} GiB: the effective budget is the card's, not the stated one")
    elif allocator <= 0:
        raise CellUnavailable(f"--longeff-memory-budget {budget_bytes / 2**30:.2f} GiB: the CUDA context and other "
                              f"memory on the device already take {outside / 2**30:.2f} GiB; raise the budget")
    fraction = min(1.0, max(allocator, 1) / total)
    return fraction, {
        "method": "torch.cuda.set_per_process_memory_fraction: caps the caching allocator's reserved bytes",
        "budget_bytes": budget_bytes, "device_total_bytes": total, "outside_allocator_bytes": outside,
        "allocator_limit_bytes": int(fraction * total), "fraction": fraction,
        "note": "outside_allocator_bytes (the CUDA context and anything else on the device, measured at session "
                "start) is counted against the budget, as a card of the budget's size would hold it; peaks are "
                "allocated bytes, reserved peaks beside them"}, warning


# A CUDA context with cuBLAS and cuDNN handles takes a few hundred MiB to about 1 GiB; more is someone else's.
CONTEXT_BYTES_PLAUSIBLE = 2 * 2**30
# The allocator's limit enters the batch cache key rounded to this, so small differences in what the context takes
# from session to session do not make every found batch size a miss.
LIMIT_KEY_GRANULE = 256 * 2**20


def limit_key(enforcement: dict[str, Any]) -> int | None:
    """The allocator's limit for the batch cache key, rounded down to :data:`LIMIT_KEY_GRANULE` (None on the CPU)."""
    limit = enforcement.get("allocator_limit_bytes")
    return None if limit is None else int(limit) // LIMIT_KEY_GRANULE * LIMIT_KEY_GRANULE


CPU_ENFORCEMENT = {"method": "the batch-size probe's peak (process high-water mark above its start, plus weights "
                             "and optimizer state) compared with the budget; nothing stops a later step from "
                             "exceeding it, and within_memory_budget says whether the windows' measured peaks "
                             "stayed within it"}


@dataclass
class SessionStats:
    """Counters for the session report."""

    model_builds: int = 0
    model_cache_hits: int = 0
    model_build_s: float = 0.0
    measured_s: float = 0.0
    """Seconds spent inside measured windows."""


class LongeffSession:
    """Everything shared by the cells of one pytest session (on one worker).

    ``families``, ``tasks``, ``meters`` and ``metrics`` are the session's registries (what the ``pytest_longeff_*``
    hooks returned, built-ins included): the meter is built from ``meters``, the cells are scored with ``metrics``.
    """

    def __init__(self, settings: Settings, cache_dir: Path, families: Mapping[str, Family],
                 tasks: Mapping[str, TaskSpec], *, meters: Mapping[str, MeterBuilder], metrics: Mapping[str, Metric],
                 model_cache_size: int = 2) -> None:
        self.settings = settings
        self.profile: Profile = PROFILES[settings.profile]
        self.families, self.tasks = dict(families), dict(tasks)
        self.meters, self.metrics = meters, metrics
        self.stats = SessionStats()
        self.started = time.perf_counter()
        self.device = resolve_device(settings.device, settings.share_gpus)
        self.inputs = Inputs(settings, self.profile, cache_dir, self.families)
        self.found_batches: dict[tuple[str, str, int], int] = {}
        self._models: OrderedDict[tuple[str, str], BuiltModel] = OrderedDict()
        self._model_cache_size = model_cache_size
        self._on_device: set[tuple[str, str]] = set()
        """Cached models whose weights are on the GPU (at most the running one)."""
        self._threads = torch.get_num_threads()
        self.warnings: list[str] = []
        self.memory_enforcement: dict[str, Any] = dict(CPU_ENFORCEMENT)
        self._apply_process_settings()
        self.meter: Meter | None = None
        self.meter_error: str | None = None
        self.idle: IdleBaseline | None = None
        self._open_meter()
        self._facts: dict[str, Any] | None = None

    def _apply_process_settings(self) -> None:
        settle_cpu_allocator(self.device)
        worker = xdist_worker()
        if self.device == "cpu" and worker is not None and worker[1] > 1:
            # Workers sharing the CPU would each start a thread per core and fight over them.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // worker[1]))
        if self.device.startswith("cuda"):
            # Emulate the budgeted card on a bigger one: allocations past the budget raise out-of-memory.
            fraction, self.memory_enforcement, warning = memory_fraction(self.settings.memory_budget_bytes,
                                                                         self.device)
            torch.cuda.set_per_process_memory_fraction(fraction, self.device)
            if warning is not None:
                self.warnings.append(warning)

    def _open_meter(self) -> None:
        """Create the energy meter and measure idle power once; a meter that cannot work is remembered as an
        error for every cell when it was asked for explicitly, and is a quiet ``none`` under ``auto``."""
        try:
            meter, warnings = make_meter(self.settings.energy, self.device, sample_hz=self.settings.energy_hz,
                                         align=self.settings.energy_align, meters=self.meters)
        except MeterUnavailable as exc:
            self.meter_error = f"--longeff-energy {self.settings.energy}: {exc}"
            return
        self.meter = meter
        self.warnings.extend(warnings)
        seconds = self.idle_seconds()
        if seconds > 0 and meter.method != "none":
            if self.device.startswith("cuda"):
                torch.zeros(1, device=self.device)  # the context exists: idle is measured on an initialised GPU
                torch.cuda.synchronize(self.device)
            self.idle = measure_idle(meter, seconds)

    def idle_seconds(self) -> float:
        """How long idle power is measured: the option, else long enough to mean something on a GPU (whose
        power settles over seconds after work), and short elsewhere."""
        if self.settings.idle_s is not None:
            return self.settings.idle_s
        return GPU_IDLE_S if self.device.startswith("cuda") else CPU_IDLE_S

    def close(self) -> None:
        """Release the meter, models and memory, and restore the process-wide settings changed at start."""
        if self.meter is not None:
            self.meter.close()
        self._models.clear()
        release_memory(self.device)
        restore_cpu_allocator(self.device)
        torch.set_num_threads(self._threads)
        if self.device.startswith("cuda"):
            torch.cuda.set_per_process_memory_fraction(1.0, self.device)

    # -- facts --------------------------------------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        """Machine and software facts for the report (gathered once per session)."""
        if self._facts is None:
            self._facts = machine.session_facts(
                self.device, self.meter.describe() if self.meter is not None else None,
                self.idle.to_dict() if self.idle is not None else None)
            self._facts["memory_budget_enforcement"] = self.memory_enforcement
        return self._facts

    def reference(self) -> ReferenceReading:
        """The machine-speed reference measured now on this session's device (:mod:`pytest_longeff.measure.reference`):
        call it right before a cell's training window and right after its inference window."""
        from pytest_longeff.measure.reference import reference

        return reference(self.device)

    def describe(self) -> list[str]:
        """Machine facts for the terminal: what ran where, and which meter measured it."""
        return machine.describe(self.facts(), self.meter.method if self.meter is not None else None,
                                self.meter_error)

    def stats_dict(self) -> dict[str, float]:
        """Counters of this session: model builds, cache hits, time in measured windows, wall time."""
        return {**asdict(self.stats), "tokenize_cache_hits": self.inputs.cache_hits,
                "tokenize_misses": self.inputs.misses, "session_wall_s": time.perf_counter() - self.started}

    # -- models -------------------------------------------------------------------------------------------------
    def tiny_pretrained(self, cell: Cell) -> bool:
        """Whether the cell's model is the tiny profile's shipped checkpoint (``--longeff-tiny-weights``)."""
        from pytest_longeff.models.checkpoints import shipped

        weights = self.settings.tiny_weights
        return weights == "pretrained" or (weights == "auto" and shipped(cell.family, cell.size) is not None)

    def _idle_off_device(self, active: tuple[str, str]) -> None:
        """On a GPU, cached models other than ``active`` wait in host memory: weights left on the device would
        count against the memory budget and enter every peak of the next model's cells, so batch sizes and
        memory figures would depend on which cells ran before. Gradients go with them (set to None)."""
        if not self.device.startswith("cuda"):
            return  # CPU windows measure above what is resident, and host memory is where models wait anyway
        idle = [key for key in self._on_device if key != active]
        for key in idle:
            built = self._models[key]
            built.model.zero_grad(set_to_none=True)
            built.model.to("cpu")
            self._on_device.discard(key)
        if idle:
            release_memory(self.device)  # the allocator's cached blocks count against the fraction too

    def _to_device(self, key: tuple[str, str]) -> None:
        self._models[key].model.to(self.device)
        if self.device.startswith("cuda"):
            self._on_device.add(key)

    def model(self, cell: Cell) -> tuple[BuiltModel, bool]:
        """The cell's model, built once per (family, size) and reset to its initial weights; True if built now."""
        key = cell.model_key
        fresh = key not in self._models
        self._idle_off_device(key)
        if fresh:
            while len(self._models) >= self._model_cache_size:
                evicted, _ = self._models.popitem(last=False)
                self._on_device.discard(evicted)
                release_memory(self.device)
            vocab = len(self.inputs.tokenizer(cell))
            # Fixed, not the matrix's longest length: a cell's model must not change with the other cells.
            max_len = max(*self.settings.lengths, *DEFAULT_LENGTHS)
            built = build_model(self.families[cell.family], cell.size, self.profile.weights, vocab, max_len,
                                self.settings.model_dir, self.profile.seed,
                                tiny_pretrained=self.tiny_pretrained(cell), attn=self.settings.attn_implementation,
                                gradient_checkpointing=self.settings.gradient_checkpointing)
            self._models[key] = built
            self._to_device(key)
            self.stats.model_builds += 1
            self.stats.model_build_s += built.build_s
        else:
            self._models.move_to_end(key)
            self.stats.model_cache_hits += 1
            self._to_device(key)
        built = self._models[key]
        built.model.zero_grad(set_to_none=True)  # a cell that failed mid-step may have left gradients behind
        built.reset()
        built.family.prepare(built.model, cell.seq_len)
        return built, fresh

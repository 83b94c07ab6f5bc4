"""What happens in a cell: prepare, budget, fine-tune, infer, score, record.

This module holds the work; ``plugin`` only wires it to pytest. Heavy libraries (torch, transformers) are imported
here, and this module is imported only when a cell runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pytest_longeff import data as data_mod
from pytest_longeff.batch_search import SearchResult, search_batch_size
from pytest_longeff.budget import BudgetTracker, TrainBudget, planned_steps, requires_energy_meter
from pytest_longeff.energy import (
    IdleBaseline,
    Meter,
    MeterUnavailable,
    make_meter,
    measure_idle,
    net_energy_j,
)
from pytest_longeff.matrix import DEFAULT_LENGTHS, DEFAULT_TASKS, Cell
from pytest_longeff.measure import (
    WindowResult,
    cpu_model,
    exact_cpu_memory,
    release_memory,
    settle_cpu_allocator,
    synchronize,
    window,
)
from pytest_longeff.metrics import score_predictions
from pytest_longeff.models import BuiltModel, Family, NoCheckpoint, build_model
from pytest_longeff.profiles import PROFILES, Profile
from pytest_longeff.settings import Settings
from pytest_longeff.stats import summarize
from pytest_longeff.tasks import TaskSpec
from pytest_longeff.tokenizer import cached_tokenizer

# The study's optimiser (AdamW, linear schedule with 10 % warm-up).
BETAS, EPS, WEIGHT_DECAY, WARMUP_SHARE = (0.9, 0.98), 1e-6, 0.001, 0.1
# Bumped whenever what a probe measures changes, so batch sizes found the old way are searched again.
PROBE_VERSION = 3
# Time and energy budgets have no known step count: the rate then warms up over this many steps and stays.
OPEN_ENDED_WARMUP_STEPS = 10


class CellSkip(Exception):
    """The cell cannot run here (e.g. it does not fit the memory budget even at batch 1)."""


class CellUnavailable(Exception):
    """The cell cannot be measured as asked (e.g. the requested energy meter does not work on this machine)."""


def resolve_device(requested: str) -> str:
    """``auto`` is ``cuda`` when a GPU is usable, else ``cpu``; an explicit ``cuda`` without one is an error."""
    if requested == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        # Under pytest-xdist each worker is pinned to one GPU, so a device's energy belongs to one cell at a time.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        if worker.startswith("gw") and worker[2:].isdigit():
            return f"cuda:{int(worker[2:]) % torch.cuda.device_count()}"
        return "cuda"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise CellUnavailable(f"--longeff-device {requested}: no CUDA device is usable here (torch "
                              f"{torch.__version__}); use --longeff-device cpu or auto")
    return requested


@dataclass
class TokenizedSplit:
    """A split tokenised for one input length: inputs truncated and padded to exactly ``seq_len``."""

    ids: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor  # padded with -100
    input_tokens: int  # non-padding input tokens, summed


@dataclass
class SessionStats:
    """Counters for the session report."""

    model_builds: int = 0
    model_cache_hits: int = 0
    model_build_s: float = 0.0
    tokenize_cache_hits: int = 0
    tokenize_misses: int = 0
    measured_s: float = 0.0


class LongeffSession:
    """Everything shared by the cells of one pytest session (on one worker): device, meter, idle baseline,
    tokenizer, data and model caches."""

    def __init__(self, settings: Settings, cache_dir: Path, model_cache_size: int = 2) -> None:
        self.settings = settings
        self.profile: Profile = PROFILES[settings.profile]
        self.cache_dir = cache_dir
        self.families: dict[str, Family] = {}
        self.tasks: dict[str, TaskSpec] = {}
        self.stats = SessionStats()
        self.started = time.perf_counter()
        self.device = resolve_device(settings.device)
        settle_cpu_allocator(self.device)
        workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
        if self.device == "cpu" and workers.isdigit() and int(workers) > 1:
            # Workers sharing the CPU would each start a thread per core and fight over them.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))
        self.warnings: list[str] = []
        self.meter: Meter | None = None
        self.meter_error: str | None = None
        self.idle: IdleBaseline | None = None
        self._models: OrderedDict[tuple[str, str], BuiltModel] = OrderedDict()
        self._model_cache_size = model_cache_size
        self._splits: dict[str, dict[str, data_mod.Split]] = {}
        self._tokenized: dict[tuple[int, str, str, int, int], TokenizedSplit] = {}
        self._tokenizers: dict[str, Any] = {}
        self.found_batches: dict[tuple[str, str, int], int] = {}
        self._tok_digests: dict[int, str] = {}
        self._env: dict[str, Any] | None = None
        if self.device.startswith("cuda"):
            # Emulate the budgeted card on a bigger one: allocations past the budget raise out-of-memory.
            total = torch.cuda.get_device_properties(self.device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, settings.memory_budget_bytes / total), self.device)

    # -- meters -------------------------------------------------------------------------------------------------
    def open_meter(self) -> None:
        """Create the energy meter and measure idle power once; a meter that cannot work is remembered as an
        error for every cell when it was asked for explicitly, and is a quiet ``none`` under ``auto``."""
        try:
            meter, warnings = make_meter(self.settings.energy, self.device, sample_hz=self.settings.energy_hz)
        except MeterUnavailable as exc:
            self.meter_error = f"--longeff-energy {self.settings.energy}: {exc}"
            return
        self.meter = meter
        self.warnings.extend(warnings)
        if self.settings.idle_s > 0 and meter.method != "none":
            self.idle = measure_idle(meter, self.settings.idle_s)

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
        self._models.clear()
        release_memory(self.device)

    def environment(self) -> dict[str, Any]:
        """Machine and software facts for the report (gathered once per session)."""
        if self._env is None:
            self._env = self._gather_environment()
        return self._env

    def _gather_environment(self) -> dict[str, Any]:
        import transformers

        facts: dict[str, Any] = {
            "device": self.device,
            "cpu": cpu_model(),
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        if self.device.startswith("cuda"):
            facts["accelerator"] = torch.cuda.get_device_name(self.device)
            facts["cuda"] = torch.version.cuda
        if self.meter is not None:
            facts["meter"] = self.meter.describe()
        if self.idle is not None:
            facts["idle"] = self.idle.to_dict()
        return facts

    # -- data ---------------------------------------------------------------------------------------------------
    def task_root(self, task: str) -> Path:
        """The folder holding ``<task>/{train,validation}.jsonl``: ``--longeff-data-dir`` when given (for the
        paper profile also as a mirror of the SCROLLS zips), else generated data or the SCROLLS download."""
        s = self.settings
        given = Path(s.data_dir) if s.data_dir else None
        if given is not None and (self.profile.data == "generated" or (given / task / "train.jsonl").is_file()):
            return given
        if self.profile.data == "generated":
            root = self.cache_dir / f"generated-v{data_mod.GENERATOR_VERSION}-seed{self.profile.seed}"
            return data_mod.write_generated(root, self.tokenizer_tasks(), self.profile.seed)
        root = self.cache_dir / "scrolls"
        data_mod.fetch_scrolls(task, root, given)
        return root

    def splits(self, task: str) -> dict[str, data_mod.Split]:
        if task not in self._splits:
            self._splits[task] = data_mod.load_task(self.task_root(task), task)
        return self._splits[task]

    def tokenizer(self, cell: Cell) -> Any:
        """The cell's tokenizer: the checkpoint's own for pretrained weights, else one trained offline on the
        training splits of the session's tasks (shared by every cell, so one model serves every task)."""
        key = f"{cell.family}-{cell.size}" if self.profile.weights == "pretrained" else "shared"
        if key not in self._tokenizers:
            if self.profile.weights == "pretrained":
                from transformers import AutoTokenizer

                family = self.families[cell.family]
                self._tokenizers[key] = AutoTokenizer.from_pretrained(_model_source(family, cell.size, self.settings))
            else:
                texts: list[str] = []
                key_parts: list[str] = []
                for task in self.tokenizer_tasks():
                    try:
                        split = self.splits(task)["train"]
                    except data_mod.DataError:
                        continue  # that task's own cells report the problem; the others can still run
                    texts.extend(r.input for r in split.rows)
                    texts.extend(r.output for r in split.rows)
                    key_parts.append(_file_key(Path(split.path)))
                self._tokenizers[key] = cached_tokenizer(self.cache_dir / "tokenizers", "|".join(key_parts), texts)
        return self._tokenizers[key]

    def tokenizer_tasks(self) -> tuple[str, ...]:
        """Tasks whose training text the offline tokenizer learns: for generated data always the default four
        as well, so a cell's vocabulary (and model) does not change with the tasks selected."""
        if self.profile.data == "generated" and self.settings.data_dir is None:
            return tuple(dict.fromkeys((*DEFAULT_TASKS, *self.settings.tasks)))
        return self.settings.tasks

    def tokenized(self, cell: Cell, task: TaskSpec, split_name: str, limit: int = 0) -> TokenizedSplit:
        """A split tokenised for the cell's length, cached per (tokenizer, task, split, length, limit)."""
        tok = self.tokenizer(cell)
        seq_len = cell.seq_len
        key = (id(tok), task.name, split_name, seq_len, limit)
        if key in self._tokenized:
            self.stats.tokenize_cache_hits += 1
            return self._tokenized[key]
        split = self.splits(task.name)[split_name]
        disk = self.cache_dir / "tokenized" / (hashlib.sha256(json.dumps(
            [self._tokenizer_digest(tok), _file_key(Path(split.path)), split_name, seq_len, limit,
             task.max_target_tokens]).encode()).hexdigest()[:24] + ".pt")
        out = _load_tokenized(disk)
        if out is not None:
            self.stats.tokenize_cache_hits += 1
            self._tokenized[key] = out
            return out
        self.stats.tokenize_misses += 1
        rows = split.examples() if split_name != "train" else list(split.rows)
        if limit:
            rows = rows[:limit]
        enc = tok([r.input for r in rows], max_length=seq_len, truncation=True, padding="max_length",
                  return_tensors="pt")
        tgt = tok([r.output for r in rows], max_length=task.max_target_tokens, truncation=True, padding="longest",
                  return_tensors="pt")
        labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
        out = TokenizedSplit([r.id for r in rows], enc["input_ids"], enc["attention_mask"], labels,
                             int(enc["attention_mask"].sum()))
        self._tokenized[key] = out
        _save_tokenized(disk, out)
        return out

    def tokenizer_digest(self, cell: Cell) -> str:
        return self._tokenizer_digest(self.tokenizer(cell))

    def _tokenizer_digest(self, tok: Any) -> str:
        if id(tok) not in self._tok_digests:
            backend = getattr(tok, "backend_tokenizer", None)
            text = backend.to_str() if backend is not None else repr(tok)
            self._tok_digests[id(tok)] = hashlib.sha256(text.encode()).hexdigest()
        return self._tok_digests[id(tok)]

    # -- models -------------------------------------------------------------------------------------------------
    def model(self, cell: Cell) -> tuple[BuiltModel, bool]:
        """The cell's model, built once per (family, size) and reset to its initial weights; True if built now."""
        key = cell.model_key
        if key in self._models:
            self._models.move_to_end(key)
            self.stats.model_cache_hits += 1
            built, fresh = self._models[key], False
        else:
            while len(self._models) >= self._model_cache_size:
                self._models.popitem(last=False)
                release_memory(self.device)
            vocab = len(self.tokenizer(cell))
            # Fixed, not the matrix's longest length: a cell's model must not change with the other cells.
            max_len = max(*self.settings.lengths, *DEFAULT_LENGTHS)
            built = build_model(self.families[cell.family], cell.size, self.profile.weights, vocab, max_len,
                                self.settings.model_dir, self.profile.seed)
            built.model.to(self.device)
            self._models[key] = built
            self.stats.model_builds += 1
            self.stats.model_build_s += built.build_s
            fresh = True
        built.reset()
        built.family.prepare(built.model, cell.seq_len)
        return built, fresh


def _load_tokenized(path: Path) -> TokenizedSplit | None:
    """A tokenised split saved by an earlier run; a corrupt or foreign file is ignored (and rebuilt)."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True)
        return TokenizedSplit(list(blob["ids"]), blob["input_ids"], blob["attention_mask"], blob["labels"],
                              int(blob["input_tokens"]))
    except Exception:  # any unreadable cache entry is a miss, never a failure
        path.unlink(missing_ok=True)
        return None


def _save_tokenized(path: Path, split: TokenizedSplit) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.part")  # workers may share the cache
    torch.save({"ids": split.ids, "input_ids": split.input_ids, "attention_mask": split.attention_mask,
                "labels": split.labels, "input_tokens": split.input_tokens}, tmp)
    tmp.replace(path)


def _model_source(family: Family, size: str, settings: Settings) -> str:
    checkpoint = family.checkpoint(size)
    if settings.model_dir:
        return str(Path(settings.model_dir) / checkpoint)
    return checkpoint


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def machine_key(device: str) -> str:
    """Identifies a machine and software stack for caches and baselines."""
    import transformers

    parts = [platform.node(), cpu_model(), device, torch.__version__, transformers.__version__]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(device))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# -------------------------------------------------------------------------------------------------------------
# Training
# -------------------------------------------------------------------------------------------------------------


def _batch(split: TokenizedSplit, index: Sequence[int], device: str) -> tuple[torch.Tensor, torch.Tensor,
                                                                             torch.Tensor]:
    idx = torch.tensor(list(index))
    labels = split.labels[idx]
    # Trim label padding shared by the whole batch: the decoder then runs on the batch's longest target.
    width = int((labels != -100).sum(dim=1).max().item()) or 1
    return (split.input_ids[idx].to(device), split.attention_mask[idx].to(device),
            labels[:, :width].contiguous().to(device))


def _train_step(built: BuiltModel, split: TokenizedSplit, index: Sequence[int], device: str,
                accumulation: int) -> torch.Tensor:
    """Forward and backward of one micro-batch; the loss is scaled so accumulated gradients are a mean."""
    ids, mask, labels = _batch(split, index, device)
    out = built.model(**built.family.model_inputs(ids, mask), labels=labels)
    loss: torch.Tensor = out.loss
    (loss / accumulation).backward()  # type: ignore[no-untyped-call]
    return loss.detach()


def _optimizer(model: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)


def optimizer_settings(lr: float, budget: TrainBudget) -> dict[str, Any]:
    """What the record says about the optimiser (the study's settings unless --longeff-lr changed the rate)."""
    return {"name": "AdamW", "lr": lr, "betas": list(BETAS), "eps": EPS, "weight_decay": WEIGHT_DECAY,
            "schedule": schedule_description(budget), "precision": "fp32"}


def weight_bytes(model: Any) -> int:
    return sum(int(p.numel()) * int(p.element_size()) for p in model.parameters())


def probe_batch(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str,
                flops: dict[int, int] | None = None) -> int:
    """One full training step (forward, backward, optimiser step) at ``batch_size``: its peak memory in bytes.

    On the CPU the figure is the process high-water mark above what it held before the step, plus the weights
    (already resident); on CUDA the peak allocated bytes, weights included. When ``flops`` is given, the step's
    FLOPs are counted too (probes are not timed, so the counter's overhead costs nothing measured).
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = built.model
    model.train()
    model.zero_grad(set_to_none=True)
    opt = _optimizer(model, 1e-9)  # the step's memory, not its effect, is what a probe measures
    index = [i % len(split.ids) for i in range(batch_size)]
    # One count per cell is enough (FLOPs scale linearly with the batch); the counter slows the step it watches.
    counter = FlopCounterMode(display=False) if flops is not None and not flops else None
    with exact_cpu_memory(device), window("probe", device, None) as w:
        with counter if counter is not None else contextlib.nullcontext():
            _train_step(built, split, index, device, 1)
        opt.step()
    if counter is not None and flops is not None:
        flops[batch_size] = int(counter.get_total_flops())
    model.zero_grad(set_to_none=True)
    del opt
    if w.peak_memory_bytes is None:
        raise CellUnavailable("peak memory cannot be read on this system, so the batch-size search cannot run; "
                              "pass --longeff-batch-size N")
    if device.startswith("cuda"):
        return w.peak_memory_bytes
    return w.peak_memory_bytes + weight_bytes(model)


@dataclass
class TrainResult:
    steps: int = 0
    samples: int = 0
    stopped_by: str = ""
    losses: list[float] = field(default_factory=list)
    step_times_s: list[float] = field(default_factory=list)
    step_samples: list[int] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    best_step: int | None = None
    eval_time_s: float = 0.0  # early-stopping evaluations inside the train window


def count_train_flops(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str) -> int:
    """FLOPs of one forward and backward pass at ``batch_size`` (torch's FLOP counter), on an untimed step
    outside every measured window: the counter slows the step it watches. No optimiser step is taken."""
    from torch.utils.flop_counter import FlopCounterMode

    built.model.train()
    built.model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        _train_step(built, split, [i % len(split.ids) for i in range(batch_size)], device, 1)
    built.model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


class EnergyTally:
    """Energy spent so far in a training run, for ``energy=`` budgets: a second meter of the same kind, read
    and restarted about once a second (short slices would be below a counter's update period)."""

    SLICE_S = 1.0

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.total_j = 0.0
        self.invalid_slices = 0
        self._since = time.perf_counter()
        meter.start()

    def __call__(self) -> float:
        if time.perf_counter() - self._since >= self.SLICE_S:
            reading = self.meter.stop()
            if reading.valid and reading.energy_j is not None:
                self.total_j += reading.energy_j
            else:
                self.invalid_slices += 1
            self.meter.start()
            self._since = time.perf_counter()
        return self.total_j

    def close(self) -> None:
        self.meter.close()


def fine_tune(
    built: BuiltModel,
    train: TokenizedSplit,
    validation: TokenizedSplit,
    batch_size: int,
    accumulation: int,
    budget: TrainBudget,
    device: str,
    meter: Meter | None,
    seed: int,
    lr: float,
    energy_so_far: Callable[[], float | None],
) -> TrainResult:
    """The study's fine-tuning loop under ``budget``: AdamW, linear schedule with 10 % warm-up, fp32."""
    from transformers import get_linear_schedule_with_warmup

    model = built.model
    model.train()
    model.zero_grad(set_to_none=True)
    opt = _optimizer(model, lr)
    samples_per_step = batch_size * accumulation
    steps_per_epoch = max(1, len(train.ids) // samples_per_step)
    planned = planned_steps(budget, steps_per_epoch=steps_per_epoch, batch_size=samples_per_step)
    if planned is None:
        # time= and energy= budgets have no known length: warm up, then hold the rate.
        from transformers import get_constant_schedule_with_warmup

        schedule = get_constant_schedule_with_warmup(opt, OPEN_ENDED_WARMUP_STEPS)
    else:
        schedule = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
            opt, math.ceil(WARMUP_SHARE * planned), planned
        )
    tracker = BudgetTracker(budget, steps_per_epoch)
    rng = random.Random(seed)
    result = TrainResult()
    order: list[int] = []
    best_state: dict[str, torch.Tensor] | None = None
    t_start = time.perf_counter()
    while True:
        reason = tracker.should_stop()
        if reason is not None:
            result.stopped_by = reason
            break
        t0 = time.perf_counter()
        loss_sum = 0.0
        for _ in range(accumulation):
            if len(order) < batch_size:
                epoch_order = list(range(len(train.ids)))
                rng.shuffle(epoch_order)
                order.extend(epoch_order)
            index, order = order[:batch_size], order[batch_size:]
            loss_sum += float(_train_step(built, train, index, device, accumulation)) / accumulation
        opt.step()
        schedule.step()
        model.zero_grad(set_to_none=True)
        synchronize(device)
        result.step_times_s.append(time.perf_counter() - t0)
        result.step_samples.append(samples_per_step)
        result.steps += 1
        result.samples += samples_per_step
        result.losses.append(loss_sum)
        tracker.update(result.steps, result.samples, time.perf_counter() - t_start, energy_so_far())
        if tracker.wants_eval(result.steps):
            t_eval = time.perf_counter()
            val_loss = evaluate_loss(built, validation, batch_size, device)
            result.evals.append({"step": result.steps, "validation_loss": val_loss})
            if tracker.record_eval(-val_loss):
                result.best_step = result.steps
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.train()
            result.eval_time_s += time.perf_counter() - t_eval
    if best_state is not None:
        model.load_state_dict(best_state)  # the study's recipe keeps the best weights
    return result


def schedule_description(budget: TrainBudget) -> str:
    if planned_steps(budget, steps_per_epoch=1, batch_size=1) is None:
        return f"constant after {OPEN_ENDED_WARMUP_STEPS} warm-up steps (budget of unknown length)"
    return f"linear decay with {WARMUP_SHARE:.0%} warm-up"


@torch.no_grad()
def evaluate_loss(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str) -> float:
    """Mean teacher-forced loss over ``split`` (used for early stopping)."""
    built.model.eval()
    total, n = 0.0, 0
    for start in range(0, len(split.ids), batch_size):
        index = range(start, min(start + batch_size, len(split.ids)))
        ids, mask, labels = _batch(split, index, device)
        total += float(built.model(**built.family.model_inputs(ids, mask), labels=labels).loss) * len(index)
        n += len(index)
    return total / max(n, 1)


# -------------------------------------------------------------------------------------------------------------
# Inference
# -------------------------------------------------------------------------------------------------------------


@dataclass
class InferResult:
    predictions: dict[str, str]
    batch_latencies_s: list[float]
    batch_sizes: list[int]
    passes: int
    generated_tokens: int
    outputs: list[tuple[list[int], torch.Tensor]] = field(default_factory=list)


@torch.no_grad()
def generate(built: BuiltModel, split: TokenizedSplit, tokenizer: Any, batch_size: int, max_new_tokens: int,
             repeats: int, device: str) -> InferResult:
    """Greedy generation over ``split``, ``repeats`` times; each batch's wall time is one latency sample."""
    model = built.model
    model.eval()
    predictions: dict[str, str] = {}
    latencies: list[float] = []
    sizes: list[int] = []
    generated = 0
    outputs: list[tuple[list[int], torch.Tensor]] = []
    for _ in range(repeats):
        for start in range(0, len(split.ids), batch_size):
            index = list(range(start, min(start + batch_size, len(split.ids))))
            ids, mask, _ = _batch(split, index, device)
            t0 = time.perf_counter()
            out = model.generate(**built.family.model_inputs(ids, mask), max_new_tokens=max_new_tokens,
                                 num_beams=1, do_sample=False)
            synchronize(device)
            latencies.append(time.perf_counter() - t0)
            sizes.append(len(index))
            outputs.append((index, out))
    return InferResult(predictions, latencies, sizes, repeats, generated, outputs)


def decode_outputs(result: InferResult, split: TokenizedSplit, tokenizer: Any) -> None:
    """Fill in predictions and the count of generated tokens; called after the inference window closes, since
    decoding and counting are not inference."""
    for index, out in result.outputs:
        # New tokens: everything after the decoder-start token that is not padding (an end token counts).
        result.generated_tokens += int((out[:, 1:] != tokenizer.pad_token_id).sum())
        for i, text in zip(index, tokenizer.batch_decode(out, skip_special_tokens=True)):
            result.predictions[split.ids[i]] = text.strip()
    result.outputs = []


@torch.no_grad()
def teacher_forced_predictions(built: BuiltModel, split: TokenizedSplit, tokenizer: Any, batch_size: int,
                               device: str) -> dict[str, str]:
    """The study's scoring: argmax of the logits under teacher forcing, no generation."""
    built.model.eval()
    out: dict[str, str] = {}
    for start in range(0, len(split.ids), batch_size):
        index = list(range(start, min(start + batch_size, len(split.ids))))
        ids, mask, labels = _batch(split, index, device)
        logits = built.model(**built.family.model_inputs(ids, mask), labels=labels).logits
        tokens = logits.argmax(-1).masked_fill(labels == -100, tokenizer.pad_token_id)
        for i, text in zip(index, tokenizer.batch_decode(tokens, skip_special_tokens=True)):
            out[split.ids[i]] = text.strip()
    return out


# -------------------------------------------------------------------------------------------------------------
# The cell
# -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchCache:
    """Found batch sizes across runs: ``get(key)`` / ``set(key, value)`` over ``config.cache``."""

    get: Callable[[str], Any]
    set: Callable[[str, Any], None]


def batch_cache_key(session: LongeffSession, cell: Cell, built: BuiltModel) -> str:
    """Everything a found batch size depends on: machine and software, the model as configured, the tokenizer
    (its vocabulary sizes the embeddings), the cell, the budget and the largest batch allowed."""
    from pytest_longeff import __version__

    s = session.settings
    raw = json.dumps([machine_key(session.device), __version__, PROBE_VERSION, s.profile, cell.id,
                      s.memory_budget_bytes, s.max_batch, session.profile.weights, built.config_dict(),
                      session.tokenizer_digest(cell)], sort_keys=True, default=str)
    return "longeff/batch/" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def choose_batch(session: LongeffSession, cell: Cell, built: BuiltModel, train: TokenizedSplit,
                 cache: BatchCache | None, flops: dict[int, int]) -> tuple[int, dict[str, Any]]:
    """The training batch: fixed by option, cached from an earlier run, or searched under the memory budget."""
    s = session.settings
    if s.batch_size is not None:
        return s.batch_size, {"source": "fixed", "probes": 0, "peak_memory_bytes": None}
    key = batch_cache_key(session, cell, built)
    if cache is not None and not s.batch_reset:
        hit = cache.get(key)
        if isinstance(hit, dict) and isinstance(hit.get("batch_size"), int) and hit["batch_size"] >= 0:
            info = {"source": "cached", "probes": 0, "peak_memory_bytes": hit.get("peak_memory_bytes"),
                    "searched_probes": hit.get("probes")}
            return hit["batch_size"], info

    def try_batch(b: int) -> int:
        return probe_batch(built, train, b, session.device, flops)

    # The same model at the same length under another task needs about the same memory: start there.
    neighbour = session.found_batches.get((cell.family, cell.size, cell.seq_len))
    start = min(max(neighbour or 1, 1), s.max_batch)
    found: SearchResult = search_batch_size(try_batch, s.memory_budget_bytes, max_batch=s.max_batch, start=start,
                                            release=lambda: release_memory(session.device))
    session.found_batches[(cell.family, cell.size, cell.seq_len)] = found.batch_size
    info = {"source": "searched", **found.to_dict(), "start": start}
    info["probes"] = len(found.probes)
    if cache is not None:
        cache.set(key, {"batch_size": found.batch_size, "probes": len(found.probes),
                        "peak_memory_bytes": found.peak_memory_bytes})
    return found.batch_size, info


def _energy_fields(w: WindowResult, idle: IdleBaseline | None) -> dict[str, Any]:
    if w.energy is None:
        return {"energy_j": None, "energy_method": "none", "energy_valid": False,
                "energy_note": "no energy meter", "energy_net_j": None}
    fields = w.energy.to_dict()
    fields.pop("time_s", None)
    fields["energy_net_j"] = net_energy_j(w.energy, idle)
    return fields


def run_cell(session: LongeffSession, cell: Cell, record: dict[str, Any], cache: BatchCache | None) -> None:
    """Run one cell, filling ``record`` as each stage finishes (so a failure keeps what was measured)."""
    s = session.settings
    task = session.tasks[cell.task]
    if session.meter_error is not None:
        raise CellUnavailable(session.meter_error)
    if requires_energy_meter(s.train_budget) and (session.meter is None or session.meter.method == "none"):
        raise CellUnavailable(f"--longeff-train-budget {s.train_budget.spec} needs a real energy meter; none is "
                              "available here (see --longeff-energy)")

    if session.profile.weights == "pretrained":
        try:
            session.families[cell.family].checkpoint(cell.size)
        except NoCheckpoint as exc:
            raise CellSkip(str(exc)) from None

    # 1. Prepare (cached across cells; outside every measured window).
    train = session.tokenized(cell, task, "train")
    validation = session.tokenized(cell, task, "validation", s.eval_samples)
    tokenizer = session.tokenizer(cell)
    built, fresh = session.model(cell)
    # Every cell draws the same random numbers (dropout, shuffling) whatever ran before it.
    torch.manual_seed(session.profile.seed)
    family = built.family
    record.update({
        "params": built.params,
        "model": built.label,
        "model_config": built.config_dict(),
        "model_build": {"built_now": fresh, "build_s": built.build_s if fresh else None},
        "memory_budget_bytes": s.memory_budget_bytes,
        "train_budget": s.train_budget.to_dict(),
        "optimizer": optimizer_settings(s.lr, s.train_budget),
        "validation_examples": len(validation.ids),
    })

    # 2. Budget: the largest batch that fits.
    flops_by_batch: dict[int, int] = {}
    batch_size, batch_info = choose_batch(session, cell, built, train, cache, flops_by_batch)
    record["batch_size"] = batch_size
    record["batch_search"] = batch_info
    if batch_size == 0:
        raise CellSkip(f"does not fit the memory budget of {s.memory_budget_bytes / 2**30:.2f} GiB even at batch "
                       "size 1 (raise --longeff-memory-budget)")
    accumulation = 1
    if s.effective_batch:
        accumulation = max(1, math.ceil(s.effective_batch / batch_size))
    record["gradient_accumulation"] = accumulation
    record["effective_batch"] = batch_size * accumulation
    built.reset()  # the probes trained the model; every cell starts from the same weights
    family.prepare(built.model, cell.seq_len)
    torch.manual_seed(session.profile.seed)

    # 3. Fine-tune.
    meter = session.meter
    tally: EnergyTally | None = None
    if requires_energy_meter(s.train_budget):
        budget_meter, _ = make_meter(s.energy, session.device, sample_hz=s.energy_hz)
        tally = EnergyTally(budget_meter)
    try:
        with window("train", session.device, meter) as tw:
            result = fine_tune(built, train, validation, batch_size, accumulation, s.train_budget, session.device,
                               meter, session.profile.seed, s.lr, tally if tally is not None else lambda: None)
    finally:
        if tally is not None:
            tally.close()
    weights = weight_bytes(built.model)
    train_peak = _with_weights(tw.peak_memory_bytes, session.device, weights)
    train_s = tw.time_s - result.eval_time_s
    warm = s.warmup_steps if result.steps > s.warmup_steps else 0
    throughputs = [n / t for n, t in zip(result.step_samples[warm:], result.step_times_s[warm:]) if t > 0]
    train_summary = summarize(throughputs)
    record["train"] = {
        "steps": result.steps,
        "samples": result.samples,
        "time_s": tw.time_s,
        "eval_time_s": result.eval_time_s,
        "samples_per_s": result.samples / train_s if train_s > 0 else None,
        "samples_per_s_note": "samples / (window time - early-stopping evaluation time); energy covers the "
                              "whole window" if result.eval_time_s else "samples / window time",
        "samples_per_s_stats": train_summary.to_dict() if train_summary else None,
        "warmup_steps_excluded": warm,
        "input_tokens_per_step": cell.seq_len * batch_size * accumulation,
        "loss_first": result.losses[0] if result.losses else None,
        "loss_last": result.losses[-1] if result.losses else None,
        "evaluations": result.evals,
        "best_step": result.best_step,
        "peak_memory_bytes": train_peak,
        "memory_method": tw.memory_method,
        # From the batch-size search's exact probe (or the cache of one), not from the approximate window peak.
        "within_memory_budget": None if batch_info.get("peak_memory_bytes") is None
        else batch_info["peak_memory_bytes"] <= s.memory_budget_bytes,
        "stopped_by": result.stopped_by,
        **_energy_fields(tw, session.idle),
    }
    median_step_s = _median([t for t in result.step_times_s[warm:]])
    flops_per_step, flops_method = _flops(built, train, batch_size, session.device, flops_by_batch)
    flops_per_step *= accumulation
    record["train"].update({
        "flops_per_step": flops_per_step,
        "flops_method": flops_method,
        "achieved_flop_per_s": flops_per_step / median_step_s if median_step_s else None,
        **_work_per_joule(record["train"]["energy_j"], result.samples, record["train"]["input_tokens_per_step"] *
                          result.steps),
    })
    session.stats.measured_s += tw.time_s
    family.prepare(built.model, cell.seq_len)

    # 4. Infer.
    # Generation may run as long as the longest training target (end token included), within the profile's and
    # the task's caps: a model that has learnt the task never needs more, and one that has not is not rewarded
    # for rambling.
    longest_target = int((train.labels != -100).sum(dim=1).max())
    max_new = min(session.profile.max_new_tokens, task.max_target_tokens, max(longest_target, 1))
    with window("inference", session.device, meter) as iw:
        inf = generate(built, validation, tokenizer, batch_size, max_new, s.repeats, session.device)
    session.stats.measured_s += iw.time_s
    decode_outputs(inf, validation, tokenizer)
    record["attention"] = family.attention(built.model, cell.seq_len)
    samples = sum(inf.batch_sizes)
    per_sample = [t / n for t, n in zip(inf.batch_latencies_s, inf.batch_sizes)]
    lat = summarize(per_sample)
    thr = summarize([n / t for t, n in zip(inf.batch_latencies_s, inf.batch_sizes) if t > 0])
    infer_energy = _energy_fields(iw, session.idle)
    record["inference"] = {
        "samples": samples,
        "passes": inf.passes,
        "time_s": iw.time_s,
        "samples_per_s": samples / iw.time_s if iw.time_s > 0 else None,
        "samples_per_s_stats": thr.to_dict() if thr else None,
        "latency_s": {"p50": _pct(per_sample, 50), "p90": _pct(per_sample, 90),
                      "stats": lat.to_dict() if lat else None,
                      "note": "per-sample latency: each batch's generate() wall time / its size"},
        "generated_tokens": inf.generated_tokens,
        # Greedy generation stops at the end token, so models differ in how much they generate: compare per token.
        "generated_tokens_per_s": inf.generated_tokens / iw.time_s if iw.time_s > 0 and inf.generated_tokens
        else None,
        "max_new_tokens": max_new,
        "peak_memory_bytes": _with_weights(iw.peak_memory_bytes, session.device, weights),
        "memory_method": iw.memory_method,
        **infer_energy,
        "j_per_sample": (infer_energy["energy_j"] / samples) if infer_energy["energy_j"] is not None and samples
        else None,
        **_work_per_joule(infer_energy["energy_j"], samples, inf.generated_tokens),
    }

    # 5. Score.
    refs = session.splits(cell.task)["validation"].references()
    refs = {i: refs[i] for i in validation.ids}
    record["accuracy"] = score_predictions(task.metric, inf.predictions, refs)
    record["accuracy_method"] = f"greedy generation, SCROLLS {task.metric}, x100"
    if s.teacher_forced:
        tf = teacher_forced_predictions(built, validation, tokenizer, batch_size, session.device)
        record["accuracy_teacher_forced"] = score_predictions(task.metric, tf, refs)
    record["_predictions"] = inf.predictions


def _flops(built: BuiltModel, train: TokenizedSplit, batch_size: int, device: str,
           counted: dict[int, int]) -> tuple[int, str]:
    """FLOPs of one training micro-batch at ``batch_size`` and how they were obtained: counted by torch's FLOP
    counter during an untimed batch-size probe, or on one untimed batch-1 step and scaled (FLOPs grow linearly
    with the batch at fixed input and target lengths)."""
    base = "torch.utils.flop_counter.FlopCounterMode, forward+backward, outside the measured windows"
    if batch_size in counted:
        return counted[batch_size], f"{base}, counted on the batch-size probe at this batch"
    if counted:
        b = max(counted)
        return round(counted[b] * batch_size / b), f"{base}, counted on the probe at batch {b}, scaled to {batch_size}"
    one = count_train_flops(built, train, 1, device)
    return one * batch_size, f"{base}, counted at batch 1 and scaled to {batch_size}"


def _with_weights(peak: int | None, device: str, weights: int) -> int | None:
    """CPU window peaks are measured above the resident weights; add them so CPU and CUDA figures mean the same."""
    if peak is None or device.startswith("cuda"):
        return peak
    return peak + weights


def _median(values: Sequence[float]) -> float | None:
    return _pct(values, 50)


def _work_per_joule(energy_j: float | None, samples: int, tokens: int) -> dict[str, float | None]:
    """Samples per kJ and tokens per J; null when the energy was not measured (never a made-up figure)."""
    if energy_j is None or energy_j <= 0:
        return {"samples_per_kj": None, "tokens_per_j": None}
    return {"samples_per_kj": samples / (energy_j / 1000), "tokens_per_j": tokens / energy_j}


def _pct(values: Sequence[float], q: float) -> float | None:
    from pytest_longeff.stats import percentile

    return percentile(values, q) if values else None

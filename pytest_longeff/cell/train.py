"""Fine-tuning: the study's optimiser and loop under a training budget, the FLOP count of a step, and the
energy tally an ``energy=`` budget reads while training runs."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from pytest_longeff.cell.budget import BudgetTracker, TrainBudget, planned_steps
from pytest_longeff.cell.precision import FP32, Precision
from pytest_longeff.measure.window import synchronize

if TYPE_CHECKING:
    from pytest_longeff.cell.prepare import TokenizedSplit
    from pytest_longeff.energy import Meter
    from pytest_longeff.models.families import BuiltModel

# The study's optimiser (AdamW, linear schedule with 10 % warm-up).
BETAS, EPS, WEIGHT_DECAY, WARMUP_SHARE = (0.9, 0.98), 1e-6, 0.001, 0.1
# The study's HF Trainer clipped the global gradient norm at 1.0 and exempted biases and LayerNorm weights from
# weight decay.
MAX_GRAD_NORM = 1.0
NO_DECAY = "biases and LayerNorm weights"
# Time and energy budgets have no known step count: the rate then warms up over this many steps and stays.
OPEN_ENDED_WARMUP_STEPS = 10


def batch_tensors(split: TokenizedSplit, index: Sequence[int], device: str) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     torch.Tensor]:
    """Inputs, attention mask and labels of the rows ``index``, on ``device``. Labels keep the split's padded width
    (:attr:`~pytest_longeff.cell.prepare.TokenizedSplit.decoder_positions`): a batch trimmed to its own longest
    target would make steps differ in length and memory, and the batch-size probe would not cover the longest."""
    idx = torch.tensor(list(index))
    return (split.input_ids[idx].to(device), split.attention_mask[idx].to(device), split.labels[idx].to(device))


def train_step(built: BuiltModel, split: TokenizedSplit, index: Sequence[int], device: str, accumulation: int,
               precision: Precision = FP32, scaler: Any = None) -> torch.Tensor:
    """Forward and backward of one micro-batch; the loss is scaled so accumulated gradients are a mean."""
    ids, mask, labels = batch_tensors(split, index, device)
    with precision.autocast():
        out = built.model(**built.family.model_inputs(ids, mask), labels=labels)
    loss: torch.Tensor = out.loss
    scaled = loss / accumulation
    (scaler.scale(scaled) if scaler is not None else scaled).backward()
    return loss.detach()


def no_decay_names(model: Any) -> set[str]:
    """Parameters exempt from weight decay, as HF Trainer chooses them: biases and LayerNorm weights."""
    names = {f"{module_name}.{param_name}".lstrip(".")
             for module_name, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)
             for param_name, _ in module.named_parameters(recurse=False)}
    return names | {name for name, _ in model.named_parameters() if name.endswith("bias")}


def make_optimizer(model: Any, lr: float) -> torch.optim.Optimizer:
    """The study's AdamW, with no weight decay on biases and LayerNorm weights."""
    exempt = no_decay_names(model)
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if n not in exempt], "weight_decay": WEIGHT_DECAY},
              {"params": [p for n, p in named if n in exempt], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS)


def optimizer_settings(lr: float, budget: TrainBudget, precision: str) -> dict[str, Any]:
    """What the record says about the optimiser (the study's settings unless --longeff-lr changed the rate)."""
    return {"name": "AdamW", "lr": lr, "betas": list(BETAS), "eps": EPS, "weight_decay": WEIGHT_DECAY,
            "weight_decay_exempt": NO_DECAY, "max_grad_norm": MAX_GRAD_NORM,
            "schedule": schedule_description(budget), "precision": precision}


def schedule_description(budget: TrainBudget) -> str:
    """The learning-rate schedule a budget gets, in words."""
    if planned_steps(budget, steps_per_epoch=1, batch_size=1) is None:
        return f"constant after {OPEN_ENDED_WARMUP_STEPS} warm-up steps (budget of unknown length)"
    return f"linear decay with {WARMUP_SHARE:.0%} warm-up"


def weight_bytes(model: Any) -> int:
    """Bytes held by the model's parameters."""
    return sum(int(p.numel()) * int(p.element_size()) for p in model.parameters())


def count_train_flops(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str) -> int:
    """FLOPs of one forward and backward pass at ``batch_size`` (torch's FLOP counter), on an untimed step
    outside every measured window: the counter slows the step it watches. No optimiser step is taken."""
    from torch.utils.flop_counter import FlopCounterMode

    built.model.train()
    built.model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        train_step(built, split, [i % len(split.ids) for i in range(batch_size)], device, 1)
    built.model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


FLOPS_METHOD = "torch.utils.flop_counter.FlopCounterMode, forward+backward, outside the measured windows"


def step_flops(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str,
               counted: dict[int, int]) -> tuple[int, str]:
    flops, method = _step_flops(built, split, batch_size, device, counted)
    from pytest_longeff.models.families import is_checkpointing

    if is_checkpointing(built.model):
        method += "; includes the forward recomputed by gradient checkpointing (about a quarter to a third more)"
    return flops, method


def _step_flops(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str,
                counted: dict[int, int]) -> tuple[int, str]:
    """FLOPs of one training micro-batch at ``batch_size`` and how they were obtained: counted during an untimed
    batch-size probe, or on one untimed batch-1 step and scaled (FLOPs grow linearly with the batch at fixed input
    and target lengths)."""
    if batch_size in counted:
        return counted[batch_size], f"{FLOPS_METHOD}, counted on the batch-size probe at this batch"
    if counted:
        b = max(counted)
        return (round(counted[b] * batch_size / b),
                f"{FLOPS_METHOD}, counted on the probe at batch {b}, scaled to {batch_size}")
    one = count_train_flops(built, split, 1, device)
    return one * batch_size, f"{FLOPS_METHOD}, counted at batch 1 and scaled to {batch_size}"


class EnergySoFar:
    """Energy spent so far in the open ``train`` window, for ``energy=`` budgets: the window's own meter read
    without closing it (one meter, so no energy falls between two). A reading that cannot be trusted yet (e.g.
    before the counter's first update) keeps the last valid figure, so the budget never moves backwards."""

    #: Invalid reads in a row after which the budget cannot be tracked (early reads are invalid only until the
    #: counter's first update; a window shared with another process or under throttling stays invalid).
    MAX_INVALID_IN_A_ROW = 50

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.total_j = 0.0
        self.invalid_reads = 0
        self._in_a_row = 0

    def __call__(self) -> float:
        """Energy spent so far in joules, never less than the last valid reading; raises
        :class:`~pytest_longeff.errors.CellUnavailable` when readings stay invalid (the budget would never end)."""
        reading = self.meter.read()
        if reading.valid and reading.energy_j is not None:
            self.total_j = max(self.total_j, reading.energy_j)
            self._in_a_row = 0
            return self.total_j
        self.invalid_reads += 1
        self._in_a_row += 1
        if self._in_a_row >= self.MAX_INVALID_IN_A_ROW:
            from pytest_longeff.errors import CellUnavailable

            raise CellUnavailable(f"the energy budget cannot be tracked: {self._in_a_row} readings in a row are "
                                  f"invalid ({reading.note}); use a steps= or time= budget, or free the device")
        return self.total_j


@dataclass
class TrainResult:
    """What a fine-tuning run did, step by step."""

    steps: int = 0
    samples: int = 0
    stopped_by: str = ""
    losses: list[float] = field(default_factory=list)
    step_times_s: list[float] = field(default_factory=list)
    step_samples: list[int] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    best_step: int | None = None
    eval_time_s: float = 0.0  # early-stopping evaluations inside the train window


@dataclass(frozen=True)
class TrainPlan:
    """Everything a fine-tuning run needs besides the model and data."""

    batch_size: int
    accumulation: int
    budget: TrainBudget
    device: str
    seed: int
    lr: float
    energy_so_far: Callable[[], float | None] = lambda: None
    precision: Precision = FP32
    study_evaluation: Callable[[], tuple[float, float]] | None = None
    """Early stopping on the study's metric (higher is better) instead of the validation loss, when given: one pass
    over the validation rows that returns ``(loss, score)`` from the same forwards, as the study's evaluation did."""
    on_step: Callable[[int, int | None, float], None] | None = None
    """Called after every optimiser step with (steps done, planned steps or None, seconds since training began)."""


class _Batches:
    """Shuffled training rows, a fresh permutation per epoch, drawn ``batch_size`` at a time."""

    def __init__(self, rows: int, batch_size: int, seed: int) -> None:
        self.rows, self.batch_size = rows, batch_size
        self.rng = random.Random(seed)
        self.order: list[int] = []

    def next(self) -> list[int]:
        if len(self.order) < self.batch_size:
            epoch_order = list(range(self.rows))
            self.rng.shuffle(epoch_order)
            self.order.extend(epoch_order)
        index, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        return index


def _schedule(opt: torch.optim.Optimizer, planned: int | None) -> Any:
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if planned is None:  # time= and energy= budgets have no known length: warm up, then hold the rate.
        return get_constant_schedule_with_warmup(opt, OPEN_ENDED_WARMUP_STEPS)
    return get_linear_schedule_with_warmup(opt, math.ceil(WARMUP_SHARE * planned), planned)  # type: ignore[no-untyped-call]


def fine_tune(built: BuiltModel, train: TokenizedSplit, validation: TokenizedSplit, plan: TrainPlan) -> TrainResult:
    """The study's fine-tuning loop under ``plan.budget``: AdamW, linear schedule with 10 % warm-up, fp32."""
    model = built.model
    model.train()
    model.zero_grad(set_to_none=True)
    opt = make_optimizer(model, plan.lr)
    samples_per_step = plan.batch_size * plan.accumulation
    steps_per_epoch = max(1, len(train.ids) // samples_per_step)
    planned = planned_steps(plan.budget, steps_per_epoch=steps_per_epoch, batch_size=samples_per_step)
    schedule = _schedule(opt, planned)
    tracker = BudgetTracker(plan.budget, steps_per_epoch)
    batches = _Batches(len(train.ids), plan.batch_size, plan.seed)
    scaler = plan.precision.scaler()
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    t_start = time.perf_counter()
    while (reason := tracker.should_stop()) is None:
        t0 = time.perf_counter()
        # Losses stay on the device until the step ends: one host sync per step, not one per micro-batch.
        losses = [train_step(built, train, batches.next(), plan.device, plan.accumulation, plan.precision, scaler)
                  for _ in range(plan.accumulation)]
        _optimizer_step(model, opt, scaler)
        schedule.step()
        model.zero_grad(set_to_none=True)
        loss_sum = float(torch.stack(losses).sum())
        synchronize(plan.device)
        result.step_times_s.append(time.perf_counter() - t0)
        result.step_samples.append(samples_per_step)
        result.steps += 1
        result.samples += samples_per_step
        result.losses.append(loss_sum / plan.accumulation)
        tracker.update(result.steps, result.samples, time.perf_counter() - t_start, plan.energy_so_far())
        if plan.on_step is not None:
            plan.on_step(result.steps, planned, time.perf_counter() - t_start)
        if tracker.wants_eval(result.steps):
            best_state = _evaluate(built, validation, plan, tracker, result) or best_state
    result.stopped_by = reason
    if best_state is not None:
        model.load_state_dict(best_state)  # the study's recipe keeps the best weights
    return result


def _optimizer_step(model: Any, opt: torch.optim.Optimizer, scaler: Any) -> None:
    """Clip the global gradient norm at 1.0 (unscaled first under fp16), then step."""
    if scaler is not None:
        scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()


def _evaluate(built: BuiltModel, validation: TokenizedSplit, plan: TrainPlan, tracker: BudgetTracker,
              result: TrainResult) -> dict[str, torch.Tensor] | None:
    """An early-stopping evaluation: the weights when they are the best so far, else None."""
    t_eval = time.perf_counter()
    if plan.study_evaluation is not None:
        val_loss, score = plan.study_evaluation()
        entry = {"step": result.steps, "validation_loss": val_loss, "study_score": score}
    else:
        val_loss = evaluate_loss(built, validation, plan.batch_size, plan.device, plan.precision)
        entry = {"step": result.steps, "validation_loss": val_loss}
    result.evals.append(entry)
    best = None
    if tracker.record_eval(entry["study_score"] if plan.study_evaluation is not None else -val_loss):
        result.best_step = result.steps
        # Kept off the device: a second copy of the weights must not count against the memory budget.
        best = {k: v.detach().to("cpu", copy=True) for k, v in built.model.state_dict().items()}
    built.model.train()
    result.eval_time_s += time.perf_counter() - t_eval
    return best


@torch.no_grad()
def evaluate_loss(built: BuiltModel, split: TokenizedSplit, batch_size: int, device: str,
                  precision: Precision = FP32) -> float:
    """Mean teacher-forced loss over ``split`` (used for early stopping)."""
    built.model.eval()
    total, n = 0.0, 0
    for start in range(0, len(split.ids), batch_size):
        index = range(start, min(start + batch_size, len(split.ids)))
        ids, mask, labels = batch_tensors(split, index, device)
        with precision.autocast():
            loss = built.model(**built.family.model_inputs(ids, mask), labels=labels).loss
        total += float(loss) * len(index)
        n += len(index)
    return total / max(n, 1)

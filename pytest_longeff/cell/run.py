"""One cell, as a short sequence of named phases: check, prepare, choose the batch, fine-tune, infer, score.

Each phase returns the record section it measured and :func:`run_cell` files it at once, so a failure keeps what
was measured before it. Models are reset to their initial weights after the probes and restored to the cell's
attention settings after training, so every phase starts from what the cell promises.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from pytest_longeff.cell.batch import (
    BatchCache,
    choose_batch,
    forget_batch,
    probed_at,
    remember_batch,
    warm_up_step,
)
from pytest_longeff.cell.budget import requires_energy_meter
from pytest_longeff.cell.infer import decode_outputs, generate, pin_generation, study_pass
from pytest_longeff.cell.precision import Precision
from pytest_longeff.cell.search import is_oom
from pytest_longeff.cell.train import EnergySoFar, TrainPlan, fine_tune, optimizer_settings, step_flops, weight_bytes
from pytest_longeff.errors import CellSkip, CellUnavailable, NoCheckpoint
from pytest_longeff.measure.window import release_memory, window
from pytest_longeff.models.checkpoints import check_tiny_checkpoint
from pytest_longeff.profiles import accuracy_meaning
from pytest_longeff.record.sections import (
    Accuracy,
    BatchChoice,
    CellRecord,
    Energy,
    InferenceWindow,
    ModelFacts,
    TrainWindow,
)
from pytest_longeff.stats import percentile, summarize
from pytest_longeff.tasks.metrics import Metric, average_scores, example_scores
from pytest_longeff.tasks.study import study_scores

if TYPE_CHECKING:
    from pytest_longeff.cell.phases import Timeline
    from pytest_longeff.cell.prepare import TokenizedSplit
    from pytest_longeff.cell.resources import LongeffSession
    from pytest_longeff.matrix import Cell
    from pytest_longeff.measure.reference import ReferenceReading
    from pytest_longeff.models.families import BuiltModel
    from pytest_longeff.tasks.specs import TaskSpec


@dataclass
class Prepared:
    """A cell's inputs and model, ready to run (nothing in it was measured)."""

    cell: Cell
    task: TaskSpec
    train: TokenizedSplit
    validation: TokenizedSplit
    tokenizer: Any
    built: BuiltModel
    precision: Precision
    flops_by_batch: dict[int, int]
    study_rows: TokenizedSplit | None = None
    """Every validation row of the scored examples with labels padded to the task's target length, for the study's
    teacher-forced evaluation (None when neither ``--longeff-teacher-forced`` nor the ``study`` early-stopping
    metric asks for it)."""
    timelines: list[Timeline] = field(default_factory=list)
    """The inference window's token times, batch by batch (for the decode half)."""
    generation_latencies_s: list[float] = field(default_factory=list)
    """The inference window's generate() batch times, for the check that prefill and decode add up to them."""

    def study_evaluation(self, batch_size: int, metrics: Mapping[str, Metric]) -> tuple[float, float]:
        """The study's evaluation in one pass (its early-stopping evaluation): the validation loss and the
        teacher-forced score, with the task's metric from ``metrics`` (the session's table)."""
        assert self.study_rows is not None
        result = study_pass(self.built, self.study_rows, self.tokenizer, batch_size, self.precision.device,
                            self.precision)
        return result.loss, study_scores(self.task.metric, result.predictions, result.labels, metrics)["score"]


def run_cell(session: LongeffSession, cell: Cell, record: CellRecord, cache: BatchCache | None,
             baseline_batch: int | None = None,
             on_step: Callable[[int, int | None, float], None] | None = None,
             batch: BatchChoice | None = None) -> None:
    """Run one cell, filing each section in ``record`` as its phase finishes. With ``baseline_batch`` (the batch a
    baseline ran at) the cell trains at that batch when it still fits, so efficiency is compared like with like;
    the search's own answer is recorded either way. ``on_step`` follows training's progress (see
    :class:`pytest_longeff.cell.train.TrainPlan`). ``batch``: the choice of an earlier measurement of the same cell,
    reused without searching again."""
    check_ready(session, cell)
    precision = Precision(session.settings.precision, session.device)
    with precision.matmul():  # TF32 on or off for this cell only
        p, record.model = prepare(session, cell, precision)
        record.batch = choose(session, p, cache, baseline_batch, batch)
        if record.batch.batch_size == 0:
            raise CellSkip(f"does not fit the memory budget of {session.settings.memory_budget_bytes / 2**30:.2f} "
                           "GiB even at batch size 1 (raise --longeff-memory-budget)")
        failed = None
        try:
            predictions, before = measure_phases(session, p, record, on_step, warm=batch is None)
        except Exception as exc:
            # A re-measurement (``batch`` given) is not retried: its figures are pooled with the first's, which
            # ran at this batch.
            if batch is not None or not retries_after(exc, record.batch):
                raise
            failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        if failed is not None:
            # Outside the handler: the error's traceback no longer pins the failed step's tensors.
            record.train = record.inference = record.attention = None
            record.batch = after_out_of_memory(session, p, cache, record.batch, failed)
            predictions, before = measure_phases(session, p, record, on_step, warm=True)
            remember_batch(session, p.cell, p.built, cache, record.batch)
        if before is not None:
            from pytest_longeff.measure.reference import CellReference

            record.reference = CellReference.from_readings(before, session.reference())
        try:
            record.phases = phases_phase(session, p, record.batch.batch_size)
        except Exception as exc:  # noqa: BLE001 - the cell's other measurements stand; the record says why not this
            if is_oom(exc):
                release_memory(session.device)
            record.phases = {"note": f"prefill and decode not measured apart: {type(exc).__name__}: "
                                     f"{str(exc).strip()[:200]}"}
        record.accuracy = score_phase(session, p, predictions, record.batch.batch_size)
        record.predictions = predictions
        record.work = work_phase(session, p, record.batch.batch_size)


SCROLLS_METRICS = ("rouge", "f1", "exact_match")
COLD_START = "one untimed training step at this batch before the train window"


def measure_phases(session: LongeffSession, p: Prepared, record: CellRecord,
                   on_step: Callable[[int, int | None, float], None] | None,
                   warm: bool) -> tuple[dict[str, str], ReferenceReading | None]:
    """The measured phases at ``record.batch``: fine-tune, then infer; returns the scored predictions and the
    machine-speed reference read right before training (None when not measured).

    ``warm``: when no probe ran this batch in this process (a cached or fixed batch, or a retry), one untimed
    training step first takes the first step's one-off costs (lazy kernel loading, library handles, workspaces)
    out of the train window, as a fresh search's probes do, so a warm-cache run measures what a cold-cache run
    does. It runs here, where an out-of-memory error is retried like one in training."""
    if warm and not probed_at(record.batch, record.batch.batch_size):
        warm_up_step(p.built, p.train, record.batch.batch_size, session.device, p.precision)
        p.built.reset()
        p.built.family.prepare(p.built.model, p.cell.seq_len)
        record.batch = replace(record.batch, details={**record.batch.details, "cold_start": COLD_START})
    before = session.reference() if session.settings.measures_reference(session.device) else None
    record.train = train_phase(session, p, record.batch, on_step)
    record.inference, record.attention, predictions = infer_phase(session, p, record.batch.batch_size)
    budget = session.settings.memory_budget_bytes
    record.train = replace(record.train, within_memory_budget=within_budget(
        budget, record.train.peak_memory_bytes, record.inference.peak_memory_bytes))
    return predictions, before


def within_budget(budget_bytes: int, *peaks: int | None) -> bool | None:
    """Whether the cell held its memory budget, from the peaks its windows measured (train and inference), not from
    the batch-size probe (which a cached batch did not run): False when any measured peak exceeds the budget, True
    when every window was measured and none does, None when a window's memory could not be read. A peak is what
    the window reports, weights included: on CUDA the peak allocated bytes; on the CPU the process high-water mark
    above what the process held at the window's start, plus the weights (an approximation: the heap may reuse
    memory freed before the window)."""
    if any(peak is not None and peak > budget_bytes for peak in peaks):
        return False
    return None if any(peak is None for peak in peaks) else True


def retries_after(exc: BaseException, batch: BatchChoice) -> bool:
    """Whether a cell that raised ``exc`` is retried once at a smaller batch: an out-of-memory error at a batch the
    suite chose (a batch fixed by option is the user's to change, and batch 1 has nothing smaller)."""
    return (is_oom(exc) and batch.batch_size > 1 and batch.source != "fixed"
            and "out_of_memory" not in batch.details)


def retry_batch(batch_size: int) -> int:
    """The batch a cell retries at after running out of memory at ``batch_size``: a quarter smaller (the probe's
    figure was off by more than one sample's memory, so one less would likely fail again)."""
    return max(1, batch_size - max(1, batch_size // 4))


def after_out_of_memory(session: LongeffSession, p: Prepared, cache: BatchCache | None, batch: BatchChoice,
                        error: str) -> BatchChoice:
    """Clean up after an out-of-memory error in a measured phase and choose the retry's batch: the failed step's
    gradients are freed (the model stays cached, its device memory must not), the cached batch size is forgotten
    (the next run searches again instead of failing the same way), and the model is put back to its initial
    weights. The record says what happened."""
    p.built.model.zero_grad(set_to_none=True)
    release_memory(session.device)
    forget_batch(session, p.cell, p.built, cache)
    p.built.reset()
    p.built.family.prepare(p.built.model, p.cell.seq_len)
    smaller = retry_batch(batch.batch_size)
    effective = session.settings.effective_batch
    details = {**batch.details, "out_of_memory": {"batch_size": batch.batch_size, "source": batch.source,
                                                  "error": error, "retried_at": smaller,
                                                  "cached_batch_forgotten": cache is not None}}
    return replace(batch, batch_size=smaller, source=f"retried after out-of-memory at batch {batch.batch_size}",
                   peak_memory_bytes=None, details=details,
                   accumulation=max(1, math.ceil(effective / smaller)) if effective else 1)


def check_ready(session: LongeffSession, cell: Cell) -> None:
    """Refuse a cell that cannot be measured as asked, before any work."""
    s = session.settings
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
    if session.tiny_pretrained(cell):
        check_tiny_checkpoint(cell.family, cell.size, cell.seq_len)


def check_positions(built: BuiltModel, seq_len: int, max_new_tokens: int) -> None:
    """Skip, with the reason, a cell longer than its model's positions allow (a decoder-only model's positions hold
    the prompt and what it generates)."""
    from pytest_longeff.models.common import position_limit
    from pytest_longeff.models.recent import is_decoder_only

    limit, field_name = position_limit(built.model)
    needed = seq_len + (max_new_tokens if is_decoder_only(built.family) else 0)
    if limit is not None and needed > limit:
        what = f"{seq_len} input tokens" + (f" + {max_new_tokens} generated" if needed != seq_len else "")
        raise CellSkip(f"{built.label}: {what} is beyond the model's {limit} positions (config.{field_name}); "
                       f"choose --longeff-lengths of at most {limit - (needed - seq_len)}")


def prepare(session: LongeffSession, cell: Cell, precision: Precision) -> tuple[Prepared, ModelFacts]:
    """Inputs and model (cached across cells; outside every measured window)."""
    s = session.settings
    task = session.tasks[cell.task]
    train = session.inputs.tokenized(cell, task, "train")
    validation = session.inputs.tokenized(cell, task, "validation", s.eval_samples)
    study_rows = None
    if s.teacher_forced or s.early_stop_metric == "study":
        study_rows = session.inputs.tokenized(cell, task, "validation", s.eval_samples, rows="study")
    built, fresh = session.model(cell)
    check_positions(built, cell.seq_len, session.profile.max_new_tokens)
    facts = ModelFacts(built.params, built.label, built.config_dict(), fresh, built.build_s if fresh else None,
                       s.memory_budget_bytes, s.train_budget.to_dict(),
                       optimizer_settings(s.lr, s.train_budget, precision.name), len(validation.ids),
                       *accuracy_meaning(session.profile, built.tiny_pretrained))
    return (Prepared(cell, task, train, validation, session.inputs.tokenizer(cell), built, precision, {}, study_rows),
            facts)


def choose(session: LongeffSession, p: Prepared, cache: BatchCache | None,
           baseline_batch: int | None = None, earlier: BatchChoice | None = None) -> BatchChoice:
    """The largest batch that fits the memory budget (0: none fits), or the baseline's batch when that still fits,
    or ``earlier`` (an earlier measurement's choice) as it was; the model is then put back to its initial
    weights."""
    if earlier is not None:
        p.built.reset()
        p.built.family.prepare(p.built.model, p.cell.seq_len)
        return earlier
    s = session.settings
    choice = choose_batch(session, p.cell, p.built, p.train, cache, p.flops_by_batch, p.precision)
    batch, source, details = choice.batch_size, choice.source, dict(choice.details)
    if baseline_batch is not None and choice.source != "fixed":
        details["searched_batch_size"] = choice.batch_size
        if 0 < baseline_batch <= choice.batch_size:
            batch, source = baseline_batch, f"baseline ({choice.source} {choice.batch_size})"
    accumulation = 1
    if s.effective_batch and batch:
        accumulation = max(1, math.ceil(s.effective_batch / batch))
    p.built.reset()  # the probes trained the model; every cell starts from the same weights
    p.built.family.prepare(p.built.model, p.cell.seq_len)
    # The probe's peak belongs to the searched batch: for a smaller baseline batch it is an upper bound.
    return BatchChoice(batch, source, choice.probes, choice.peak_memory_bytes, details, accumulation)


def _with_weights(peak: int | None, device: str, weights: int) -> int | None:
    """CPU window peaks are measured above the resident weights; add them so CPU and CUDA figures mean the same."""
    return peak if peak is None or device.startswith("cuda") else peak + weights


def train_phase(session: LongeffSession, p: Prepared, batch: BatchChoice,
                on_step: Callable[[int, int | None, float], None] | None = None) -> TrainWindow:
    """Fine-tune under the training budget inside the ``train`` window."""
    s = session.settings
    # Every cell draws the same random numbers (dropout, shuffling) whatever ran before it.
    torch.manual_seed(session.profile.seed)
    meter = session.meter
    energy_so_far = EnergySoFar(meter) if meter is not None and requires_energy_meter(s.train_budget) else None
    study = ((lambda: p.study_evaluation(batch.batch_size, session.metrics)) if s.early_stop_metric == "study"
             else None)
    plan = TrainPlan(batch.batch_size, batch.accumulation, s.train_budget, session.device, session.profile.seed,
                     s.lr, energy_so_far or (lambda: None), p.precision, study, on_step)
    with window("train", session.device, meter) as w:
        result = fine_tune(p.built, p.train, p.validation, plan)
    session.stats.measured_s += w.time_s
    warm = s.warmup_steps if result.steps > s.warmup_steps else 0
    step_times = result.step_times_s[warm:]
    flops, flops_method = step_flops(p.built, p.train, batch.batch_size, session.device, p.flops_by_batch)
    peak = _with_weights(w.peak_memory_bytes, session.device, weight_bytes(p.built.model))
    p.built.family.prepare(p.built.model, p.cell.seq_len)
    return TrainWindow(
        steps=result.steps, samples=result.samples, time_s=w.time_s, eval_time_s=result.eval_time_s,
        throughput=summarize([n / t for n, t in zip(result.step_samples[warm:], step_times, strict=True) if t > 0]),
        warmup_steps_excluded=warm, input_tokens_per_step=p.cell.seq_len * batch.batch_size * batch.accumulation,
        losses=result.losses, evaluations=result.evals, best_step=result.best_step,
        peak_memory_bytes=peak, memory_method=w.memory_method,
        # The train window's own peak; measure_phases adds the inference window's (see within_budget).
        within_memory_budget=within_budget(s.memory_budget_bytes, peak), stopped_by=result.stopped_by,
        energy=Energy.from_reading(w.energy, session.idle), flops_per_step=flops * batch.accumulation,
        flops_method=flops_method, median_step_s=percentile(step_times, 50) if step_times else None,
        decoder_positions=p.train.decoder_positions, label_padding=session.profile.label_padding,
        peak_reserved_bytes=w.peak_reserved_bytes, epochs=result.samples / max(len(p.train.ids), 1))


def infer_phase(session: LongeffSession, p: Prepared, batch_size: int) -> tuple[InferenceWindow, str, dict[str, str]]:
    """Greedy generation of a fixed number of new tokens over the validation examples inside the ``inference``
    window, so its figures do not move with when the fine-tuned model chooses to stop (re-training on a GPU is not
    deterministic); the predictions that are scored come from a separate, untimed generation that stops at the end
    token. Decoding after both."""
    s = session.settings
    # Every row gets the generation cap: the longest training target (end token included), within the profile's
    # and the task's caps. A model that has learnt the task never needs more to answer.
    max_new = max_new_tokens(session, p)
    generation = pin_generation(p.built.model)
    # The scored generation runs first, untimed: it also takes generation's first-call costs out of the window.
    scored = generate(p.built, p.validation, batch_size, max_new, 1, session.device, p.precision)
    decode_outputs(scored, p.validation, p.tokenizer)
    if not session.device.startswith("cuda"):
        # Training's freed heap would otherwise serve the window's tensors without raising the resident set, so
        # the window's CPU peak would depend on what training left behind; trimmed, the peak is the window's own.
        # (On CUDA, emptying the allocator's cache here would only put cudaMalloc calls inside the window.)
        release_memory(session.device, full=False)
    timelines: list[Timeline] = []
    with window("inference", session.device, session.meter) as w:
        inf = generate(p.built, p.validation, batch_size, max_new, s.repeats, session.device, p.precision, fixed=True,
                       timelines=timelines)
    session.stats.measured_s += w.time_s
    p.timelines, p.generation_latencies_s = timelines, list(inf.batch_latencies_s)
    decode_outputs(inf, p.validation, p.tokenizer)
    per_sample = [t / n for t, n in zip(inf.batch_latencies_s, inf.batch_sizes, strict=True)]
    section = InferenceWindow(
        samples=sum(inf.batch_sizes), passes=inf.passes, time_s=w.time_s,
        throughput=summarize([n / t for t, n in zip(inf.batch_latencies_s, inf.batch_sizes, strict=True) if t > 0]),
        latency=summarize(per_sample),
        latency_p50_s=percentile(per_sample, 50) if per_sample else None,
        latency_p90_s=percentile(per_sample, 90) if per_sample else None,
        generated_tokens=inf.generated_tokens, max_new_tokens=max_new,
        peak_memory_bytes=_with_weights(w.peak_memory_bytes, session.device, weight_bytes(p.built.model)),
        memory_method=w.memory_method, energy=Energy.from_reading(w.energy, session.idle),
        scored_generated_tokens=scored.generated_tokens,
        generation_config={**generation, "max_new_tokens": max_new}, peak_reserved_bytes=w.peak_reserved_bytes)
    return section, p.built.family.attention(p.built.model, p.cell.seq_len), scored.predictions


def phases_phase(session: LongeffSession, p: Prepared, batch_size: int) -> dict[str, Any]:
    """Prefill in a window of its own, decode from the inference window's token times, the KV cache measured on
    one untimed prefill (:mod:`pytest_longeff.cell.phases`)."""
    from pytest_longeff.cell.phases import measure_kv_cache, phases_section, run_prefill

    s = session.settings
    # Untimed, and first: it is also the prefill's warm-up (the window's first batch pays no first-call costs).
    kv = measure_kv_cache(p.built, p.validation, session.device, p.precision)
    if not session.device.startswith("cuda"):
        release_memory(session.device, full=False)  # as before the inference window
    with window("prefill", session.device, session.meter) as w:
        prefill = run_prefill(p.built, p.validation, batch_size, s.repeats, session.device, p.precision)
    session.stats.measured_s += w.time_s
    energy = Energy.from_reading(w.energy, session.idle).to_dict()
    peak = _with_weights(w.peak_memory_bytes, session.device, weight_bytes(p.built.model))
    return phases_section(prefill, w.time_s, energy, peak, p.timelines, p.generation_latencies_s, kv)


def max_new_tokens(session: LongeffSession, p: Prepared) -> int:
    """How many tokens generation may make: the longest training target (end token included), within the profile's
    and the task's caps."""
    longest_target = int((p.train.labels != -100).sum(dim=1).max())
    return min(session.profile.max_new_tokens, p.task.max_target_tokens, max(longest_target, 1))


def work_phase(session: LongeffSession, p: Prepared, batch_size: int) -> dict[str, Any]:
    """The work counters of one training micro-batch and of generating a fixed number of tokens (the generation
    cap) for one batch, outside every window: figures that do not drift with the machine, gated exactly."""
    from pytest_longeff.cell.fixed import STEP_WORK, TOKEN_WORK, count_step, count_tokens

    t0 = time.perf_counter()
    tokens = max_new_tokens(session, p)
    step = count_step(p.built, p.train, batch_size, session.device, p.precision).to_dict()
    token = count_tokens(p.built, p.validation, batch_size, tokens, session.device, p.precision).to_dict()
    return {"train": {**step, "what": STEP_WORK}, "inference": {**token, "what": TOKEN_WORK},
            "cost_s": time.perf_counter() - t0}


def score_phase(session: LongeffSession, p: Prepared, predictions: dict[str, str], batch_size: int) -> Accuracy:
    """SCROLLS' metric on the generations (and the study's teacher-forced scoring when asked)."""
    refs = session.inputs.splits(p.cell.task, p.cell.seq_len, p.cell)["validation"].references()
    refs = {i: refs[i] for i in p.validation.ids}
    teacher_forced = None
    if session.settings.teacher_forced and p.study_rows is not None:
        tf = study_pass(p.built, p.study_rows, p.tokenizer, batch_size, session.device, p.precision)
        teacher_forced = study_scores(p.task.metric, tf.predictions, tf.labels, session.metrics)
    per_example = example_scores(p.task.metric, predictions, refs, session.metrics)
    examples = {i: {k: 100.0 * v for k, v in values.items()} for i, values in per_example.items()}
    suite = "SCROLLS " if p.task.metric in SCROLLS_METRICS else "RULER " if p.task.metric.startswith("ruler") else ""
    return Accuracy(average_scores(p.task.metric, per_example, session.metrics),
                    f"greedy generation, {suite}{p.task.metric}, x100", teacher_forced, examples)

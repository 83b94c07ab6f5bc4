"""The cell record: typed sections, each built by the phase that measured it, serialised once by :meth:`to_dict`.

Every reader (JSON report, CSV, JUnit properties, the terminal matrix, the gate, the findings) reads the dict form
through :data:`FIGURES`, the one table of reported figures: a figure's name, where it lives in the record, its
unit, which way is better and how it was obtained. A path in that table that does not exist in a full record is
caught by a test, not silently reported as unmeasured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_longeff.energy import EnergyReading, IdleBaseline
    from pytest_longeff.measure.reference import CellReference
    from pytest_longeff.stats import Summary



def is_cell(record: Mapping[str, Any]) -> bool:
    """Whether a record (dict form) is a matrix cell's: window records carry ``kind`` "window"."""
    return bool(record.get("kind", "cell") == "cell")


def lookup(record: Mapping[str, Any], *path: str) -> Any:
    """``record[path[0]][path[1]]...``, or None where any step is missing."""
    cur: Any = record
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _stats(summary: Summary | None) -> dict[str, object] | None:
    return summary.to_dict() if summary is not None else None


# -- value objects --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Energy:
    """A window's energy as the record states it: the meter's reading plus the idle-subtracted net figure."""

    reading: EnergyReading | None
    net_j: float | None
    """Energy above the session's idle draw over the window, in joules; None when either side is unmeasured."""

    @classmethod
    def from_reading(cls, reading: EnergyReading | None, idle: IdleBaseline | None) -> Energy:
        """Energy from a meter reading, with the net figure computed against the idle baseline."""
        from pytest_longeff.energy import net_energy_j

        return cls(reading, net_energy_j(reading, idle) if reading is not None else None)

    @property
    def joules(self) -> float | None:
        """Gross energy in joules when the reading is a valid measurement or estimate, else None."""
        return self.reading.energy_j if self.reading is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The energy fields of a record (a placeholder set when there was no meter)."""
        if self.reading is None:
            return {"energy_j": None, "energy_method": "none", "energy_valid": False,
                    "energy_note": "no energy meter", "energy_net_j": None}
        fields = dict(self.reading.to_dict())
        fields.pop("time_s", None)  # the window's own time_s stands beside it
        fields["energy_net_j"] = self.net_j
        return fields


@dataclass(frozen=True)
class Efficiency:
    """Work per energy, derived from a window's energy and the work done in it; None where energy is unmeasured
    (never a made-up figure)."""

    samples_per_kj: float | None
    """Samples processed per kilojoule."""
    tokens_per_j: float | None
    """Tokens processed (training: input tokens; inference: generated tokens) per joule."""
    j_per_sample: float | None
    """Joules per sample."""

    @classmethod
    def from_energy(cls, energy_j: float | None, samples: int, tokens: int) -> Efficiency:
        """Efficiency figures from the energy spent, or all None when energy is unknown or not positive."""
        if energy_j is None or energy_j <= 0:
            return cls(None, None, None)
        return cls(samples / (energy_j / 1000), tokens / energy_j, energy_j / samples if samples else None)


def rate(amount: float, seconds: float) -> float | None:
    """``amount`` per second, or None for an empty window."""
    return amount / seconds if seconds > 0 else None


# -- sections -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """Which cell, under which profile, on which device."""

    id: str
    family: str
    size: str
    seq_len: int
    task: str
    profile: str
    device: str


@dataclass(frozen=True)
class ModelFacts:
    """The model as built for the cell and the settings it was trained under."""

    params: int
    """Number of parameters."""
    label: str
    config: dict[str, Any]
    built_now: bool
    build_s: float | None
    """Seconds the build took, when this cell built the model (outside every measured window)."""
    memory_budget_bytes: int
    train_budget: dict[str, Any]
    optimizer: dict[str, Any]
    validation_examples: int
    accuracy_meaning: str = ""
    """What the cell's score means, in words (the profile's, and the tiny profile's weights)."""
    accuracy_meaningful: bool | None = None
    """Whether the score ranks models (pretrained weights); None leaves it to the profile (see findings)."""

    def to_dict(self) -> dict[str, Any]:
        """The model facts as record fields."""
        out = {"params": self.params, "model": self.label, "model_config": self.config,
               "model_build": {"built_now": self.built_now, "build_s": self.build_s},
               "memory_budget_bytes": self.memory_budget_bytes, "train_budget": self.train_budget,
               "optimizer": self.optimizer, "validation_examples": self.validation_examples,
               "accuracy_meaning": self.accuracy_meaning}
        if self.accuracy_meaningful is not None:
            out["accuracy_meaningful"] = self.accuracy_meaningful
        return out


@dataclass(frozen=True)
class BatchChoice:
    """The training batch and how it was chosen: ``fixed`` by option, ``cached`` from an earlier search, or
    ``searched`` under the memory budget."""

    batch_size: int
    source: str
    probes: int
    peak_memory_bytes: int | None
    """The probe's peak memory at the chosen batch, in bytes (None when fixed)."""
    details: dict[str, Any] = field(default_factory=dict)
    """The search's probe log and start, or the cached search's probe count."""
    accumulation: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The batch choice as record fields (batch size, search details, accumulation)."""
        search = {"source": self.source, **self.details, "probes": self.probes,
                  "peak_memory_bytes": self.peak_memory_bytes}
        if self.source == "searched":
            search["batch_size"] = self.batch_size
        return {"batch_size": self.batch_size, "batch_search": search,
                "gradient_accumulation": self.accumulation, "effective_batch": self.batch_size * self.accumulation}


@dataclass(frozen=True)
class TrainWindow:
    """The fine-tuning window: time, throughput, memory, energy and FLOPs."""

    steps: int
    samples: int
    time_s: float
    """Window length in seconds (device-synchronised edges)."""
    eval_time_s: float
    """Seconds of early-stopping evaluation inside the window (left out of throughput)."""
    throughput: Summary | None
    """Per-step samples/s after the warm-up steps."""
    warmup_steps_excluded: int
    input_tokens_per_step: int
    losses: list[float]
    evaluations: list[dict[str, float]]
    best_step: int | None
    peak_memory_bytes: int | None
    """Peak memory of the window in bytes, weights included."""
    memory_method: str
    within_memory_budget: bool | None
    stopped_by: str
    energy: Energy
    flops_per_step: int
    flops_method: str
    median_step_s: float | None
    decoder_positions: int | None = None
    """Decoder positions of every training step (the labels' padded width)."""
    label_padding: str | None = None
    """How labels were padded: ``study`` (to the task's target length, as the study did) or ``longest``."""
    peak_reserved_bytes: int | None = None
    """CUDA only: the allocator's peak reserved bytes (what the memory budget's fraction caps)."""
    epochs: float | None = None
    """Passes over the training rows: samples trained / training rows."""

    @property
    def samples_per_s(self) -> float | None:
        """Training samples per second, evaluation time excluded; None for an empty window."""
        return rate(self.samples, self.time_s - self.eval_time_s)

    def to_dict(self) -> dict[str, Any]:
        """The training window as record fields, efficiency figures included."""
        eff = Efficiency.from_energy(self.energy.joules, self.samples, self.input_tokens_per_step * self.steps)
        return {
            "steps": self.steps, "samples": self.samples, "time_s": self.time_s, "eval_time_s": self.eval_time_s,
            "samples_per_s": self.samples_per_s,
            "samples_per_s_note": "samples / (window time - early-stopping evaluation time); energy covers the "
                                  "whole window" if self.eval_time_s else "samples / window time",
            "samples_per_s_stats": _stats(self.throughput),
            "warmup_steps_excluded": self.warmup_steps_excluded,
            "input_tokens_per_step": self.input_tokens_per_step,
            "loss_first": self.losses[0] if self.losses else None,
            "loss_last": self.losses[-1] if self.losses else None,
            "evaluations": self.evaluations, "best_step": self.best_step,
            "peak_memory_bytes": self.peak_memory_bytes, "memory_method": self.memory_method,
            "within_memory_budget": self.within_memory_budget, "stopped_by": self.stopped_by,
            **self.energy.to_dict(),
            "flops_per_step": self.flops_per_step, "flops_method": self.flops_method,
            "achieved_flop_per_s": rate(self.flops_per_step, self.median_step_s or 0.0),
            "samples_per_kj": eff.samples_per_kj, "tokens_per_j": eff.tokens_per_j,
            "decoder_positions": self.decoder_positions, "label_padding": self.label_padding,
            "peak_reserved_bytes": self.peak_reserved_bytes, "epochs": self.epochs,
        }


LATENCY_NOTE = "per-sample latency: each batch's generate() wall time / its size"
NEW_TOKENS_FIXED = ("timed: exactly max_new_tokens new tokens per row (end token suppressed until then); scored: a "
                    "separate untimed generation that stops at the end token")


@dataclass(frozen=True)
class InferenceWindow:
    """The inference window: greedy generation of ``max_new_tokens`` new tokens per row (a fixed count: the end
    token is suppressed until then) over the validation examples, ``passes`` times. The scored predictions come
    from a separate generation that stops at the end token (``scored_generated_tokens`` new tokens in all)."""

    samples: int
    passes: int
    time_s: float
    """Window length in seconds (device-synchronised edges; decoding happens after it)."""
    throughput: Summary | None
    """Per-batch samples/s."""
    latency: Summary | None
    """Per-sample latency in seconds: each batch's wall time / its size."""
    latency_p50_s: float | None
    latency_p90_s: float | None
    generated_tokens: int
    max_new_tokens: int
    peak_memory_bytes: int | None
    memory_method: str
    energy: Energy
    scored_generated_tokens: int | None = None
    """New tokens of the untimed generation whose predictions are scored (None: the timed one was scored)."""
    generation_config: dict[str, Any] | None = None
    """The generation settings both generations ran with: plain greedy, the checkpoint's token ids only."""
    peak_reserved_bytes: int | None = None
    """CUDA only: the allocator's peak reserved bytes (what the memory budget's fraction caps)."""

    def to_dict(self) -> dict[str, Any]:
        """The inference window as record fields, latency and efficiency figures included."""
        eff = Efficiency.from_energy(self.energy.joules, self.samples, self.generated_tokens)
        return {
            "samples": self.samples, "passes": self.passes, "time_s": self.time_s,
            "samples_per_s": rate(self.samples, self.time_s),
            "samples_per_s_stats": _stats(self.throughput),
            "latency_s": {"p50": self.latency_p50_s, "p90": self.latency_p90_s, "stats": _stats(self.latency),
                          "note": LATENCY_NOTE},
            "generated_tokens": self.generated_tokens,
            "generated_tokens_per_s": rate(self.generated_tokens, self.time_s) if self.generated_tokens else None,
            "max_new_tokens": self.max_new_tokens,
            **({"new_tokens": NEW_TOKENS_FIXED, "scored_generated_tokens": self.scored_generated_tokens}
               if self.scored_generated_tokens is not None else {}),
            "peak_memory_bytes": self.peak_memory_bytes, "memory_method": self.memory_method,
            **self.energy.to_dict(),
            "j_per_sample": eff.j_per_sample, "samples_per_kj": eff.samples_per_kj, "tokens_per_j": eff.tokens_per_j,
            "generation_config": self.generation_config, "peak_reserved_bytes": self.peak_reserved_bytes,
        }


@dataclass(frozen=True)
class Accuracy:
    """SCROLLS scores x100 (``score`` is the task's official one) and how they were obtained."""

    scores: dict[str, float]
    method: str
    teacher_forced: dict[str, float] | None = None
    examples: dict[str, dict[str, float]] | None = None
    """Per validation example: the metric's components x100, best over its references (what ``scores`` averages;
    the findings' paired permutation test swaps them)."""

    def to_dict(self) -> dict[str, Any]:
        """The accuracy scores as record fields (teacher-forced scores too, when measured)."""
        out: dict[str, Any] = {"accuracy": self.scores, "accuracy_method": self.method}
        if self.examples is not None:
            out["accuracy_examples"] = self.examples
        if self.teacher_forced is not None:
            from pytest_longeff.tasks.study import METHOD

            out["accuracy_teacher_forced"] = self.teacher_forced
            out["accuracy_teacher_forced_method"] = METHOD
        return out


@dataclass
class CellRecord:
    """One cell's record: sections are filled in as each phase finishes, so a failure keeps what was measured."""

    identity: Identity
    status: str | None = None
    reason: str | None = None
    model: ModelFacts | None = None
    batch: BatchChoice | None = None
    train: TrainWindow | None = None
    attention: str | None = None
    inference: InferenceWindow | None = None
    accuracy: Accuracy | None = None
    predictions: dict[str, str] | None = None
    gate: dict[str, Any] | None = None
    cell_wall_s: float | None = None
    reference: CellReference | None = None
    """The machine-speed reference around the cell (``--longeff-speed-reference``), for the gate's drift
    correction."""
    work: dict[str, Any] | None = None
    """Work counters of a training step and of a generated token (:mod:`pytest_longeff.measure.work`), counted
    outside the windows: ``{"train": ..., "inference": ...}``."""
    phases: dict[str, Any] | None = None
    """Prefill and decode measured apart, the KV cache per token, and the check that the halves add up to the
    generation (:mod:`pytest_longeff.cell.phases`)."""
    remeasured: dict[str, Any] | None = None
    """With more than one measurement of the cell (:mod:`pytest_longeff.gate.remeasure`): how many, which one this
    record holds, and the others."""

    @property
    def id(self) -> str:
        """The cell's id."""
        return self.identity.id

    def finish(self, status: str, reason: str | None, gate: dict[str, Any] | None) -> None:
        """Set how the cell's test ended (``passed``, ``failed``, ``skipped`` or ``error``, and why) and the gate
        section of its one judgement (None when no gate judged it): the last thing set before :meth:`to_dict`."""
        self.status, self.reason, self.gate = status, reason, gate

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON report, CSV, JUnit and the gate read it. The predictions are not part of it: they
        travel beside the record (:attr:`predictions`) and the report writer puts them in their own file."""
        i = self.identity
        out: dict[str, Any] = {"id": i.id, "family": i.family, "size": i.size, "seq_len": i.seq_len, "task": i.task,
                               "profile": i.profile, "device": i.device, "status": self.status,
                               "reason": self.reason}
        if self.model is not None:
            out.update(self.model.to_dict())
        if self.batch is not None:
            out.update(self.batch.to_dict())
        if self.train is not None:
            out["train"] = self.train.to_dict()
        if self.attention is not None:
            out["attention"] = self.attention
        if self.inference is not None:
            out["inference"] = self.inference.to_dict()
        if self.accuracy is not None:
            out.update(self.accuracy.to_dict())
        if self.gate is not None:
            out["gate"] = self.gate
        if self.cell_wall_s is not None:
            out["cell_wall_s"] = self.cell_wall_s
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        if self.work is not None:
            out["work"] = self.work
        if self.phases is not None:
            out["phases"] = self.phases
        if self.remeasured:
            out["remeasured"] = self.remeasured
        return out

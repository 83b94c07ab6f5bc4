"""Training budgets: how long a cell fine-tunes, parsed from ``--longeff-train-budget`` and tracked while it runs.

A budget has exactly one kind (steps, samples, epochs with optional early stopping, wall time or energy) and an
optional hard ``max_steps`` cap that applies whatever the kind. ``parse_train_budget`` reads the user's text into a
frozen ``TrainBudget``; ``BudgetTracker`` follows one run and says when and why it must stop.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from pytest_longeff.units import parse_duration, parse_energy

__all__ = [
    "ACCEPTED_FORMS",
    "DEFAULT_EVAL_EVERY",
    "KINDS",
    "BudgetTracker",
    "TrainBudget",
    "parse_train_budget",
    "planned_steps",
    "requires_energy_meter",
]

KINDS: tuple[str, ...] = ("steps", "samples", "epochs", "time", "energy")

# The seed study evaluated every 500 optimizer steps and stopped after 3 evaluations without gain.
DEFAULT_EVAL_EVERY = 500

ACCEPTED_FORMS = (
    "steps=N, samples=N, epochs=N[,patience=K][,eval_every=M], time=DURATION (e.g. 60s, 2m), "
    "energy=AMOUNT (e.g. 20kJ); any of them optionally followed by ,max_steps=N"
)

_INTEGER_KEYS: tuple[str, ...] = ("steps", "samples", "epochs", "patience", "eval_every", "max_steps")
_KEYS: frozenset[str] = frozenset(_INTEGER_KEYS) | {"time", "energy"}
_WHOLE = re.compile(r"^\d+$")


@dataclass(frozen=True)
class TrainBudget:
    """How much fine-tuning one cell gets. Build it with ``parse_train_budget`` or directly.

    Only the fields of ``kind`` (and ``max_steps``) are set; the others stay ``None``. ``spec`` is the canonical
    text of the budget (filled in when left empty), stable enough to compare runs by.
    """

    kind: str
    """One of ``steps``, ``samples``, ``epochs``, ``time``, ``energy``."""
    steps: int | None = None
    """Optimizer steps to run (kind ``steps``)."""
    samples: int | None = None
    """Training samples to consume, counted across steps (kind ``samples``)."""
    epochs: int | None = None
    """Passes over the training split (kind ``epochs``)."""
    patience: int | None = None
    """Stop after this many evaluations in a row without a new best score (kind ``epochs`` only)."""
    eval_every: int | None = None
    """Optimizer steps between evaluations (kind ``epochs``; defaults to 500 like the seed study)."""
    time_s: float | None = None
    """Wall-clock seconds of training (kind ``time``)."""
    energy_j: float | None = None
    """Joules of training energy as read by the session's meter (kind ``energy``)."""
    max_steps: int | None = None
    """Hard cap on optimizer steps, combined with any kind."""
    spec: str = ""
    """Canonical text, e.g. ``"steps=20"`` or ``"epochs=50,patience=3,eval_every=500"``."""

    def __post_init__(self) -> None:
        problem = _problem(dataclasses.asdict(self))
        if problem is not None:
            raise ValueError(f"invalid training budget: {problem}; accepted forms: {ACCEPTED_FORMS}")
        # Frozen dataclass: normalising fields has to go through object.__setattr__.
        if self.kind == "epochs" and self.eval_every is None:
            object.__setattr__(self, "eval_every", DEFAULT_EVAL_EVERY)
        if not self.spec:
            object.__setattr__(self, "spec", _canonical(self))

    def to_dict(self) -> dict[str, object]:
        """Every field by name, for the JSON report's settings."""
        return dataclasses.asdict(self)


def _problem(fields: Mapping[str, object]) -> str | None:
    """What is wrong with a budget made of ``fields`` (absent keys read as ``None``), or ``None``.

    Shared by the dataclass and the parser so that both refuse the same budgets with the same words.
    """
    kind = fields.get("kind")
    if kind not in KINDS:
        return f"unknown kind {kind!r}"
    for key in _INTEGER_KEYS:
        value = fields.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"{key} must be a whole number >= 1, got {value!r}"
    for key in ("time_s", "energy_j"):
        value = fields.get(key)
        if value is not None and not (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
        ):
            return f"{key} must be a finite number > 0, got {value!r}"
    own = {"steps": "steps", "samples": "samples", "epochs": "epochs", "time": "time_s", "energy": "energy_j"}
    if fields.get(own[str(kind)]) is None:
        return f"a {kind} budget needs {own[str(kind)]}"
    extra = [field for other, field in own.items() if other != kind and fields.get(field) is not None]
    if kind != "epochs":
        extra += [key for key in ("patience", "eval_every") if fields.get(key) is not None]
    if extra:
        return f"a {kind} budget cannot also set {', '.join(extra)} (patience and eval_every go with epochs)"
    return None


def _number(value: float) -> str:
    """Shortest plain decimal text of ``value``: 120.0 -> "120", 0.5 -> "0.5", never "1e+06"."""
    return format(Decimal(repr(float(value))).normalize(), "f")


def _canonical(budget: TrainBudget) -> str:
    parts: list[str] = []
    if budget.kind == "time":
        assert budget.time_s is not None
        parts.append(f"time={_number(budget.time_s)}s")
    elif budget.kind == "energy":
        assert budget.energy_j is not None
        parts.append(f"energy={_number(budget.energy_j)}J")
    else:
        parts.append(f"{budget.kind}={getattr(budget, budget.kind)}")
    parts += [
        f"{key}={getattr(budget, key)}"
        for key in ("patience", "eval_every", "max_steps")
        if getattr(budget, key) is not None
    ]
    return ",".join(parts)


def parse_train_budget(text: str) -> TrainBudget:
    """The budget described by ``text``, e.g. ``"steps=20"``, ``"epochs=50,patience=3"``, ``"time=2m"``.

    Raises ``ValueError`` naming the offending part and listing the accepted forms.
    """

    def fail(problem: str) -> ValueError:
        return ValueError(f"bad training budget {text!r}: {problem}; accepted forms: {ACCEPTED_FORMS}")

    if not text.strip():
        raise fail("it is empty")
    values: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = (piece.strip() for piece in part.partition("="))
        key = key.lower()
        if not sep or not key or not value:
            raise fail(f"{part.strip()!r} is not key=value")
        if key not in _KEYS:
            raise fail(f"unknown key {key!r}")
        if key in values:
            raise fail(f"{key!r} is given twice")
        values[key] = value
    kinds = [key for key in values if key in KINDS]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        raise fail(f"it needs exactly one of {', '.join(KINDS)} (found {found})")

    fields: dict[str, object] = {"kind": kinds[0]}
    for key, value in values.items():
        if key in ("time", "energy"):
            parse = parse_duration if key == "time" else parse_energy
            try:
                amount = parse(value)
            except ValueError as exc:
                raise fail(f"{key}: {exc}") from None
            if amount <= 0:
                raise fail(f"{key} must be more than zero, got {value!r}")
            fields["time_s" if key == "time" else "energy_j"] = amount
        elif not _WHOLE.match(value) or int(value) < 1:
            raise fail(f"{key} must be a whole number >= 1, got {value!r}")
        else:
            fields[key] = int(value)
    # What is left are cross-field problems (patience without epochs); checked here so the message carries the
    # user's text rather than the dataclass's.
    problem = _problem(fields)
    if problem is not None:
        raise fail(problem)
    return TrainBudget(**fields)  # type: ignore[arg-type]


def requires_energy_meter(budget: TrainBudget) -> bool:
    """Whether ``budget`` can only be honoured with a working energy meter (callers refuse the cell otherwise)."""
    return budget.kind == "energy"


def planned_steps(budget: TrainBudget, *, steps_per_epoch: int, batch_size: int) -> int | None:
    """Optimizer steps the run will take if known in advance (for the learning-rate schedule), else ``None``.

    ``None`` for time and energy budgets without ``max_steps``: their length is only known when they end.
    """
    if steps_per_epoch < 1 or batch_size < 1:
        raise ValueError(f"steps_per_epoch and batch_size must be >= 1, got {steps_per_epoch}, {batch_size}")
    planned: int | None = None
    if budget.kind == "steps":
        planned = budget.steps
    elif budget.kind == "samples" and budget.samples is not None:
        planned = -(-budget.samples // batch_size)
    elif budget.kind == "epochs" and budget.epochs is not None:
        planned = budget.epochs * steps_per_epoch
    if budget.max_steps is not None:
        planned = budget.max_steps if planned is None else min(planned, budget.max_steps)
    return planned


class BudgetTracker:
    """Progress of one fine-tuning run against its budget; the training loop asks it when to evaluate and stop.

    The loop calls ``update`` after every optimizer step with cumulative totals, ``record_eval`` after every
    evaluation it ran because ``wants_eval`` said so, and stops when ``should_stop`` returns a reason.
    """

    def __init__(self, budget: TrainBudget, steps_per_epoch: int) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.budget = budget
        self.steps_per_epoch = steps_per_epoch
        self.step = 0
        """Optimizer steps done so far."""
        self.samples = 0
        """Training samples consumed so far."""
        self.elapsed_s = 0.0
        """Training wall-clock seconds so far."""
        self.energy_j: float | None = None
        """Training energy in joules so far, ``None`` without a meter."""
        self.best_score: float | None = None
        """Best evaluation score so far (higher is better)."""
        self.evals = 0
        """Evaluations recorded."""
        self.evals_since_best = 0
        """Evaluations in a row that did not beat ``best_score``."""

    def update(self, step_done: int, samples_done: int, elapsed_s: float, energy_j: float | None) -> None:
        """Record cumulative progress: steps, samples, seconds and joules since training began."""
        if step_done < 0 or samples_done < 0 or elapsed_s < 0 or (energy_j is not None and energy_j < 0):
            raise ValueError(
                f"progress cannot be negative: step={step_done}, samples={samples_done}, "
                f"elapsed_s={elapsed_s}, energy_j={energy_j}"
            )
        if energy_j is None and requires_energy_meter(self.budget):
            # Without a reading an energy budget would never end; callers must refuse such cells up front.
            raise ValueError(
                f"training budget {self.budget.spec!r} needs energy readings but got none; "
                "check requires_energy_meter() before training"
            )
        self.step, self.samples, self.elapsed_s, self.energy_j = step_done, samples_done, elapsed_s, energy_j

    def wants_eval(self, step: int) -> bool:
        """Whether the loop should evaluate after optimizer step ``step`` (every ``eval_every`` steps)."""
        every = self.budget.eval_every
        return every is not None and step > 0 and step % every == 0

    def record_eval(self, score: float) -> bool:
        """Record one evaluation's score (higher is better); ``True`` if it is the new best.

        A NaN score never counts as a gain, so a diverged run runs out of patience instead of looping.
        """
        self.evals += 1
        if not math.isnan(score) and (self.best_score is None or score > self.best_score):
            self.best_score = score
            self.evals_since_best = 0
            return True
        self.evals_since_best += 1
        return False

    def should_stop(self) -> str | None:
        """Why training must stop now (``steps``, ``samples``, ``epochs``, ``patience``, ``time``, ``energy``,
        ``max_steps``), or ``None`` to go on. The budget's own limit is named before the ``max_steps`` cap.
        """
        budget = self.budget
        if budget.kind == "steps" and budget.steps is not None and self.step >= budget.steps:
            return "steps"
        if budget.kind == "samples" and budget.samples is not None and self.samples >= budget.samples:
            return "samples"
        if budget.kind == "epochs" and budget.epochs is not None:
            if self.step >= budget.epochs * self.steps_per_epoch:
                return "epochs"
            if budget.patience is not None and self.evals_since_best >= budget.patience:
                return "patience"
        if budget.kind == "time" and budget.time_s is not None and self.elapsed_s >= budget.time_s:
            return "time"
        if (
            budget.kind == "energy"
            and budget.energy_j is not None
            and self.energy_j is not None
            and self.energy_j >= budget.energy_j
        ):
            return "energy"
        if budget.max_steps is not None and self.step >= budget.max_steps:
            return "max_steps"
        return None

"""Tests of pytest_longeff.cell.budget: parsing training budgets and tracking a run against one."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_longeff.cell.budget import (
    DEFAULT_EVAL_EVERY,
    BudgetTracker,
    TrainBudget,
    parse_train_budget,
    planned_steps,
    requires_energy_meter,
)


@pytest.mark.parametrize(
    ("text", "fields", "spec"),
    [
        ("steps=20", {"kind": "steps", "steps": 20}, "steps=20"),
        ("samples=160", {"kind": "samples", "samples": 160}, "samples=160"),
        (
            "epochs=50,patience=3",
            {"kind": "epochs", "epochs": 50, "patience": 3, "eval_every": DEFAULT_EVAL_EVERY},
            "epochs=50,patience=3,eval_every=500",
        ),
        (
            "epochs=2,patience=1,eval_every=10",
            {"kind": "epochs", "epochs": 2, "patience": 1, "eval_every": 10},
            "epochs=2,patience=1,eval_every=10",
        ),
        (
            "epochs=3",
            {"kind": "epochs", "epochs": 3, "eval_every": DEFAULT_EVAL_EVERY},
            "epochs=3,eval_every=500",
        ),
        ("time=60s", {"kind": "time", "time_s": 60.0}, "time=60s"),
        ("time=2m", {"kind": "time", "time_s": 120.0}, "time=120s"),
        ("time=90", {"kind": "time", "time_s": 90.0}, "time=90s"),
        ("energy=20kJ", {"kind": "energy", "energy_j": 20_000.0}, "energy=20000J"),
        ("energy=0.5kWh", {"kind": "energy", "energy_j": 1_800_000.0}, "energy=1800000J"),
        ("steps=20,max_steps=5", {"kind": "steps", "steps": 20, "max_steps": 5}, "steps=20,max_steps=5"),
        (
            "time=1.5h,max_steps=100",
            {"kind": "time", "time_s": 5400.0, "max_steps": 100},
            "time=5400s,max_steps=100",
        ),
        (" Max_Steps = 7 , STEPS=3 ", {"kind": "steps", "steps": 3, "max_steps": 7}, "steps=3,max_steps=7"),
    ],
)
def test_parse_valid_budgets(text: str, fields: dict[str, object], spec: str) -> None:
    budget = parse_train_budget(text)
    assert budget == TrainBudget(**fields, spec=spec)  # type: ignore[arg-type]
    assert budget.spec == spec
    # The canonical text reads back to the same budget.
    assert parse_train_budget(spec) == budget


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "empty"),
        ("steps", "'steps' is not key=value"),
        ("steps=", "'steps=' is not key=value"),
        ("steps=0", "steps must be a whole number >= 1, got '0'"),
        ("steps=-3", "steps must be a whole number >= 1"),
        ("steps=2.5", "steps must be a whole number >= 1"),
        ("steps=abc", "got 'abc'"),
        ("foo=1", "unknown key 'foo'"),
        ("steps=1,steps=2", "'steps' is given twice"),
        ("steps=1,time=60s", "exactly one of steps, samples, epochs, time, energy (found steps, time)"),
        ("max_steps=5", "exactly one of"),
        ("steps=5,patience=2", "cannot also set patience"),
        ("time=60s,eval_every=3", "cannot also set eval_every"),
        ("time=abc", "time: expected a duration like 60s"),
        ("time=0s", "time must be more than zero"),
        ("energy=20", "energy: expected an energy like 20kJ"),
        ("energy=0J", "energy must be more than zero"),
        ("epochs=5,patience=0", "patience must be a whole number >= 1"),
    ],
)
def test_parse_errors_name_the_bad_part_and_list_the_accepted_forms(text: str, names: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_train_budget(text)
    message = str(caught.value)
    assert names in message
    assert repr(text) in message
    assert (
        "accepted forms: steps=N, samples=N, epochs=N[,patience=K][,eval_every=M], time=DURATION" in message
    )
    assert "energy=AMOUNT" in message and "max_steps=N" in message


def test_direct_construction_is_validated_and_gets_its_spec() -> None:
    assert TrainBudget("steps", steps=20).spec == "steps=20"
    with pytest.raises(ValueError, match="a steps budget needs steps"):
        TrainBudget("steps")
    with pytest.raises(ValueError, match="unknown kind 'fortnights'"):
        TrainBudget("fortnights")
    with pytest.raises(ValueError, match="time_s must be a finite number > 0"):
        TrainBudget("time", time_s=math.inf)


def test_to_dict_has_every_field() -> None:
    budget = parse_train_budget("epochs=50,patience=3")
    assert budget.to_dict() == {
        "kind": "epochs",
        "steps": None,
        "samples": None,
        "epochs": 50,
        "patience": 3,
        "eval_every": 500,
        "time_s": None,
        "energy_j": None,
        "max_steps": None,
        "spec": "epochs=50,patience=3,eval_every=500",
    }


@given(
    kind=st.sampled_from(["steps", "samples", "epochs", "time", "energy"]),
    amount=st.integers(1, 10**6),
    max_steps=st.none() | st.integers(1, 10**6),
)
def test_spec_round_trips(kind: str, amount: int, max_steps: int | None) -> None:
    text = {"time": f"time={amount}s", "energy": f"energy={amount}J"}.get(kind, f"{kind}={amount}")
    if max_steps is not None:
        text += f",max_steps={max_steps}"
    budget = parse_train_budget(text)
    assert parse_train_budget(budget.spec) == budget


def test_requires_energy_meter() -> None:
    assert requires_energy_meter(parse_train_budget("energy=20kJ"))
    assert not requires_energy_meter(parse_train_budget("time=60s"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps=20", 20),
        ("steps=20,max_steps=5", 5),
        ("samples=100", 13),  # ceil(100 / 8)
        ("epochs=3", 30),
        ("epochs=3,max_steps=7", 7),
        ("time=60s", None),
        ("time=60s,max_steps=9", 9),
        ("energy=1kJ", None),
    ],
)
def test_planned_steps(text: str, expected: int | None) -> None:
    assert planned_steps(parse_train_budget(text), steps_per_epoch=10, batch_size=8) == expected


def run(
    tracker: BudgetTracker, steps: int, *, batch: int = 4, step_s: float = 1.0, step_j: float | None = 10.0
) -> str | None:
    """Drive ``tracker`` like a training loop for up to ``steps`` steps; the stop reason, if any."""
    for step in range(1, steps + 1):
        energy = None if step_j is None else step * step_j
        tracker.update(step, step * batch, step * step_s, energy)
        reason = tracker.should_stop()
        if reason is not None:
            return reason
    return None


@pytest.mark.parametrize(
    ("text", "reason", "stopped_at"),
    [
        ("steps=20", "steps", 20),
        ("samples=30", "samples", 8),  # 4 samples a step: 32 >= 30 after step 8
        ("epochs=2", "epochs", 20),  # 10 steps an epoch
        ("time=5s", "time", 5),
        ("energy=55J", "energy", 6),
        ("steps=20,max_steps=7", "max_steps", 7),
        ("time=1h,max_steps=3", "max_steps", 3),
    ],
)
def test_tracker_stops_for_each_kind(text: str, reason: str, stopped_at: int) -> None:
    tracker = BudgetTracker(parse_train_budget(text), steps_per_epoch=10)
    assert tracker.should_stop() is None
    assert run(tracker, 1000) == reason
    assert tracker.step == stopped_at


def test_own_limit_is_named_before_max_steps_when_both_are_reached() -> None:
    tracker = BudgetTracker(parse_train_budget("steps=5,max_steps=5"), steps_per_epoch=10)
    assert run(tracker, 100) == "steps"


def test_patience_stops_after_k_evaluations_without_gain_and_tracks_the_best() -> None:
    tracker = BudgetTracker(parse_train_budget("epochs=100,patience=3,eval_every=10"), steps_per_epoch=50)
    scores = iter([1.0, 2.0, 1.5, 2.5, 2.5, 2.4, math.nan])
    news = []
    reason = None
    for step in range(1, 1000):
        tracker.update(step, step * 4, float(step), None)
        if tracker.wants_eval(step):
            news.append(tracker.record_eval(next(scores)))
        reason = tracker.should_stop()
        if reason:
            break
    assert reason == "patience"
    # Best at 2.5 (the 4th eval); 2.5 again is no gain, nor 2.4, nor NaN: three in a row.
    assert news == [True, True, False, True, False, False, False]
    assert tracker.best_score == 2.5
    assert tracker.evals == 7 and tracker.evals_since_best == 3
    assert tracker.step == 70


def test_a_new_best_resets_patience() -> None:
    tracker = BudgetTracker(parse_train_budget("epochs=100,patience=2"), steps_per_epoch=10)
    for score in (1.0, 0.5, 2.0, 1.9):
        tracker.record_eval(score)
        assert tracker.should_stop() is None
    tracker.record_eval(1.8)
    assert tracker.should_stop() == "patience"


def test_wants_eval_every_m_steps_only_for_epoch_budgets() -> None:
    epochs = BudgetTracker(parse_train_budget("epochs=1,eval_every=3"), steps_per_epoch=10)
    assert [step for step in range(10) if epochs.wants_eval(step)] == [3, 6, 9]
    default = BudgetTracker(parse_train_budget("epochs=1"), steps_per_epoch=10)
    assert [step for step in range(1001) if default.wants_eval(step)] == [500, 1000]
    steps = BudgetTracker(parse_train_budget("steps=100"), steps_per_epoch=10)
    assert not any(steps.wants_eval(step) for step in range(200))


def test_energy_budget_without_readings_is_refused() -> None:
    tracker = BudgetTracker(parse_train_budget("energy=1kJ"), steps_per_epoch=10)
    with pytest.raises(ValueError, match="requires_energy_meter"):
        tracker.update(1, 4, 1.0, None)


def test_tracker_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="steps_per_epoch"):
        BudgetTracker(parse_train_budget("steps=1"), steps_per_epoch=0)
    tracker = BudgetTracker(parse_train_budget("steps=1"), steps_per_epoch=1)
    with pytest.raises(ValueError, match="negative"):
        tracker.update(-1, 0, 0.0, None)


# --- mutation-testing additions (see docs/validation/mutation.md)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "steps", "steps": 0}, "steps must be a whole number >= 1, got 0"),
        ({"kind": "steps", "steps": 2.5}, "steps must be a whole number >= 1, got 2.5"),
        ({"kind": "steps", "steps": True}, "steps must be a whole number >= 1, got True"),
        ({"kind": "epochs", "epochs": 2, "eval_every": 0}, "eval_every must be a whole number >= 1, got 0"),
        ({"kind": "energy", "energy_j": -1.0}, "energy_j must be a finite number > 0, got -1.0"),
        ({"kind": "time", "time_s": 0.0}, "time_s must be a finite number > 0, got 0.0"),
        ({"kind": "steps", "steps": 1, "samples": 2}, "a steps budget cannot also set samples (patience"),
        (
            {"kind": "steps", "steps": 1, "samples": 2, "patience": 3},
            "a steps budget cannot also set samples, patience (patience and eval_every go with epochs)",
        ),
    ],
)
def test_direct_construction_refuses_bad_fields_with_exact_words(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        TrainBudget(**fields)  # type: ignore[arg-type]
    assert str(caught.value).startswith(f"invalid training budget: {problem}")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty"),
        ("steps=1=2", "steps must be a whole number >= 1, got '1=2'"),
        ("=5", "'=5' is not key=value"),
        ("max_steps=5", "it needs exactly one of steps, samples, epochs, time, energy (found none)"),
    ],
)
def test_parse_error_messages_are_exact(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_train_budget(text)
    assert str(caught.value).startswith(f"bad training budget {text!r}: {problem}; accepted forms: ")


def test_planned_steps_validates_its_arguments() -> None:
    budget = parse_train_budget("samples=10")
    assert planned_steps(budget, steps_per_epoch=1, batch_size=1) == 10
    for steps_per_epoch, batch_size in ((0, 1), (1, 0)):
        with pytest.raises(ValueError) as caught:
            planned_steps(budget, steps_per_epoch=steps_per_epoch, batch_size=batch_size)
        assert str(caught.value) == (
            f"steps_per_epoch and batch_size must be >= 1, got {steps_per_epoch}, {batch_size}"
        )


def test_max_steps_caps_only_when_smaller() -> None:
    assert planned_steps(parse_train_budget("steps=5,max_steps=20"), steps_per_epoch=10, batch_size=8) == 5


def test_a_new_tracker_starts_from_nothing() -> None:
    tracker = BudgetTracker(parse_train_budget("epochs=1,patience=1"), steps_per_epoch=10)
    assert (tracker.step, tracker.samples, tracker.elapsed_s, tracker.energy_j) == (0, 0, 0.0, None)
    assert (tracker.best_score, tracker.evals, tracker.evals_since_best) == (None, 0, 0)
    assert tracker.should_stop() is None


def test_zero_progress_is_accepted_and_each_negative_value_refused() -> None:
    tracker = BudgetTracker(parse_train_budget("energy=1kJ"), steps_per_epoch=10)
    tracker.update(0, 0, 0.0, 0.0)
    assert (tracker.step, tracker.samples, tracker.elapsed_s, tracker.energy_j) == (0, 0, 0.0, 0.0)
    tracker.update(1, 1, 0.5, 0.5)  # below one of anything is still progress
    for bad in ((-1, 0, 0.0, 0.0), (0, -1, 0.0, 0.0), (0, 0, -0.5, 0.0), (0, 0, 0.0, -0.5)):
        with pytest.raises(ValueError, match="progress cannot be negative"):
            tracker.update(*bad)


def test_missing_energy_reading_message_is_exact() -> None:
    tracker = BudgetTracker(parse_train_budget("energy=1kJ"), steps_per_epoch=10)
    with pytest.raises(ValueError) as caught:
        tracker.update(1, 4, 1.0, None)
    assert str(caught.value) == (
        "training budget 'energy=1000J' needs energy readings but got none; "
        "check requires_energy_meter() before training"
    )


def test_eval_every_one_evaluates_from_the_first_step() -> None:
    tracker = BudgetTracker(parse_train_budget("epochs=1,eval_every=1"), steps_per_epoch=10)
    assert [step for step in range(4) if tracker.wants_eval(step)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("text", "reason", "stopped_at"),
    [
        ("samples=32", "samples", 8),  # 4 samples a step: exactly 32 after step 8
        ("energy=60J", "energy", 6),  # 10 J a step: exactly 60 J after step 6
        ("time=4s", "time", 4),
    ],
)
def test_reaching_the_limit_exactly_stops(text: str, reason: str, stopped_at: int) -> None:
    tracker = BudgetTracker(parse_train_budget(text), steps_per_epoch=10)
    assert run(tracker, 1000) == reason
    assert tracker.step == stopped_at

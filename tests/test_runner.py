from __future__ import annotations

import torch

from pytest_longeff.budget import parse_train_budget, planned_steps
from pytest_longeff.models import LEDFamily, build_model
from pytest_longeff.runner import TokenizedSplit, _train_step, schedule_description


def _split(n: int = 2, length: int = 128, target: int = 5) -> TokenizedSplit:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 60, (n, length), generator=g)
    labels = torch.randint(4, 60, (n, target), generator=g)
    return TokenizedSplit([f"x{i}" for i in range(n)], ids, torch.ones_like(ids), labels, n * length)


def test_accumulated_micro_batches_give_the_full_batch_gradient() -> None:
    built = build_model(LEDFamily(), "base", "tiny", 64, 256, None, seed=0)
    model = built.model.eval()  # no dropout: both ways must see the same function
    split = _split()
    _train_step(built, split, [0, 1], "cpu", 1)
    full = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    _train_step(built, split, [0], "cpu", 2)
    _train_step(built, split, [1], "cpu", 2)
    accumulated = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, accumulated))


def test_open_ended_budgets_hold_the_rate_instead_of_decaying_over_a_guess() -> None:
    assert planned_steps(parse_train_budget("steps=20"), steps_per_epoch=10, batch_size=4) == 20
    assert planned_steps(parse_train_budget("samples=10"), steps_per_epoch=10, batch_size=4) == 3
    assert planned_steps(parse_train_budget("epochs=2,patience=1"), steps_per_epoch=10, batch_size=4) == 20
    assert planned_steps(parse_train_budget("time=60s"), steps_per_epoch=10, batch_size=4) is None
    assert planned_steps(parse_train_budget("time=60s,max_steps=50"), steps_per_epoch=10, batch_size=4) == 50
    assert schedule_description(parse_train_budget("energy=1kJ")).startswith("constant after")
    assert schedule_description(parse_train_budget("steps=4")).startswith("linear decay")

"""The training loop, checked against an independent bare PyTorch loop and against what training must do."""

from __future__ import annotations

import math
import random

import pytest
import torch

from pytest_longeff.cell.budget import parse_train_budget, planned_steps
from pytest_longeff.cell.precision import Precision
from pytest_longeff.cell.prepare import TokenizedSplit
from pytest_longeff.cell.train import (
    TrainPlan,
    fine_tune,
    make_optimizer,
    optimizer_settings,
    schedule_description,
    train_step,
)
from pytest_longeff.models.families import BuiltModel, LEDFamily, build_model


def _split(n: int = 4, length: int = 64, target: int = 5, seed: int = 0) -> TokenizedSplit:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 60, (n, length), generator=g)
    labels = torch.randint(4, 60, (n, target), generator=g)
    return TokenizedSplit([f"x{i}" for i in range(n)], ids, torch.ones_like(ids), labels, n * length)


def _tiny() -> BuiltModel:
    return build_model(LEDFamily(), "base", "tiny", 64, 256, None, seed=0)


def test_accumulated_micro_batches_give_the_full_batch_gradient() -> None:
    """Guards the unscaled-accumulation defect; and, since the gradients must exist and be non-zero, a training
    step without ``backward()`` fails here too (two empty gradient lists compare equal)."""
    built = _tiny()
    model = built.model.eval()
    split = _split(2)
    train_step(built, split, [0, 1], "cpu", 1)
    full = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    train_step(built, split, [0], "cpu", 2)
    train_step(built, split, [1], "cpu", 2)
    accumulated = [p.grad for p in model.parameters() if p.grad is not None]
    n_params = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(full) == len(accumulated) == n_params
    assert any(float(g.abs().sum()) > 0 for g in full)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, accumulated, strict=True))


def _bare_loop(built: BuiltModel, split: TokenizedSplit, steps: int, batch: int, lr: float, seed: int) -> list[float]:
    """An independent fine-tuning loop in plain PyTorch: AdamW with the study's settings (weight decay 0.001 except
    on LayerNorm parameters and biases, gradients clipped at norm 1.0) and a hand-written linear schedule with 10 %
    warm-up, rows shuffled per epoch by ``random.Random(seed)``."""
    model = built.model
    model.train()
    layer_norm = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    plain = [p for n, p in model.named_parameters() if id(p) not in layer_norm and "bias" not in n.split(".")[-1]]
    exempt = [p for n, p in model.named_parameters() if id(p) in layer_norm or "bias" in n.split(".")[-1]]
    opt = torch.optim.AdamW([{"params": plain, "weight_decay": 0.001}, {"params": exempt, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warm = -(-steps // 10)  # ceil(0.1 * steps)

    def factor(step: int) -> float:
        return step / warm if step < warm else max(0.0, (steps - step) / max(1, steps - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng, order, losses = random.Random(seed), [], []
    for _ in range(steps):
        if len(order) < batch:
            perm = list(range(len(split.ids)))
            rng.shuffle(perm)
            order += perm
        index, order = order[:batch], order[batch:]
        idx = torch.tensor(index)
        labels = split.labels[idx]
        out = model(input_ids=split.input_ids[idx], attention_mask=split.attention_mask[idx],
                    global_attention_mask=torch.zeros_like(split.input_ids[idx]).index_fill_(1, torch.tensor([0]), 1),
                    labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
    return losses


def test_fine_tune_matches_an_independent_bare_pytorch_loop() -> None:
    """Same model, data, seed and optimiser: the harness's losses and final weights equal a plain loop's. A step
    without backward, a missing optimiser or scheduler step, or a wrong schedule makes them differ."""
    split = _split(6)
    built = _tiny()
    plan = TrainPlan(batch_size=2, accumulation=1, budget=parse_train_budget("steps=5"), device="cpu", seed=3,
                     lr=1e-3)
    torch.manual_seed(11)  # the same dropout masks on both sides
    result = fine_tune(built, split, split, plan)
    harness = {k: v.clone() for k, v in built.model.state_dict().items()}
    built.reset()
    torch.manual_seed(11)
    bare = _bare_loop(built, split, steps=5, batch=2, lr=1e-3, seed=3)
    assert result.steps == 5 and result.samples == 10 and result.stopped_by == "steps"
    assert result.losses == pytest.approx(bare, rel=1e-5)
    for name, value in built.model.state_dict().items():
        assert torch.allclose(harness[name], value, atol=1e-6), name


def test_training_lowers_the_loss_on_a_batch_it_sees_repeatedly() -> None:
    built = _tiny()
    split = _split(2)
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    plan = TrainPlan(batch_size=2, accumulation=1, budget=parse_train_budget("steps=20"), device="cpu", seed=0,
                     lr=3e-3)
    result = fine_tune(built, split, split, plan)
    assert result.losses[-1] < 0.8 * result.losses[0]
    assert any(not torch.equal(before[k], v) for k, v in built.model.state_dict().items())


def test_early_stopping_keeps_the_best_weights() -> None:
    built = _tiny()
    split = _split(4)
    plan = TrainPlan(batch_size=2, accumulation=1, budget=parse_train_budget("epochs=3,patience=1,eval_every=1"),
                     device="cpu", seed=0, lr=1e-3)
    result = fine_tune(built, split, split, plan)
    assert result.evals and result.best_step is not None
    best = min(result.evals, key=lambda e: e["validation_loss"])
    assert result.best_step == best["step"]
    assert result.eval_time_s > 0


def test_open_ended_budgets_hold_the_rate_instead_of_decaying_over_a_guess() -> None:
    assert planned_steps(parse_train_budget("steps=20"), steps_per_epoch=10, batch_size=4) == 20
    assert planned_steps(parse_train_budget("samples=10"), steps_per_epoch=10, batch_size=4) == 3
    assert planned_steps(parse_train_budget("epochs=2,patience=1"), steps_per_epoch=10, batch_size=4) == 20
    assert planned_steps(parse_train_budget("time=60s"), steps_per_epoch=10, batch_size=4) is None
    assert planned_steps(parse_train_budget("time=60s,max_steps=50"), steps_per_epoch=10, batch_size=4) == 50
    assert schedule_description(parse_train_budget("energy=1kJ")).startswith("constant after")
    assert schedule_description(parse_train_budget("steps=4")).startswith("linear decay")


def test_weight_decay_spares_biases_and_layer_norms() -> None:
    built = _tiny()
    opt = make_optimizer(built.model, 1e-3)
    decayed, exempt = opt.param_groups
    assert decayed["weight_decay"] == 0.001 and exempt["weight_decay"] == 0.0
    names = {id(p): n for n, p in built.model.named_parameters()}
    assert all(names[id(p)].endswith("bias") or "layernorm" in names[id(p)].lower() or "layer_norm" in
               names[id(p)].lower() for p in exempt["params"])
    assert not any(names[id(p)].endswith("bias") for p in decayed["params"])
    assert len(decayed["params"]) + len(exempt["params"]) == len(names)
    assert optimizer_settings(1e-3, parse_train_budget("steps=1"), "tf32")["max_grad_norm"] == 1.0


@pytest.mark.parametrize("precision", ["bf16", "fp16", "tf32"])
def test_lower_precisions_train_and_restore_the_matmul_setting(precision: str) -> None:
    before = torch.get_float32_matmul_precision()
    built = _tiny()
    split = _split(2)
    p = Precision(precision, "cpu")
    with p.matmul():
        result = fine_tune(built, split, split, TrainPlan(2, 1, parse_train_budget("steps=2"), "cpu", 0, 1e-3,
                                                          precision=p))
    assert result.steps == 2 and all(math.isfinite(x) for x in result.losses)
    assert torch.get_float32_matmul_precision() == before
    assert all(param.dtype == torch.float32 for param in built.model.parameters())  # weights stay fp32


def test_early_stopping_on_the_study_metric_keeps_its_best_step() -> None:
    built = _tiny()
    split = _split(4)
    scores = iter([(1.0, 10.0), (0.5, 30.0), (0.4, 20.0), (0.3, 5.0), (0.2, 1.0), (0.1, 0.5)])
    plan = TrainPlan(2, 1, parse_train_budget("epochs=3,patience=2,eval_every=1"), "cpu", 0, 1e-3,
                     study_evaluation=lambda: next(scores))
    result = fine_tune(built, split, split, plan)
    assert [e["study_score"] for e in result.evals][:2] == [10.0, 30.0]
    assert result.best_step == 2  # the highest study score, whatever the validation loss did


class _StuckMeter:
    """A meter whose window is shared with another process: every read is invalid."""

    def read(self) -> object:
        from pytest_longeff.energy import EnergyReading

        return EnergyReading(None, 1.0, "nvml", False, "another compute process on the GPU", 2, None, None)


def test_an_energy_budget_whose_readings_stay_invalid_stops_with_a_clear_error() -> None:
    """Guards a training loop that would never end: an invalid reading keeps the energy spent at 0 J."""
    from pytest_longeff.cell.train import EnergySoFar
    from pytest_longeff.errors import CellUnavailable

    tally = EnergySoFar(_StuckMeter())  # type: ignore[arg-type]
    for _ in range(EnergySoFar.MAX_INVALID_IN_A_ROW - 1):
        assert tally() == 0.0
    with pytest.raises(CellUnavailable, match="another compute process"):
        tally()

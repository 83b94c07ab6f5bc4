"""--longeff-gradient-checkpointing: the same training step (loss and gradients as without it), less memory at a
size where activations dominate, recorded in the model's config, refused for a model that cannot."""

from __future__ import annotations


import pytest
import torch

from pytest_longeff.cell.infer import generate
from pytest_longeff.cell.prepare import TokenizedSplit
from pytest_longeff.cell.train import step_flops
from pytest_longeff.data.tokenizer import lexicon_tokenizer
from pytest_longeff.errors import CellUnavailable
from pytest_longeff.models.families import (
    BUILTIN_FAMILIES,
    LEDFamily,
    build_model,
    enable_gradient_checkpointing,
    is_checkpointing,
)
from pytest_longeff.models.recent import LLAMA
from support.fresh import run_fresh

VOCAB = len(lexicon_tokenizer())


def _split(rows: int, length: int, target: int) -> TokenizedSplit:
    g = torch.Generator().manual_seed(1)
    return TokenizedSplit([f"e{i}" for i in range(rows)], torch.randint(10, VOCAB, (rows, length), generator=g),
                          torch.ones(rows, length, dtype=torch.long),
                          torch.randint(10, VOCAB, (rows, target), generator=g), rows * length)


def _grads(family: object, size: str, length: int, on: bool) -> tuple[float, dict[str, torch.Tensor], object]:
    built = build_model(family, size, "tiny", VOCAB, length, None, seed=0, gradient_checkpointing=on)  # type: ignore[arg-type]
    model = built.model.train()
    family.prepare(model, length)  # type: ignore[attr-defined]
    split = _split(2, length, 16)
    out = model(**family.model_inputs(split.input_ids, split.attention_mask),  # type: ignore[attr-defined]
                labels=split.labels)
    out.loss.backward()
    return float(out.loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, built


@pytest.mark.parametrize("family", BUILTIN_FAMILIES, ids=lambda f: f.name)
def test_a_checkpointed_step_gives_the_same_loss_and_gradients(family: object) -> None:
    # The independent computation: the same model, same weights and batch, keeping its activations. (Big Bird's
    # random blocks are drawn again in the recomputed forward: transformers seeds them per layer, so they match.)
    loss, grads, _ = _grads(family, "base", 512, on=False)
    loss_gc, grads_gc, built = _grads(family, "base", 512, on=True)
    assert is_checkpointing(built.model)
    assert built.config_dict()["gradient_checkpointing"] is True
    assert loss_gc == pytest.approx(loss, rel=1e-6)
    assert grads_gc.keys() == grads.keys() and grads
    for name, g in grads.items():
        torch.testing.assert_close(grads_gc[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_off_by_default_and_absent_from_the_config() -> None:
    built = build_model(LLAMA, "base", "tiny", VOCAB, 256, None, seed=0)
    assert not is_checkpointing(built.model) and built.config_dict()["gradient_checkpointing"] is False


PROBE_IN_A_FRESH_PROCESS = """
import sys
from pytest_longeff.cell.batch import probe_batch
from pytest_longeff.models.families import build_model
from pytest_longeff.models.recent import LLAMA
from test_gradient_checkpointing import VOCAB, _split
built = build_model(LLAMA, "large", "tiny", VOCAB, 4096, None, seed=0, gradient_checkpointing=sys.argv[1] == "on")
print(probe_batch(built, _split(4, 4096, 32), 4, "cpu"))
"""


def test_the_probe_reads_less_memory_where_activations_dominate() -> None:
    """The tiny decoder-only large model (4 layers) at 4096 tokens: activations are nearly all of a step's memory,
    and checkpointing keeps one layer's instead of four (measured by the suite's probe, the process's own high-water
    mark). Each side probes in a fresh process: a CPU probe's figure includes what glibc's heap keeps, which
    depends on what the process did before (the ratio read 0.80 in a test worker that had run other tests, 0.52-0.61
    in fresh processes, also with both cores busy). Under a full-suite CI run one fresh process with checkpointing
    read 595 MiB (0.85 of the other side) where quiet ones read 393-457 MiB: a high-water mark can be raised by
    what the heap keeps, never lowered below what training holds, so each side is the lower of two fresh
    processes, and the bound (0.9) sits above that worst reading seen. Without checkpointing taking effect the ratio
    would be about 1."""
    peaks = {}
    for on in ("off", "on"):
        peaks[on] = min(int(run_fresh(PROBE_IN_A_FRESH_PROCESS, on, beside=__file__, timeout=600)) for _ in range(2))
    assert peaks["on"] < 0.9 * peaks["off"], peaks


def test_a_model_that_cannot_checkpoint_is_refused_by_name() -> None:
    class Plain(torch.nn.Module):
        supports_gradient_checkpointing = False

    with pytest.raises(CellUnavailable, match="does not support gradient checkpointing; run without "
                                         "--longeff-gradient-checkpointing"):
        enable_gradient_checkpointing(Plain(), "mine base")


@pytest.mark.parametrize("family", BUILTIN_FAMILIES, ids=lambda f: f.name)
def test_generation_is_the_same_with_it_on(family: object) -> None:
    split = _split(2, 512, 8)
    outs = []
    for on in (False, True):
        built = build_model(family, "base", "tiny", VOCAB, 512, None, seed=0, gradient_checkpointing=on)  # type: ignore[arg-type]
        built.family.prepare(built.model, 512)
        result = generate(built, split, 2, 6, 1, "cpu", fixed=True)
        outs.append([out for _, out in result.outputs])
    assert all(torch.equal(a, b) for a, b in zip(*outs, strict=True))


def test_the_flops_method_says_the_recomputed_forward_is_counted() -> None:
    split = _split(2, 256, 8)
    counted = {}
    for on in (False, True):
        built = build_model(LLAMA, "base", "tiny", VOCAB, 256, None, seed=0, gradient_checkpointing=on)
        counted[on] = step_flops(built, split, 1, "cpu", {})
    assert "recomputed by gradient checkpointing" in counted[True][1]
    assert "recomputed" not in counted[False][1]
    assert 1.15 < counted[True][0] / counted[False][0] < 1.5  # one more forward of the layers, not of the head


def test_batch_keys_made_before_the_recipe_was_recorded_stand() -> None:
    """The batch cache is keyed on the model's config less the recipe choices at their defaults: a default build
    keys as every build did before attention and checkpointing were recorded; a checkpointed one keys apart."""
    from pytest_longeff.models.common import recipe_at_defaults_dropped

    led = build_model(LEDFamily(), "base", "tiny", VOCAB, 256, None, seed=0)
    before = {**led.model.config.to_diff_dict(), "architectures": ["LEDForConditionalGeneration"]}
    assert recipe_at_defaults_dropped(led.config_dict()) == before
    on = build_model(LEDFamily(), "base", "tiny", VOCAB, 256, None, seed=0, gradient_checkpointing=True)
    assert recipe_at_defaults_dropped(on.config_dict())["gradient_checkpointing"] is True
    sdpa = build_model(LLAMA, "base", "tiny", VOCAB, 256, None, seed=0)
    assert recipe_at_defaults_dropped(sdpa.config_dict())["attn_implementation"] == "sdpa"

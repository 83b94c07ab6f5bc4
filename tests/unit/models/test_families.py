from __future__ import annotations

import pytest
import torch

from pytest_longeff.errors import NoCheckpoint
from pytest_longeff.matrix import DEFAULT_LENGTHS
from pytest_longeff.models.families import BigBirdFamily, LEDFamily, build_model


def test_tiny_configs_are_family_faithful() -> None:
    for size in ("base", "large"):
        led = LEDFamily().config(size, "tiny", 500, 4096)
        assert max(led.attention_window) < min(DEFAULT_LENGTHS)
        bigbird = BigBirdFamily().config(size, "tiny", 500, 4096)
        threshold = (5 + 2 * bigbird.num_random_blocks) * bigbird.block_size
        assert bigbird.attention_type == "block_sparse" and threshold < min(DEFAULT_LENGTHS)
    base, large = LEDFamily().config("base", "tiny", 500, 4096), LEDFamily().config("large", "tiny", 500, 4096)
    assert large.d_model == 2 * base.d_model and large.encoder_layers == 2 * base.encoder_layers


@pytest.mark.parametrize(
    ("family", "size", "d_model", "layers", "heads", "vocab"),
    [
        (LEDFamily(), "base", 768, 6, 12, 50265),  # allenai/led-base-16384
        (LEDFamily(), "large", 1024, 12, 16, 50265),  # allenai/led-large-16384
        (BigBirdFamily(), "large", 1024, 16, 16, 96103),  # google/bigbird-pegasus-large-pubmed
        (BigBirdFamily(), "base", 768, 6, 12, 96103),  # BigBirdPegasus at LED-base dimensions
    ],
)
def test_dims_profile_uses_the_published_dimensions(family: LEDFamily | BigBirdFamily, size: str, d_model: int,
                                                    layers: int, heads: int, vocab: int) -> None:
    config = family.config(size, "dims", 500, 4096)
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (d_model, layers, layers)
    assert config.encoder_attention_heads == heads and config.vocab_size == vocab
    if isinstance(family, BigBirdFamily):
        assert (config.block_size, config.num_random_blocks) == (64, 3)
    else:
        assert config.attention_window == [1024] * layers


def test_no_pretrained_bigbird_base_exists() -> None:
    with pytest.raises(NoCheckpoint, match="no pretrained Big Bird base"):
        BigBirdFamily().checkpoint("base")


def test_led_puts_global_attention_on_the_first_token_only() -> None:
    ids = torch.ones(2, 8, dtype=torch.long)
    mask = LEDFamily().model_inputs(ids, torch.ones_like(ids))["global_attention_mask"]
    assert mask[:, 0].tolist() == [1, 1] and int(mask.sum()) == 2


def test_bigbird_sticky_full_attention_is_undone_for_the_next_cell() -> None:
    family = BigBirdFamily()
    built = build_model(family, "base", "tiny", 50, 512, None, seed=0)
    model = built.model.eval()
    short = torch.randint(4, 50, (1, 64))  # below the 144-token threshold: the encoder switches to full
    with torch.no_grad():
        model(input_ids=short, decoder_input_ids=short[:, :2])
    assert model.get_encoder().attention_type == "original_full"
    assert family.attention(model, 512).startswith("original_full")
    family.prepare(model, 512)
    assert model.get_encoder().attention_type == "block_sparse"
    long = torch.randint(4, 50, (1, 512))
    with torch.no_grad():
        model(input_ids=long, decoder_input_ids=long[:, :2])
    assert family.attention(model, 512) == (
        "block_sparse (block 16: 3-block window + 2 global blocks; 2 random blocks only in training, eval uses "
        "window + global, its 2 random slots repeating block 0)")
    assert family.attention(model, 128).startswith("original_full (input 128 <= block-sparse threshold 144)")


def test_reset_restores_the_initial_weights() -> None:
    built = build_model(LEDFamily(), "base", "tiny", 50, 256, None, seed=0)
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    with torch.no_grad():
        for p in built.model.parameters():
            p.add_(1.0)
    built.reset()
    assert all(torch.equal(before[k], v) for k, v in built.model.state_dict().items())


def test_builds_are_deterministic_for_a_seed() -> None:
    a = build_model(LEDFamily(), "base", "tiny", 50, 256, None, seed=3).model.state_dict()
    b = build_model(LEDFamily(), "base", "tiny", 50, 256, None, seed=3).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _tiny_led(window: int) -> torch.nn.Module:
    from transformers import LEDForConditionalGeneration

    config = LEDFamily().config("base", "tiny", 50, 256)
    config.attention_window = [window] * config.encoder_layers
    torch.manual_seed(0)  # the window shapes no parameter: the same seed gives the same weights
    return LEDForConditionalGeneration(config).eval()


@pytest.mark.parametrize(("seq_len", "full"), [(33, True), (34, True), (35, False), (64, False)])
def test_led_label_says_full_exactly_when_the_two_sided_window_covers_the_input(seq_len: int, full: bool) -> None:
    # transformers' LED window w is two-sided (w/2 each side): with w = 64 and token 0 global, tokens 1..n-1 are at
    # most n-2 apart, so attention is full up to n = 32 + 2 = 34. Checked against a window of 256 (surely full).
    family, model = LEDFamily(), _tiny_led(64)
    ids = torch.randint(4, 50, (1, seq_len), generator=torch.Generator().manual_seed(1))
    inputs = family.model_inputs(ids, torch.ones_like(ids))
    with torch.no_grad():
        windowed = model.get_encoder()(**inputs).last_hidden_state
        wide = _tiny_led(256).get_encoder()(**inputs).last_hidden_state
    assert torch.allclose(windowed, wide, atol=1e-6) is full
    expected = (f"sliding_window (window 64 = 32 each side, token 0 global: effectively full at {seq_len} tokens)"
                if full else f"sliding_window (window 64 = 32 each side; not full at {seq_len} tokens)")
    assert family.attention(model, seq_len) == expected


def test_led_dims_window_is_not_full_at_the_shortest_length() -> None:
    # The published window 1024 is 512 each side: at 1024 tokens attention is sliding, not full.
    config = LEDFamily().config("base", "dims", 500, 4096)

    class _Model:
        pass

    model = _Model()
    model.config = config  # type: ignore[attr-defined]
    assert LEDFamily().attention(model, 1024) == "sliding_window (window 1024 = 512 each side; not full at 1024 tokens)"
    assert LEDFamily().attention(model, 514).endswith("effectively full at 514 tokens)")


def test_bigbird_draws_random_blocks_only_in_training() -> None:
    model = build_model(BigBirdFamily(), "base", "tiny", 50, 1024, None, seed=0).model
    attention = model.get_encoder().layers[0].self_attn.self
    plan, plan_blocks = attention._get_rand_attn_plan(512, 16, 2)

    def random_blocks() -> tuple[bool, bool]:
        paper_plan = attention._bigbird_block_rand_mask(1024, 1024, 16, 16, 2, last_idx=1024)  # 1024/3072/4096
        other = attention._bigbird_block_rand_mask_with_head(512, 512, 16, 16, 2, plan, plan_blocks)
        return bool(paper_plan.any()), any(bool(h.any()) for h in other)

    model.eval()
    assert random_blocks() == (False, False)  # eval: every random slot is block 0, which is global anyway
    model.train()
    assert random_blocks() == (True, True)
    assert BigBirdFamily().attention(model, 512).startswith("block_sparse (")

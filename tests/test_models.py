from __future__ import annotations

import pytest
import torch

from pytest_longeff.matrix import DEFAULT_LENGTHS
from pytest_longeff.models import BigBirdFamily, LEDFamily, build_model


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
    with pytest.raises(ValueError, match="no pretrained Big Bird base"):
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
    assert family.attention(model, 512) == "block_sparse"
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

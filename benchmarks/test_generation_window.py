r"""Measuring your own work with ``longeff_window``: greedy generation alone, no matrix cell.

Each test builds nothing through the matrix: a tiny LED from a config (random weights, eager attention) generates
greedily from random token ids, and ``longeff_window.measure`` times it with the session's device
synchronisation, energy meter, idle baseline and peak memory, over repeats after one warm-up run. The record lands
in the JSON report under the test's node id (section ``windows``), in JUnit, and under the gate as
``window_generate_time_s`` etc.::

    pytest benchmarks/test_generation_window.py --longeff-json base.json
    pytest benchmarks/test_generation_window.py --longeff-baseline base.json \
        --longeff-fail-on window_generate_time_s:20%
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_longeff.cell.resources import LongeffSession
    from pytest_longeff.measure.recorder import WindowRecorder

VOCAB = 512
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def tiny_led() -> Any:
    """A two-layer LED with a 64-token attention window, built from a config with a fixed seed."""
    import torch
    from transformers import LEDConfig, LEDForConditionalGeneration

    torch.manual_seed(0)
    dims: dict[str, Any] = {
        "vocab_size": VOCAB, "d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 2,
        "decoder_attention_heads": 2, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
        "max_encoder_position_embeddings": 2048, "max_decoder_position_embeddings": 64, "attention_window": [64, 64],
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2,
        "attn_implementation": "eager",
    }
    model: Any = LEDForConditionalGeneration(LEDConfig(**dims))
    return model.eval()


@pytest.mark.parametrize("seq_len", [256, 1024])
def test_greedy_generation(longeff_window: WindowRecorder, longeff_session: LongeffSession, tiny_led: Any,
                           seq_len: int) -> None:
    """Greedy decoding of NEW_TOKENS tokens from a seq_len-token input, 3 measured repeats."""
    import torch

    device = longeff_session.device
    model = tiny_led.to(device)
    generator = torch.Generator().manual_seed(seq_len)
    input_ids = torch.randint(3, VOCAB, (1, seq_len), generator=generator).to(device)
    global_attention = torch.zeros_like(input_ids)
    global_attention[:, 0] = 1  # as the matrix's LED cells: global attention on the first token

    def generate() -> None:
        with torch.inference_mode():
            model.generate(input_ids, global_attention_mask=global_attention, max_new_tokens=NEW_TOKENS,
                           min_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1)

    summary = longeff_window.measure("generate", generate, repeats=3, warmup=1)
    assert summary.time_s > 0 and len(summary.samples) == 3

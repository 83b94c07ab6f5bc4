"""The families added after the study (LongT5, PEGASUS-X, the Llama-style decoder-only family), checked against
independent computations: the causal LM's own loss, a bare greedy loop without a cache, parameter counts of the
published checkpoints, and the KV-cache formula."""

from __future__ import annotations

import pytest
import torch

from pytest_longeff.cell.phases import kv_geometry, measure_kv_cache, prefill_call
from pytest_longeff.cell.prepare import TokenizedSplit
from pytest_longeff.models.common import resolve_attn
from pytest_longeff.models.families import BUILTIN_FAMILIES, LEDFamily, build_model
from pytest_longeff.models.recent import LLAMA, DecoderDims, DecoderOnlyFamily, LongT5Family, PegasusXFamily

VOCAB = 97


def _tiny_llama(attn: str = "auto", seed: int = 0) -> torch.nn.Module:
    return build_model(LLAMA, "base", "tiny", VOCAB, 256, None, seed=seed, attn=attn).model.eval()


def _batch(rows: int = 2, prompt: int = 24, target: int = 6, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (rows, prompt), generator=g)
    labels = torch.randint(4, VOCAB, (rows, target), generator=g)
    return ids, torch.ones_like(ids), labels


def test_builtin_families_are_registered_with_unique_names() -> None:
    names = [f.name for f in BUILTIN_FAMILIES]
    assert names == ["led", "bigbird", "longt5", "pegasus_x", "llama"]


def test_causal_loss_is_the_lms_own_loss_on_the_target_only() -> None:
    model = _tiny_llama()
    ids, mask, labels = _batch()
    labels[1, -2:] = -100  # a shorter target, padded as the tokenizer pads labels
    ours = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    # Independent: the causal LM's own loss over prompt + target, the prompt's positions masked.
    full = torch.cat([ids, labels.masked_fill(labels == -100, 0)], dim=1)
    full_labels = torch.cat([torch.full_like(ids, -100), labels], dim=1)
    theirs = model.causal_lm(input_ids=full, labels=full_labels).loss
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_logits_line_up_with_the_labels() -> None:
    model = _tiny_llama()
    ids, mask, labels = _batch(rows=1)
    logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
    full = model.causal_lm(input_ids=torch.cat([ids, labels], dim=1)).logits
    # position P-1+t predicts label t
    assert torch.allclose(logits[0], full[0, ids.shape[1] - 1: ids.shape[1] - 1 + labels.shape[1]], atol=1e-5)


def test_padded_prompts_train_and_generate_as_if_unpadded() -> None:
    model = _tiny_llama()
    ids, _, labels = _batch(rows=1, prompt=20)
    padded = torch.cat([ids, torch.zeros(1, 8, dtype=ids.dtype)], dim=1)  # the tokenizer pads on the right
    mask = torch.cat([torch.ones_like(ids), torch.zeros(1, 8, dtype=ids.dtype)], dim=1)
    loss_padded = model(input_ids=padded, attention_mask=mask, labels=labels).loss
    loss_plain = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    assert torch.allclose(loss_padded, loss_plain, atol=1e-5)
    out_padded = model.generate(input_ids=padded, attention_mask=mask, max_new_tokens=5, min_new_tokens=5,
                                do_sample=False)
    out_plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5,
                               min_new_tokens=5, do_sample=False)
    assert torch.equal(out_padded[:, 1:], out_plain[:, 1:])


def _bare_greedy(lm: torch.nn.Module, ids: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding without a cache: the whole sequence through the model for every new token."""
    seq = ids
    for _ in range(steps):
        logits = lm(input_ids=seq, use_cache=False).logits[:, -1]
        logits[:, 2] = float("-inf")  # the end token suppressed, as min_new_tokens does
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    return seq[:, ids.shape[1]:]


def test_generation_with_the_kv_cache_equals_a_bare_greedy_loop() -> None:
    model = _tiny_llama()
    ids, mask, _ = _batch(rows=2, prompt=30)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.shape == (2, 7)
    assert torch.equal(out[:, 0], torch.zeros(2, dtype=out.dtype))  # the start column: padding, nothing of the prompt
    assert torch.equal(out[:, 1:], _bare_greedy(model.causal_lm, ids, 6))


def test_sdpa_and_eager_give_the_same_greedy_outputs() -> None:
    eager, sdpa = _tiny_llama("eager"), _tiny_llama("sdpa")
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    ids, mask, _ = _batch(rows=3, prompt=200, seed=7)
    a = eager.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    b = sdpa.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert torch.equal(a, b)


def test_unsupported_attention_is_refused_with_what_is_supported() -> None:
    with pytest.raises(ValueError, match=r"'led' does not support attention implementation 'sdpa' \(it supports "
                                         r"eager\)"):
        resolve_attn(LEDFamily(), "sdpa")
    assert resolve_attn(LLAMA, "auto") == "sdpa"
    assert resolve_attn(LongT5Family(), "auto") == "eager"
    with pytest.raises(ValueError, match="does not support"):
        build_model(PegasusXFamily(), "base", "tiny", VOCAB, 256, None, seed=0, attn="sdpa")


def test_the_record_names_the_attention_and_the_wrapped_class() -> None:
    built = build_model(LLAMA, "base", "tiny", VOCAB, 256, None, seed=0, attn="eager")
    config = built.config_dict()
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["attn_implementation"] == "eager"


@pytest.mark.parametrize(("family", "size", "expected"), [
    # Parameter counts of the published checkpoints (their model cards and config.json; embeddings counted once
    # where tied). Built on the meta device: no memory is allocated.
    # google/long-t5-tglobal-base and -large (248M and 783M) less their output layer (32128 x d_model): transformers
    # 5 always ties LongT5's output layer to its embeddings (a note in its LongT5Config).
    (LongT5Family(), "base", 247.6e6 - 32128 * 768),
    (LongT5Family(), "large", 783.2e6 - 32128 * 1024),
    (PegasusXFamily(), "base", 272.4e6),  # google/pegasus-x-base
    (PegasusXFamily(), "large", 568.7e6),  # google/pegasus-x-large
    (LLAMA, "base", 494.0e6),  # Qwen/Qwen2.5-0.5B (a Qwen2 model: Llama with biases on q, k and v)
    (LLAMA, "large", 1235.8e6),  # meta-llama/Llama-3.2-1B
])
def test_dims_match_the_published_parameter_counts(family: object, size: str, expected: float) -> None:
    import transformers

    config = family.config(size, "dims", 500, 8192)  # type: ignore[attr-defined]
    with torch.device("meta"):
        if isinstance(family, DecoderOnlyFamily):
            model = getattr(transformers, family.dims[size].model_class)(config)
        else:
            model = family.build(size, "dims", 500, 8192, None)  # type: ignore[attr-defined]
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - expected) / expected < 0.01, params


def test_a_family_registered_like_mistral_runs_through_the_same_wrapper() -> None:
    mistral = DecoderOnlyFamily("mistral", tiny={"base": DecoderDims(32, 2, 4, 2, 64, "MistralConfig",
                                                                        "MistralForCausalLM")})
    built = build_model(mistral, "base", "tiny", VOCAB, 256, None, seed=0)
    assert built.config_dict()["architectures"] == ["MistralForCausalLM"]
    ids, mask, labels = _batch()
    assert torch.isfinite(built.model(input_ids=ids, attention_mask=mask, labels=labels).loss)


def _split(seq_len: int) -> TokenizedSplit:
    ids, mask, labels = _batch(rows=2, prompt=seq_len)
    return TokenizedSplit(["a", "b"], ids, mask, labels, int(mask.sum()))


@pytest.mark.parametrize("family", [LLAMA, LongT5Family(), PegasusXFamily(), LEDFamily()],
                         ids=lambda f: f.name)
def test_kv_cache_bytes_per_token_match_the_formula(family: object) -> None:
    built = build_model(family, "large", "tiny", VOCAB, 512, None, seed=0)  # type: ignore[arg-type]
    kv = measure_kv_cache(built, _split(128), "cpu")
    layers, heads, head_dim = kv_geometry(built.model.config, cross=not isinstance(family, DecoderOnlyFamily))
    # The formula from the config's numbers, computed here, not by the code under test.
    assert kv["formula_bytes_per_token"] == 2 * layers * heads * head_dim * 4
    assert abs(kv["bytes_per_token"] / kv["formula_bytes_per_token"] - 1) <= 0.05


def test_grouped_query_attention_caches_only_the_key_value_heads() -> None:
    built = build_model(LLAMA, "large", "tiny", VOCAB, 512, None, seed=0)
    c = built.model.config
    assert c.num_key_value_heads < c.num_attention_heads
    kv = measure_kv_cache(built, _split(64), "cpu")
    # The tiny decoder-only sizes set their head size (32), not hidden / heads (16): the cache follows the config's.
    assert c.head_dim == 32 != c.hidden_size // c.num_attention_heads
    assert kv["bytes_per_token"] == 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4


def test_prefill_ends_where_generation_takes_its_first_token() -> None:
    model = _tiny_llama()
    built = build_model(LLAMA, "base", "tiny", VOCAB, 256, None, seed=0)
    ids, mask, _ = _batch(rows=1)
    cache = prefill_call(built, ids, mask)
    assert cache.get_seq_length() == ids.shape[1]
    first = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, min_new_tokens=1, do_sample=False)
    logits = model.causal_lm(input_ids=ids).logits[:, -1]
    logits[:, 2] = float("-inf")
    assert int(first[0, 1]) == int(logits.argmax(-1))


def test_prompts_padded_on_either_side_generate_the_same() -> None:
    model = _tiny_llama()
    ids, _, _ = _batch(rows=1, prompt=20)
    pad = torch.zeros(1, 6, dtype=ids.dtype)
    ones, zeros = torch.ones_like(ids), torch.zeros_like(pad)
    right = model.generate(input_ids=torch.cat([ids, pad], 1), attention_mask=torch.cat([ones, zeros], 1),
                           max_new_tokens=4, min_new_tokens=4, do_sample=False)
    left = model.generate(input_ids=torch.cat([pad, ids], 1), attention_mask=torch.cat([zeros, ones], 1),
                          max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert torch.equal(right, left)


def test_the_token_clock_reads_cuda_events_after_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the clock records events on the stream (no synchronisation in the window) and converts them to the
    window's clock afterwards."""
    from pytest_longeff.cell import phases

    recorded: list[float] = []

    class FakeEvent:
        def __init__(self, enable_timing: bool) -> None:
            assert enable_timing

        def record(self) -> None:
            self.at = 0.25 * len(recorded)  # the fake stream's time, in seconds
            recorded.append(self.at)

        def elapsed_time(self, other: FakeEvent) -> float:
            return (other.at - self.at) * 1000.0  # milliseconds, as torch.cuda.Event says

    monkeypatch.setattr(phases.torch.cuda, "Event", FakeEvent)
    clock = phases.TokenClock("cuda:0")
    clock.start()
    scores = torch.zeros(1, 3)
    for _ in range(3):
        assert clock(torch.zeros(1, 1), scores) is scores
    assert clock.stamps(100.0) == [100.25, 100.5, 100.75]


def test_a_decoder_only_checkpoints_targets_get_the_end_token_and_no_start_token() -> None:
    """Tokenizers of decoder-only checkpoints add a start token and no end token; a target must end with the end
    token (or the model never learns to stop) and carry no start token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from pytest_longeff.cell.prepare import _tokenize
    from pytest_longeff.data.scrolls import Row

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, "a": 3, "b": 4, "c": 5}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.pad_token = tok.eos_token  # as Inputs.tokenizer gives a checkpoint without a padding token
    rows = [Row("1", "1", "a b c", "b c"), Row("2", "2", "a", "c")]
    split = _tokenize(tok, rows, 6, 128, "longest", target_end=1)
    assert split.labels.tolist() == [[4, 5, 1], [5, 1, -100]]
    assert split.input_ids.tolist()[1][:2] == [0, 3] and split.attention_mask.tolist()[1] == [1, 1, 0, 0, 0, 0]

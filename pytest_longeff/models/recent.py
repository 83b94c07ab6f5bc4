"""The families people choose today: LongT5 (transient-global attention) and PEGASUS-X, efficient encoder-decoders,
and decoder-only LLMs (Llama-style: rotary positions, grouped-query attention, SwiGLU, a KV cache; Qwen2 at the
``base`` size of the dims profile, Mistral or any other causal LM through :class:`DecoderOnlyFamily` in a hook).

A decoder-only model runs every cell through :class:`~pytest_longeff.models.causal.CausalLMAsSeq2Seq`: fine-tuned as
a causal LM on the prompt (the query and the document) followed by the target, with the loss on the target only, and generating greedily with its
KV cache after the prompt. The wrapper speaks the cell's seq2seq contract (``input_ids``, ``attention_mask``,
``labels`` in, a loss and the target positions' logits out; ``generate`` returns a start column and the new tokens),
so the training loop, the batch search, the FLOP count, the precision and the scoring serve every family alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_longeff.data.tokenizer import EOS_ID, PAD_ID
from pytest_longeff.models.common import Dims, load_pretrained, special_ids

if TYPE_CHECKING:
    import torch

__all__ = ["LLAMA", "DecoderDims", "DecoderOnlyFamily", "LongT5Family", "PegasusXFamily"]

class _EncoderDecoder:
    """What LongT5 and PEGASUS-X share: a ``transformers`` class by name, eager attention only (transformers
    supports nothing else for them), inputs as they are, nothing to undo between cells; a family says how its
    config is made and how its tiny model reads (:meth:`tiny_words`)."""

    name = ""
    model_class = ""
    attn_implementations = ("eager",)

    def checkpoint(self, size: str) -> str:
        raise NotImplementedError

    def config(self, size: str, weights: str, vocab_size: int, max_len: int) -> Any:
        raise NotImplementedError

    def tiny_words(self, size: str) -> str:
        raise NotImplementedError

    def label(self, size: str, weights: str) -> str:
        if weights == "tiny":
            return self.tiny_words(size)
        if weights == "dims":
            return f"{self.checkpoint(size)} dimensions, random weights"
        return self.checkpoint(size)

    def build(self, size: str, weights: str, vocab_size: int, max_len: int, model_dir: str | None) -> Any:
        import transformers

        cls = getattr(transformers, self.model_class)
        if weights == "pretrained":
            return load_pretrained(cls, self.checkpoint(size), model_dir)
        return cls(self.config(size, weights, vocab_size, max_len))  # eager, as config() sets it

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def prepare(self, model: Any, seq_len: int) -> None:
        return None


# ---------------------------------------------------------------------------------------------------------------
# LongT5
# ---------------------------------------------------------------------------------------------------------------

TINY_T5: Mapping[str, Dims] = {"base": Dims(32, 1, 2, 64), "large": Dims(64, 2, 4, 128)}
# google/long-t5-tglobal-base and -large (config.json): d_model, layers (encoder and decoder each), heads, d_ff.
LONGT5_DIMS: Mapping[str, Dims] = {"base": Dims(768, 12, 12, 2048), "large": Dims(1024, 24, 16, 2816)}
LONGT5_VOCAB = 32128
TINY_LOCAL_RADIUS, DIMS_LOCAL_RADIUS = 32, 127  # tokens each side (the published checkpoints: 127)
GLOBAL_BLOCK = 16  # tokens summed into one global token (the published checkpoints: 16)


class LongT5Family(_EncoderDecoder):
    """LongT5 with transient-global attention: each token sees a local window and one global token per block of
    16 tokens (the block's mean, computed afresh in every layer); relative positions, so no position table."""

    name = "longt5"
    model_class = "LongT5ForConditionalGeneration"

    def checkpoint(self, size: str) -> str:
        return f"google/long-t5-tglobal-{size}"

    def tiny_words(self, size: str) -> str:
        d = TINY_T5[size]
        return (f"tiny LongT5 {size} (d_model {d.d_model}, {d.layers}+{d.layers} layers, transient-global, local "
                f"radius {TINY_LOCAL_RADIUS})")

    def config(self, size: str, weights: str, vocab_size: int, max_len: int) -> Any:
        """The ``LongT5Config`` of a ``tiny`` or ``dims`` model."""
        from transformers import LongT5Config

        tiny = weights == "tiny"
        d = (TINY_T5 if tiny else LONGT5_DIMS)[size]
        config = LongT5Config(
            vocab_size=vocab_size if tiny else max(vocab_size, LONGT5_VOCAB), d_model=d.d_model,
            d_kv=d.d_model // d.heads, d_ff=d.ffn, num_layers=d.layers, num_decoder_layers=d.layers,
            num_heads=d.heads, encoder_attention_type="transient-global",
            local_radius=TINY_LOCAL_RADIUS if tiny else DIMS_LOCAL_RADIUS, global_block_size=GLOBAL_BLOCK,
            feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
            decoder_start_token_id=PAD_ID,
        )
        config._attn_implementation = "eager"
        return config

    def attention(self, model: Any, seq_len: int) -> str:
        radius, block = model.config.local_radius, model.config.global_block_size
        globals_ = -(-seq_len // block)
        return (f"transient_global (local radius {radius} each side, {globals_} global tokens: one per block of "
                f"{block} at {seq_len} tokens)")


# ---------------------------------------------------------------------------------------------------------------
# PEGASUS-X
# ---------------------------------------------------------------------------------------------------------------

TINY_PEGASUS_X: Mapping[str, Dims] = {"base": Dims(32, 1, 2, 64), "large": Dims(64, 2, 4, 128)}
# google/pegasus-x-base and -large (config.json).
PEGASUS_X_DIMS: Mapping[str, Dims] = {"base": Dims(768, 12, 12, 3072), "large": Dims(1024, 16, 16, 4096)}
PEGASUS_X_VOCAB = 96103
TINY_BLOCK_X, DIMS_BLOCK_X = 64, 512
TINY_GLOBALS_X, DIMS_GLOBALS_X = 16, 128
PEGASUS_X_POSITIONS = 16384  # the published checkpoints' max_position_embeddings


class PegasusXFamily(_EncoderDecoder):
    """PEGASUS-X: staggered block-local attention plus a set of learned global tokens every token attends to;
    sinusoidal positions, declared up to ``max_position_embeddings``."""

    name = "pegasus_x"
    model_class = "PegasusXForConditionalGeneration"

    def checkpoint(self, size: str) -> str:
        return f"google/pegasus-x-{size}"

    def tiny_words(self, size: str) -> str:
        d = TINY_PEGASUS_X[size]
        return (f"tiny PEGASUS-X {size} (d_model {d.d_model}, {d.layers}+{d.layers} layers, block {TINY_BLOCK_X}, "
                f"{TINY_GLOBALS_X} global tokens)")

    def config(self, size: str, weights: str, vocab_size: int, max_len: int) -> Any:
        """The ``PegasusXConfig`` of a ``tiny`` or ``dims`` model."""
        from transformers import PegasusXConfig

        tiny = weights == "tiny"
        d = (TINY_PEGASUS_X if tiny else PEGASUS_X_DIMS)[size]
        config = PegasusXConfig(
            vocab_size=vocab_size if tiny else max(vocab_size, PEGASUS_X_VOCAB), d_model=d.d_model,
            encoder_layers=d.layers, decoder_layers=d.layers, encoder_attention_heads=d.heads,
            decoder_attention_heads=d.heads, encoder_ffn_dim=d.ffn, decoder_ffn_dim=d.ffn,
            block_size=TINY_BLOCK_X if tiny else DIMS_BLOCK_X,
            num_global_tokens=TINY_GLOBALS_X if tiny else DIMS_GLOBALS_X, stagger_local_blocks=True,
            max_position_embeddings=max(max_len, PEGASUS_X_POSITIONS if not tiny else max_len),
            **special_ids(), decoder_start_token_id=PAD_ID,
        )
        config._attn_implementation = "eager"
        return config

    def attention(self, model: Any, seq_len: int) -> str:
        block, globals_ = model.config.block_size, model.config.num_global_tokens
        if seq_len > block:
            return (f"block_local_global (blocks of {block}, staggered, + {globals_} global tokens; not full at "
                    f"{seq_len} tokens)")
        return f"block_local_global (one block of {block} holds all {seq_len} tokens: effectively full)"


# ---------------------------------------------------------------------------------------------------------------
# Decoder-only
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderDims:
    """A decoder-only architecture: width, depth, query and key-value heads, MLP width; ``source``: the published
    config the numbers come from (None for the tiny ones)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    config_class: str = "LlamaConfig"
    model_class: str = "LlamaForCausalLM"
    vocab: int = 0
    rope_theta: float = 10000.0
    tie: bool = True
    max_positions: int = 0
    source: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


GENERATED_POSITIONS = 1024  # positions past the longest prompt, for the target (at most 128 tokens in every task)
TINY_DECODER: Mapping[str, DecoderDims] = {
    # Two layers at least: copying a value that follows a key needs one layer to pass the key forward and one to
    # match it (an induction head), which a single layer cannot do.
    # Wider than the encoder-decoders' tiny sizes: at width 32 it did not learn to copy in the pretraining budget
    # (needle retrieval 25-62 at 1024-4096 tokens, the facts tasks near 0, measured).
    # Rotary base 1,000,000 (Qwen2.5's) and heads of 32: a head can match a key by content alone only in the rotary
    # frequency pairs that turn by less than about a radian over the distance it looks back. At the default base
    # 10,000 with heads of 16, one pair of eight does over 4096 tokens, and the model read a needle at 1024 tokens
    # but not at 4096 (100 against 62.5) and its facts scores fell after 2048 (measured); with these, six pairs of
    # sixteen do, and the same schedule gave needle 100 at 4096 and facts scores rising to 90 (the shipped base).
    "base": DecoderDims(64, 2, 4, 2, 128, rope_theta=1_000_000.0, extra={"head_dim": 32}),
    "large": DecoderDims(96, 4, 6, 2, 192, rope_theta=1_000_000.0, extra={"head_dim": 32}),
}
DIMS_DECODER: Mapping[str, DecoderDims] = {
    # Qwen/Qwen2.5-0.5B (config.json): a Qwen2-style model (Llama with biases on q, k and v), ~0.49B parameters.
    "base": DecoderDims(896, 24, 14, 2, 4864, "Qwen2Config", "Qwen2ForCausalLM", 151936, 1_000_000.0, True,
                        32768, "Qwen/Qwen2.5-0.5B"),
    # meta-llama/Llama-3.2-1B (config.json), ~1.24B parameters; its llama3 RoPE scaling is left out (it changes
    # which frequencies serve long inputs, not the cost).
    "large": DecoderDims(2048, 16, 32, 8, 8192, "LlamaConfig", "LlamaForCausalLM", 128256, 500_000.0, True,
                         131072, "meta-llama/Llama-3.2-1B"),
}


@dataclass(frozen=True)
class DecoderOnlyFamily:
    """A decoder-only family: its tiny and dims architectures and its checkpoints by size. Register another (e.g.
    Mistral-style) through ``pytest_longeff_families``::

        DecoderOnlyFamily("mistral", tiny={"base": DecoderDims(32, 2, 2, 1, 64, "MistralConfig",
                          "MistralForCausalLM")}, checkpoints={"base": "mistralai/Mistral-7B-v0.1"})
    """

    name: str
    tiny: Mapping[str, DecoderDims]
    dims: Mapping[str, DecoderDims] = field(default_factory=dict)
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    attn_implementations: tuple[str, ...] = ("sdpa", "eager", "flash_attention_2")
    decoder_only: bool = True

    def _dims(self, size: str, weights: str) -> DecoderDims:
        table = self.tiny if weights == "tiny" else self.dims
        if size not in table:
            from pytest_longeff.errors import CellSkip

            raise CellSkip(f"family {self.name!r} has no {weights} architecture of size {size!r} (it has "
                           f"{', '.join(table) or 'none'})")
        return table[size]

    def checkpoint(self, size: str) -> str:
        if size not in self.checkpoints:
            from pytest_longeff.errors import NoCheckpoint

            raise NoCheckpoint(f"family {self.name!r} names no checkpoint of size {size!r}")
        return self.checkpoints[size]

    def label(self, size: str, weights: str) -> str:
        if weights == "pretrained":
            return self.checkpoint(size)
        d = self._dims(size, weights)
        kind = d.config_class.removesuffix("Config")
        if weights == "tiny":
            return (f"tiny {kind} {size} (hidden {d.hidden}, {d.layers} layers, {d.heads} query / {d.kv_heads} "
                    f"key-value heads)")
        return f"{d.source or kind} dimensions ({kind}), random weights"

    def config(self, size: str, weights: str, vocab_size: int, max_len: int) -> Any:
        """The config of a ``tiny`` or ``dims`` model (no weights are made)."""
        import transformers

        d = self._dims(size, weights)
        cls = getattr(transformers, d.config_class)
        config = cls(
            vocab_size=max(vocab_size, d.vocab), hidden_size=d.hidden, intermediate_size=d.ffn,
            num_hidden_layers=d.layers, num_attention_heads=d.heads, num_key_value_heads=d.kv_heads,
            # Positions for the prompt and what is generated after it (a causal LM's positions cover both).
            max_position_embeddings=max(max_len + GENERATED_POSITIONS, d.max_positions), rope_theta=d.rope_theta,
            tie_word_embeddings=d.tie, **special_ids(), **dict(d.extra),
        )
        config._attn_implementation = self.attn_implementations[0]
        return config

    def build(self, size: str, weights: str, vocab_size: int, max_len: int, model_dir: str | None) -> Any:
        import transformers

        if weights == "pretrained":
            lm = load_pretrained(transformers.AutoModelForCausalLM, self.checkpoint(size), model_dir,
                                 self.attn_implementations[0])
        else:
            d = self._dims(size, weights)
            lm = getattr(transformers, d.model_class)(self.config(size, weights, vocab_size, max_len))
        from pytest_longeff.models.causal import CausalLMAsSeq2Seq

        return CausalLMAsSeq2Seq(lm)

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def prepare(self, model: Any, seq_len: int) -> None:
        return None

    def attention(self, model: Any, seq_len: int) -> str:
        c = model.config
        kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        window = getattr(c, "sliding_window", None)
        shape = f"sliding window {window}" if isinstance(window, int) and window < seq_len else "full"
        return (f"causal_{shape.replace(' ', '_')} ({c._attn_implementation}; {c.num_attention_heads} query heads "
                f"sharing {kv} key-value heads)")


LLAMA = DecoderOnlyFamily(
    "llama", tiny=TINY_DECODER, dims=DIMS_DECODER,
    checkpoints={"base": "Qwen/Qwen2.5-0.5B", "large": "meta-llama/Llama-3.2-1B"},
)


def builtin_recent() -> tuple[Any, ...]:
    """The built-in families beyond the study's: LongT5, PEGASUS-X and the Llama-style decoder-only family."""
    return (LongT5Family(), PegasusXFamily(), LLAMA)


def is_decoder_only(family: Any) -> bool:
    """Whether cells of ``family`` run a causal LM (prompt then target) rather than an encoder-decoder."""
    return bool(getattr(family, "decoder_only", False))


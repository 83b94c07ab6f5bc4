"""Model families: how each one is built for each profile, fed, and kept honest about its attention.

Built-in families are registered through the ``pytest_longeff_families`` hook like any user family: a family is an
object satisfying :class:`Family`. LED and Big Bird live here; LongT5, PEGASUS-X and the decoder-only family in
:mod:`pytest_longeff.models.recent`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from pytest_longeff.data.tokenizer import EOS_ID, PAD_ID
from pytest_longeff.errors import NoCheckpoint
from pytest_longeff.models.common import Dims, load_pretrained, resolve_attn, seed_everything, special_ids
from pytest_longeff.models.recent import builtin_recent

if TYPE_CHECKING:
    import torch

__all__ = ["BUILTIN_FAMILIES", "BuiltModel", "Family", "NoCheckpoint", "build_model"]

# Token ids shared by the offline tokenizer and every model config built here.


class Family(Protocol):
    """A model family under study.

    Optional attributes: ``attn_implementations`` (the attention implementations it supports, its preferred first;
    without it, ``--longeff-attn-implementation auto`` leaves its models as built and any other value is passed to
    transformers) and ``decoder_only`` (True for a causal LM wrapped as in :mod:`pytest_longeff.models.causal`)."""

    name: str

    def build(self, size: str, weights: str, vocab_size: int, max_len: int, model_dir: str | None) -> Any:
        """Return a ``transformers`` seq2seq model for ``size`` under the profile's ``weights`` kind
        (``tiny``, ``dims`` or ``pretrained``)."""

    def label(self, size: str, weights: str) -> str:
        """What was built, in words (e.g. the checkpoint whose dimensions were used)."""

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Keyword arguments for the model's forward and ``generate`` (e.g. LED's global attention mask)."""

    def prepare(self, model: Any, seq_len: int) -> None:
        """Undo any state an earlier input left in the model, before a cell at ``seq_len`` runs."""

    def attention(self, model: Any, seq_len: int) -> str:
        """The encoder attention actually in use for inputs of ``seq_len`` tokens."""

    def checkpoint(self, size: str) -> str:
        """The hub checkpoint of the ``paper`` profile."""


# Tiny, family-faithful sizes: `large` is twice `base` in width and depth.
TINY_DIMS: Mapping[str, Dims] = {"base": Dims(32, 1, 2, 64), "large": Dims(64, 2, 4, 128)}
# Published dimensions (allenai/led-base-16384, allenai/led-large-16384, google/bigbird-pegasus-large-pubmed).
LED_DIMS: Mapping[str, Dims] = {"base": Dims(768, 6, 12, 3072), "large": Dims(1024, 12, 16, 4096)}
BIGBIRD_DIMS: Mapping[str, Dims] = {
    # No Big Bird base seq2seq checkpoint exists: base is BigBirdPegasus at LED-base dimensions.
    "base": Dims(768, 6, 12, 3072),
    "large": Dims(1024, 16, 16, 4096),
}
TINY_LED_WINDOW = 64  # smaller than every default length, so the sliding window is what runs
DIMS_LED_WINDOW = 1024  # the published checkpoints' window
TINY_BLOCK, TINY_RANDOM_BLOCKS = 16, 2  # full-attention threshold (5 + 2*2) * 16 = 144 tokens
DIMS_BLOCK, DIMS_RANDOM_BLOCKS = 64, 3  # bigbird-pegasus-large-pubmed: threshold 704 tokens
LED_VOCAB, BIGBIRD_VOCAB = 50265, 96103
MAX_TARGET_POSITIONS = 1024


def _shape(d: Dims, vocab_size: int) -> dict[str, Any]:
    """Config keywords shared by both seq2seq families: dimensions and the tokenizer's special ids."""
    return {
        "vocab_size": vocab_size, "d_model": d.d_model, "encoder_layers": d.layers, "decoder_layers": d.layers,
        "encoder_attention_heads": d.heads, "decoder_attention_heads": d.heads, "encoder_ffn_dim": d.ffn,
        "decoder_ffn_dim": d.ffn, **special_ids(),
    }


class LEDFamily:
    """Longformer Encoder-Decoder: sliding-window attention, global attention on the first token."""

    name = "led"
    attn_implementations = ("eager",)  # transformers' LED has no other

    def checkpoint(self, size: str) -> str:
        return f"allenai/led-{size}-16384"

    def label(self, size: str, weights: str) -> str:
        if weights == "tiny":
            d = TINY_DIMS[size]
            return f"tiny LED {size} (d_model {d.d_model}, {d.layers}+{d.layers} layers, window {TINY_LED_WINDOW})"
        if weights == "dims":
            return f"{self.checkpoint(size)} dimensions, random weights"
        return self.checkpoint(size)

    def build(self, size: str, weights: str, vocab_size: int, max_len: int, model_dir: str | None) -> Any:
        from transformers import LEDForConditionalGeneration

        if weights == "pretrained":
            return load_pretrained(LEDForConditionalGeneration, self.checkpoint(size), model_dir)
        return LEDForConditionalGeneration(self.config(size, weights, vocab_size, max_len))

    def config(self, size: str, weights: str, vocab_size: int, max_len: int) -> Any:
        """The ``LEDConfig`` of a ``tiny`` or ``dims`` model (no weights are made)."""
        from transformers import LEDConfig

        tiny = weights == "tiny"
        d = (TINY_DIMS if tiny else LED_DIMS)[size]
        config = LEDConfig(
            **_shape(d, vocab_size if tiny else max(vocab_size, LED_VOCAB)),
            attention_window=[TINY_LED_WINDOW if tiny else DIMS_LED_WINDOW] * d.layers,
            max_encoder_position_embeddings=max(max_len, 16384 if not tiny else max_len),
            max_decoder_position_embeddings=MAX_TARGET_POSITIONS,
            decoder_start_token_id=EOS_ID,
        )
        config._attn_implementation = "eager"
        return config

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        import torch

        global_mask = torch.zeros_like(attention_mask)
        global_mask[:, 0] = 1  # the study: global attention on the first token only
        return {"input_ids": input_ids, "attention_mask": attention_mask, "global_attention_mask": global_mask}

    def prepare(self, model: Any, seq_len: int) -> None:
        return None

    def attention(self, model: Any, seq_len: int) -> str:
        """``sliding_window (...)``: transformers' LED ``attention_window`` w is two-sided, each token sees w/2
        tokens on each side (``one_sided_attn_window_size = w // 2``). With token 0 global (see
        :meth:`model_inputs`) the other tokens are at most ``seq_len - 2`` apart, so attention is effectively full
        only when ``seq_len - 2 <= w/2`` in every layer."""
        windows = model.config.attention_window
        per_layer = [int(w) for w in windows] if isinstance(windows, (list, tuple)) else [int(windows)]
        low, high = min(per_layer), max(per_layer)
        shown = f"window {low} = {low // 2} each side" if low == high else \
            f"windows {low}-{high} = {low // 2}-{high // 2} each side"
        if seq_len - 2 <= low // 2:
            return f"sliding_window ({shown}, token 0 global: effectively full at {seq_len} tokens)"
        return f"sliding_window ({shown}; not full at {seq_len} tokens)"


class BigBirdFamily:
    """BigBirdPegasus: block-sparse attention above its full-attention threshold."""

    name = "bigbird"
    attn_implementations = ("eager",)  # transformers' BigBirdPegasus has no other

    def checkpoint(self, size: str) -> str:
        if size != "large":
            raise NoCheckpoint(
                "no pretrained Big Bird base seq2seq checkpoint exists; use --longeff-sizes large with the paper "
                "profile (the dims profile builds a base at LED-base dimensions)"
            )
        return "google/bigbird-pegasus-large-pubmed"

    def label(self, size: str, weights: str) -> str:
        if weights == "tiny":
            d = TINY_DIMS[size]
            return (
                f"tiny BigBirdPegasus {size} (d_model {d.d_model}, {d.layers}+{d.layers} layers, "
                f"block {TINY_BLOCK}, {TINY_RANDOM_BLOCKS} random blocks)"
            )
        if weights == "dims":
            if size == "base":
                return "BigBirdPegasus at LED-base dimensions (no Big Bird base checkpoint exists), random weights"
            return "google/bigbird-pegasus-large-pubmed dimensions, random weights"
        return self.checkpoint(size)

    def build(self, size: str, weights: str, vocab_size: int, max_len: int, model_dir: str | None) -> Any:
        from transformers import BigBirdPegasusForConditionalGeneration

        if weights == "pretrained":
            return load_pretrained(BigBirdPegasusForConditionalGeneration, self.checkpoint(size), model_dir)
        return BigBirdPegasusForConditionalGeneration(self.config(size, weights, vocab_size, max_len))

    def config(self, size: str, weights: str, vocab_size: int, max_len: int) -> Any:
        """The ``BigBirdPegasusConfig`` of a ``tiny`` or ``dims`` model (no weights are made)."""
        from transformers import BigBirdPegasusConfig

        tiny = weights == "tiny"
        d = (TINY_DIMS if tiny else BIGBIRD_DIMS)[size]
        config = BigBirdPegasusConfig(
            **_shape(d, vocab_size if tiny else max(vocab_size, BIGBIRD_VOCAB)),
            attention_type="block_sparse",
            block_size=TINY_BLOCK if tiny else DIMS_BLOCK,
            num_random_blocks=TINY_RANDOM_BLOCKS if tiny else DIMS_RANDOM_BLOCKS,
            max_position_embeddings=max(max_len, 4096),
            scale_embedding=True,
            decoder_start_token_id=PAD_ID,
        )
        config._attn_implementation = "eager"
        return config

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def threshold(self, model: Any) -> int:
        """Inputs at or below this many tokens make BigBirdPegasus switch itself to full attention."""
        return int((5 + 2 * model.config.num_random_blocks) * model.config.block_size)

    def prepare(self, model: Any, seq_len: int) -> None:
        # The encoder switches to full attention for a short input and stays switched for every later input:
        # put it back to what the config asks for, so one short cell cannot make every later cell's numbers lie.
        model.get_encoder().set_attention_type(model.config.attention_type)

    def attention(self, model: Any, seq_len: int) -> str:
        """``block_sparse (...)`` above the threshold: a 3-block sliding window plus the first and last blocks as
        global, and ``num_random_blocks`` random blocks per query block in training only. In eval transformers
        draws no random blocks: ``_bigbird_block_rand_mask`` returns all zeros, so the random slots point at block 0,
        which is already global (its keys enter the softmax again, unmasked). At or below the threshold (or once
        switched) the encoder runs ``original_full``."""
        if model.get_encoder().attention_type == "block_sparse" and seq_len > self.threshold(model):
            block, rand = model.config.block_size, model.config.num_random_blocks
            return (f"block_sparse (block {block}: 3-block window + 2 global blocks; {rand} random blocks only in "
                    f"training, eval uses window + global, its {rand} random slots repeating block 0)")
        return f"original_full (input {seq_len} <= block-sparse threshold {self.threshold(model)})"


BUILTIN_FAMILIES: tuple[Family, ...] = (LEDFamily(), BigBirdFamily(), *builtin_recent())


class BuiltModel:
    """A model built once per (profile, family, size), with the initial weights each cell is reset to."""

    def __init__(self, family: Family, size: str, model: Any, build_s: float, label: str,
                 tiny_pretrained: bool = False) -> None:
        self.family = family
        self.size = size
        self.model = model
        self.build_s = build_s
        self.label = label
        # Kept on the CPU: a second copy of a large model must not eat the device's memory budget.
        self.initial_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.params = sum(p.numel() for p in model.parameters())
        self.tiny_pretrained = tiny_pretrained  # the tiny profile's shipped checkpoint, not a random init

    def reset(self) -> None:
        """Put back the initial weights (every cell starts from the same model)."""
        self.model.load_state_dict(self.initial_state)

    @property
    def attn_implementation(self) -> str:
        """The attention implementation the model runs (``eager``, ``sdpa``, ``flash_attention_2``)."""
        return str(getattr(self.model.config, "_attn_implementation", None) or "eager")

    def config_dict(self) -> dict[str, Any]:
        """The model's config as a JSON-ready dict, with the class that runs it and its attention implementation."""
        out: dict[str, Any] = self.model.config.to_diff_dict()
        out["architectures"] = [getattr(self.model, "architecture", type(self.model).__name__)]
        out["attn_implementation"] = self.attn_implementation
        out["gradient_checkpointing"] = is_checkpointing(self.model)
        return out


def is_checkpointing(model: Any) -> bool:
    """Whether transformers' activation (gradient) checkpointing is on in ``model``: some module of it has it set."""
    target = getattr(model, "checkpointing_target", model)
    modules = target.modules() if hasattr(target, "modules") else ()
    return any(getattr(m, "gradient_checkpointing", False) is True for m in modules)


def enable_gradient_checkpointing(model: Any, what: str) -> None:
    """Turn on transformers' activation checkpointing, every layer, non-reentrant (it acts in training only:
    generation and evaluation run as before), or say why it cannot be."""
    from pytest_longeff.errors import CellUnavailable

    target = getattr(model, "checkpointing_target", model)
    if not getattr(target, "supports_gradient_checkpointing", False):
        raise CellUnavailable(f"{what}: {type(target).__name__} does not support gradient checkpointing; run "
                              "without --longeff-gradient-checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(target, "activation_checkpointing_enable"):  # transformers 5.x's name
        target.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if not is_checkpointing(model):
        raise CellUnavailable(f"{what}: transformers did not turn gradient checkpointing on")


def build_model(
    family: Family, size: str, weights: str, vocab_size: int, max_len: int, model_dir: str | None, seed: int,
    tiny_pretrained: bool = False, attn: str = "auto", gradient_checkpointing: bool = False,
) -> BuiltModel:
    """Build (or load) a model with a fixed seed and record how long it took; never inside a measured window.
    ``tiny_pretrained``: load the tiny profile's shipped checkpoint instead of a random init. ``attn``: the
    attention implementation (``--longeff-attn-implementation``; ``auto`` is the family's preferred one); one the
    family does not support is a ValueError that says which it does. ``gradient_checkpointing``: keep only each
    layer's input in training and recompute the rest in the backward pass (``--longeff-gradient-checkpointing``);
    a model class that cannot makes the cell unavailable (:class:`~pytest_longeff.errors.CellUnavailable`). A
    checkpoint whose config turns it on by itself is turned off when the option is not given."""
    import time

    seed_everything(seed)
    t0 = time.perf_counter()
    if tiny_pretrained:
        from pytest_longeff.models.checkpoints import load_tiny

        model = load_tiny(family, size, vocab_size)
        label = f"{family.label(size, weights)}, pretrained (shipped checkpoint)"
    else:
        model = family.build(size, weights, vocab_size, max_len, model_dir)
        label = family.label(size, weights)
    implementation = resolve_attn(family, attn)
    if implementation is not None and getattr(model.config, "_attn_implementation", "eager") != implementation:
        model.set_attn_implementation(implementation)
        if getattr(model.config, "_attn_implementation", None) != implementation:
            raise ValueError(f"{family.name} {size}: transformers kept attention implementation "
                             f"{model.config._attn_implementation!r} when asked for {implementation!r}")
    if gradient_checkpointing:
        enable_gradient_checkpointing(model, f"{family.name} {size}")
    elif is_checkpointing(model):  # a checkpoint's config.json asked for it: the option decides
        target = getattr(model, "checkpointing_target", model)
        disable = getattr(target, "activation_checkpointing_disable", None) or target.gradient_checkpointing_disable
        disable()
    return BuiltModel(family, size, model, time.perf_counter() - t0, label, tiny_pretrained)

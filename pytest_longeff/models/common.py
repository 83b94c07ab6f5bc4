"""What every built-in family shares: dimensions, the special token ids, loading a checkpoint, the attention
implementations, and the input length a model's positions allow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_longeff.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

#: ``--longeff-attn-implementation`` values; ``auto`` is each family's first (its preferred) implementation.
ATTN_IMPLEMENTATIONS: tuple[str, ...] = ("auto", "eager", "sdpa", "flash_attention_2")
#: Recipe choices a record's ``model_config`` holds beyond the transformers config, with the value a model ran with
#: when its record (or a batch-cache key made before the choice was recorded) does not say.
RECIPE_DEFAULTS: dict[str, Any] = {"attn_implementation": "eager", "gradient_checkpointing": False}


def recipe_at_defaults_dropped(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the recipe choices that hold their default, so a key made from it equals the key made
    before the choice was recorded."""
    return {k: v for k, v in config.items() if not (k in RECIPE_DEFAULTS and v == RECIPE_DEFAULTS[k])}


@dataclass(frozen=True)
class Dims:
    """The dimensions of one architecture."""

    d_model: int
    layers: int
    heads: int
    ffn: int


def special_ids() -> dict[str, int]:
    """The tokenizer's special ids, as every config built here declares them."""
    return {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}


def seed_everything(seed: int) -> None:
    """Seed torch's generators before a model is built, so its random init is the same on every machine."""
    import torch

    torch.manual_seed(seed)


def local_source(checkpoint: str, model_dir: str | None) -> str:
    """Where ``checkpoint`` loads from: its folder in a local mirror (``model_dir/<org>/<name>``, a
    ``save_pretrained`` folder) when one is given, else the hub name."""
    if model_dir is None:
        return checkpoint
    local = Path(model_dir) / checkpoint
    if not (local / "config.json").is_file():
        raise FileNotFoundError(
            f"no checkpoint at {local} (expected a save_pretrained folder with config.json for {checkpoint}); "
            "lay out --longeff-model-dir as <dir>/<org>/<name>"
        )
    return str(local)


def load_pretrained(cls: Any, checkpoint: str, model_dir: str | None, attn: str = "eager") -> Any:
    """Load ``checkpoint`` (from a local mirror when ``model_dir`` is given, else the hub) with the attention
    implementation ``attn``. transformers 5 loads a checkpoint in its stored dtype by default ("auto"); the study
    trained in fp32, and ``--longeff-precision`` decides what runs in lower precision, so weights load as fp32."""
    import torch

    return cls.from_pretrained(local_source(checkpoint, model_dir), attn_implementation=attn, dtype=torch.float32)


def attn_implementations(family: Any) -> tuple[str, ...] | None:
    """The attention implementations ``family`` supports, its preferred first; None for a family that does not say
    (one a hook added: its models run as it builds them)."""
    found = getattr(family, "attn_implementations", None)
    return tuple(found) if found else None


def resolve_attn(family: Any, requested: str) -> str | None:
    """The implementation a cell of ``family`` runs under ``--longeff-attn-implementation requested`` (None: as the
    family builds it, for ``auto`` with a family that declares none); a ValueError naming the family and what it
    supports when it cannot. A family that declares none gets what is asked, and transformers decides."""
    supported = attn_implementations(family)
    if supported is None:
        return None if requested == "auto" else requested
    if requested == "auto":
        return supported[0]
    if requested not in supported:
        raise ValueError(f"family {family.name!r} does not support attention implementation {requested!r} "
                         f"(it supports {', '.join(supported)}); choose one of those, auto, or narrow "
                         f"--longeff-families")
    return requested


def flash_attention_problem() -> str | None:
    """Why ``flash_attention_2`` cannot run here, or None when it can."""
    try:
        from transformers.utils import is_flash_attn_2_available
    except ImportError:  # pragma: no cover - transformers always has it
        return "this transformers has no flash_attention_2 support"
    if not is_flash_attn_2_available():
        return ("the flash-attn package is not installed or no CUDA GPU is visible (flash_attention_2 runs only on "
                "CUDA GPUs with flash-attn installed)")
    return None


def position_limit(model: Any) -> tuple[int | None, str]:
    """How many input positions ``model``'s config declares, and which field says so; None for a model whose
    positions are relative (no table to run past)."""
    config = model.config
    for name in ("max_encoder_position_embeddings", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value, name
    return None, "relative positions (no table)"

"""The tiny profile's pretrained checkpoints, shipped with the package (made by ``benchmarks/pretrain_tiny.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_longeff.errors import CellSkip, LongeffError

if TYPE_CHECKING:
    from pytest_longeff.models.families import Family

CHECKPOINTS = Path(__file__).resolve().parent
MAX_LEN = 4096  # the longest input the checkpoints were pretrained at (their encoder positions)
CONFIG_KEYS = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
               "vocab_size", "attention_window", "block_size", "num_random_blocks", "attention_type",
               "max_encoder_position_embeddings", "max_position_embeddings")


def shipped(family: str, size: str) -> Path | None:
    """The folder of the shipped checkpoint of ``family``/``size``, or None when none ships."""
    folder = CHECKPOINTS / f"{family}-{size}"
    return folder if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() else None


def check_tiny_checkpoint(family: str, size: str, seq_len: int) -> None:
    """Refuse (as a skip that says what to do) a cell the shipped checkpoints cannot serve."""
    if shipped(family, size) is None:
        raise CellSkip(f"no shipped tiny checkpoint for {family} {size} (the package ships led and bigbird, base "
                       "and large); run it with --longeff-tiny-weights random")
    if seq_len > MAX_LEN:
        raise CellSkip(f"the shipped tiny checkpoints were pretrained up to {MAX_LEN} tokens, not {seq_len}; run "
                       "longer inputs with --longeff-tiny-weights random")


def load_tiny(family: Family, size: str, vocab_size: int, folder: Path | None = None) -> Any:
    """The shipped checkpoint of ``family``/``size``, loaded into the architecture the tiny profile declares; a
    checkpoint whose config differs from the declared one is an error, never a silent mismatch."""
    from safetensors.torch import load_file

    folder = folder or shipped(family.name, size)
    if folder is None:
        raise CellSkip(f"no shipped tiny checkpoint for {family.name} {size}")
    model = family.build(size, "tiny", vocab_size, MAX_LEN, None)
    declared = model.config.to_dict()
    stored = json.loads((folder / "config.json").read_text())
    differ = [k for k in CONFIG_KEYS if k in declared and stored.get(k) != declared[k]]
    if differ:
        raise LongeffError(f"{folder}: the checkpoint's config differs from the tiny profile's {family.name} {size} "
                           f"in {', '.join(differ)}; run benchmarks/pretrain_tiny.py to rebuild it")
    stored_weights = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(stored_weights, strict=False)
    model.tie_weights()
    # Tied weights are stored once (e.g. the shared embeddings, not the encoder's, decoder's and head's copies): a
    # key missing from the file must share its storage with one the file had.
    state = model.state_dict()
    loaded = {state[k].data_ptr() for k in stored_weights if k in state}
    untied = [k for k in missing if state[k].data_ptr() not in loaded]
    if unexpected or untied:
        raise LongeffError(f"{folder}: weights do not match the architecture (missing {sorted(untied)[:3]}, "
                           f"unexpected {sorted(unexpected)[:3]}); run benchmarks/pretrain_tiny.py to rebuild it")
    return model

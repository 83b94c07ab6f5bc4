"""The tiny profile's pretrained checkpoints, shipped with the package (made by ``benchmarks/pretrain_tiny.py``).

Which checkpoints ship is declared (:data:`SHIPPED`), not read from the folder: a checkpoint that should be there
and is not (a damaged install, a wheel built without its package data) is an error that says so, never a silent
fall-back to random weights. Tests point :data:`CHECKPOINTS` at a copy of the folder to check that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_longeff.errors import CellSkip, CheckpointError

if TYPE_CHECKING:
    from pytest_longeff.models.families import Family

CHECKPOINTS = Path(__file__).resolve().parent
MAX_LEN = 4096  # the longest input the checkpoints were pretrained at (their encoder positions)
CONFIG_KEYS = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
               "vocab_size", "attention_window", "block_size", "num_random_blocks", "attention_type",
               "max_encoder_position_embeddings", "max_position_embeddings")
#: The (family, size) pairs the package ships a checkpoint for, with the ``model_type`` their config declares.
SHIPPED: dict[tuple[str, str], str] = {
    ("led", "base"): "led", ("led", "large"): "led",
    ("bigbird", "base"): "bigbird_pegasus", ("bigbird", "large"): "bigbird_pegasus",
    ("longt5", "base"): "longt5", ("longt5", "large"): "longt5",
    ("pegasus_x", "base"): "pegasus_x", ("pegasus_x", "large"): "pegasus_x",
    ("llama", "base"): "llama", ("llama", "large"): "llama",
}
FILES = ("config.json", "model.safetensors")
RANDOM_OPTION = "--longeff-tiny-weights random"
FIX = (f"reinstall pytest-longeff so its package data is complete (or rebuild the checkpoint with "
       f"benchmarks/pretrain_tiny.py), or pass {RANDOM_OPTION} to run with a fixed-seed random init instead")


def shipped(family: str, size: str) -> Path | None:
    """The folder the checkpoint of ``family``/``size`` ships in, or None when the package ships none for it by
    design. The folder is named whether or not its files are there: :func:`check_tiny_checkpoint` and
    :func:`load_tiny` say when they are missing or damaged."""
    return CHECKPOINTS / f"{family}-{size}" if (family, size) in SHIPPED else None


def check_tiny_checkpoint(family: str, size: str, seq_len: int) -> None:
    """Refuse (as a skip that says what to do) a cell the shipped checkpoints cannot serve; raise
    :class:`~pytest_longeff.errors.CheckpointError` when a checkpoint that ships is missing or damaged."""
    folder = shipped(family, size)
    if folder is None:
        pairs = ", ".join(f"{f}-{s}" for f, s in SHIPPED)
        raise CellSkip(f"no shipped tiny checkpoint for {family} {size} (the package ships {pairs}); run it with "
                       f"{RANDOM_OPTION}")
    check_folder(folder, f"{family} {size}", SHIPPED[(family, size)])
    trained = trained_length(folder)
    if seq_len > trained:
        raise CellSkip(f"the shipped tiny checkpoint of {family} {size} was pretrained up to {trained} tokens, not "
                       f"{seq_len}; run longer inputs with {RANDOM_OPTION}")


def trained_length(folder: Path) -> int:
    """The longest input the checkpoint in ``folder`` was pretrained at (``max_len`` in its ``pretraining.json``;
    :data:`MAX_LEN` for one that does not say)."""
    try:
        made = json.loads((folder / "pretraining.json").read_text(encoding="utf-8"))
        value = made["config"]["max_len"]
    except (OSError, ValueError, KeyError, TypeError):
        return MAX_LEN
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else MAX_LEN


def check_folder(folder: Path, what: str, model_type: str) -> dict[str, Any]:
    """The stored config of the checkpoint in ``folder`` after checking, without loading the weights, that both
    files are there, the config is a JSON object of ``model_type`` and the weights file is whole (its header
    covers the file); a :class:`~pytest_longeff.errors.CheckpointError` naming the file and the fix otherwise."""
    from safetensors import safe_open

    for name in FILES:
        if not (folder / name).is_file():
            raise CheckpointError(f"the shipped tiny checkpoint of {what} is incomplete: {folder / name} is missing; "
                                  f"{FIX}")
    path = folder / "config.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON config ({exc}); {FIX}") from None
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: expected a JSON object (a transformers config), got "
                              f"{type(stored).__name__}; {FIX}")
    if stored.get("model_type") != model_type:
        raise CheckpointError(f"{path}: model_type is {stored.get('model_type')!r}, but the checkpoint of {what} "
                              f"must be {model_type!r}; {FIX}")
    weights = folder / "model.safetensors"
    try:
        with safe_open(str(weights), "pt"):
            pass
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError (and OSError)
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc}); {FIX}") from None
    return stored


def load_tiny(family: Family, size: str, vocab_size: int, folder: Path | None = None) -> Any:
    """The shipped checkpoint of ``family``/``size`` (or the one in ``folder``), loaded into the architecture the
    tiny profile declares; a missing or damaged file, or a checkpoint whose config differs from the declared one,
    is a :class:`~pytest_longeff.errors.CheckpointError` naming the file, never a silent mismatch. Returned in
    eval mode, as ``from_pretrained`` returns a model (a model built from its config starts in train mode, where
    dropout and Big Bird's random blocks make two generations of the same prompt differ)."""
    from safetensors.torch import load_file

    folder = folder or shipped(family.name, size)
    if folder is None:
        raise CellSkip(f"no shipped tiny checkpoint for {family.name} {size}")
    model = family.build(size, "tiny", vocab_size, MAX_LEN, None)
    declared = model.config.to_dict()
    stored = check_folder(folder, f"{family.name} {size}", model.config.model_type)
    differ = [k for k in CONFIG_KEYS if k in declared and stored.get(k) != declared[k]]
    if differ:
        raise CheckpointError(f"{folder}: the checkpoint's config differs from the tiny profile's {family.name} "
                              f"{size} in {', '.join(differ)}; run benchmarks/pretrain_tiny.py to rebuild it")
    try:
        stored_weights = load_file(str(folder / "model.safetensors"))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError (and OSError)
        raise CheckpointError(f"{folder / 'model.safetensors'}: not a readable safetensors file ({exc}); "
                              f"{FIX}") from None
    # A decoder-only family's model wraps its causal LM (models.causal), whose own save_pretrained wrote the file.
    target = getattr(model, "causal_lm", model)
    missing, unexpected = target.load_state_dict(stored_weights, strict=False)
    target.tie_weights()
    # Tied weights are stored once (e.g. the shared embeddings, not the encoder's, decoder's and head's copies): a
    # key missing from the file must share its storage with one the file had.
    state = target.state_dict()
    loaded = {state[k].data_ptr() for k in stored_weights if k in state}
    untied = [k for k in missing if state[k].data_ptr() not in loaded]
    if unexpected or untied:
        raise CheckpointError(f"{folder}: weights do not match the architecture (missing {sorted(untied)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}); run benchmarks/pretrain_tiny.py to rebuild it")
    model.eval()
    return model

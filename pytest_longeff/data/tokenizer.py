"""The offline tokenizers: the generator's fixed word-level vocabulary (generated data, and the tiny profile's
shipped checkpoints), or a word-level tokenizer trained locally on the user's training splits, cached on disk.

The ``tiny`` and ``dims`` profiles cannot download a tokenizer. Ids for padding, start, end and unknown match the
model configs in ``models``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_longeff.errors import LongeffWarning

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
#: The special tokens' ids, shared by every tokenizer and model config of the package.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
DEFAULT_VOCAB = 8000


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> Any:
    """Train a lower-casing word-level tokenizer (words and punctuation) and wrap it for ``transformers``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(texts, trainer=trainer)
    # Every encoded sequence ends with </s>, as the seq2seq models expect.
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS_ID)])
    return _wrap(tok)


def _wrap(tok: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def cached_tokenizer(cache_dir: Path, key: str, texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> Any:
    """Load the tokenizer trained for ``key`` (the data it was trained on), training and saving it on a miss. A
    cached file that cannot be read is a miss with a warning (retrained and overwritten), never an error."""
    from tokenizers import Tokenizer

    digest = hashlib.sha256(f"{key}|{vocab_size}".encode()).hexdigest()[:16]
    path = cache_dir / f"tokenizer-{digest}.json"
    if path.is_file():
        try:
            return _wrap(Tokenizer.from_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises bare Exception; a corrupt entry is rebuilt
            path.unlink(missing_ok=True)  # before the warning, which ``-W error`` raises: the bad entry never stays
            warnings.warn(f"tokenizer cache {path} ignored: it cannot be read ({str(exc)[:200]}); training it again",
                          LongeffWarning, stacklevel=2)
    wrapped = train_tokenizer(texts, vocab_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.part")  # workers may share the cache
    wrapped.backend_tokenizer.save(str(tmp))
    tmp.replace(path)
    return wrapped


def lexicon_tokenizer() -> Any:
    """The tokenizer of the generated data: one id per word of the generator's fixed lexicon (no training, so the
    ids never change with the seed or the tasks; the shipped tiny checkpoints are built on it)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    from pytest_longeff.data.scrolls import lexicon

    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *lexicon().vocabulary()])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS_ID)])
    return _wrap(tok)

"""Preparing a cell's inputs, cached across cells and runs: the task's splits, the tokenizer, and each split
tokenised for one input length. Nothing here is measured."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pytest_longeff.data import hub as hubdata
from pytest_longeff.data import ruler
from pytest_longeff.data import scrolls as data_mod
from pytest_longeff.data.tokenizer import cached_tokenizer, lexicon_tokenizer
from pytest_longeff.errors import DataError, LongeffWarning
from pytest_longeff.matrix import DEFAULT_TASKS, Cell

if TYPE_CHECKING:
    from pytest_longeff.config.settings import Settings
    from pytest_longeff.models.families import Family
    from pytest_longeff.profiles import Profile
    from pytest_longeff.tasks.specs import TaskSpec


LONG_DOCS_ABOVE = 4096  # cells longer than this read the long generated facts documents


@dataclass
class TokenizedSplit:
    """A split tokenised for one input length: inputs truncated and padded to exactly ``seq_len``."""

    ids: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor  # padded with -100
    input_tokens: int  # non-padding input tokens, summed

    @property
    def decoder_positions(self) -> int:
        """Positions the decoder runs in every batch of this split: the labels' padded width (no batch trims it,
        so the batch-size probe's step is as long as every training step)."""
        return int(self.labels.shape[1])


def file_key(path: Path) -> str:
    """Identifies a file's version for cache keys: path, size and modification time."""
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def model_source(family: Family, size: str, settings: Settings) -> str:
    """Where a pretrained checkpoint is loaded from: the hub name, or its folder under ``--longeff-model-dir``."""
    checkpoint = family.checkpoint(size)
    return str(Path(settings.model_dir) / checkpoint) if settings.model_dir else checkpoint


class Inputs:
    """Splits, tokenizers and tokenised splits of one session, in memory and on disk under ``cache_dir``."""

    def __init__(self, settings: Settings, profile: Profile, cache_dir: Path, families: Mapping[str, Family]) -> None:
        self.settings = settings
        self.profile = profile
        self.cache_dir = cache_dir
        self.families = families
        self.cache_hits = 0
        self.misses = 0
        self._splits: dict[str, dict[str, data_mod.Split]] = {}
        self._tokenized: dict[tuple[int, str, str, int, int], TokenizedSplit] = {}
        self._tokenizers: dict[str, Any] = {}
        self._digests: dict[int, str] = {}
        self._ratios: dict[int, float] = {}

    @staticmethod
    def doc_words(seq_len: int | None) -> int:
        """Words in each generated facts document a cell of ``seq_len`` tokens reads: 4,000 up to 4096 tokens (every
        fact within the study's longest input), 30,000 above (every fact within 32,768 tokens). A cell's data never
        depends on the other cells; the words are named in the data's folder, so caches keyed on the file follow
        them."""
        return data_mod.DOC_WORDS if seq_len is None or seq_len <= LONG_DOCS_ABOVE else data_mod.LONG_DOC_WORDS

    def task_root(self, task: str, seq_len: int | None = None) -> Path:
        """The folder holding ``<task>/{train,validation}.jsonl`` for generated-data profiles: ``--longeff-data-dir``
        when given, else the generated data for a cell of ``seq_len`` tokens (written once under the cache)."""
        if self.settings.data_dir:
            return Path(self.settings.data_dir)
        words = self.doc_words(seq_len)
        suffix = "" if words == data_mod.DOC_WORDS else f"-words{words}"
        root = self.cache_dir / f"generated-v{data_mod.GENERATOR_VERSION}-seed{self.profile.seed}{suffix}"
        return data_mod.write_generated(root, self.tokenizer_tasks(), self.profile.seed, doc_words=words)

    def per_length(self, task: str) -> bool:
        """Whether ``task``'s data is generated for each input length (the RULER-style tasks, unless the user gives
        their data)."""
        return task in ruler.RULER_TASKS and not self.settings.dataset and not self.settings.data_dir

    def ruler_items(self, cell: Cell) -> int:
        """How many words and marks a RULER-style input of ``cell`` holds so that it is about ``cell.seq_len`` tokens
        under the cell's tokenizer: exactly ``seq_len`` with the generator's own tokenizer (one token each), else
        scaled by the tokenizer's tokens per generated word (measured on a sample), with a small margin; a longer
        input loses its beginning, never its question (the tasks truncate on the left)."""
        if self.generated():
            return cell.seq_len
        tok = self.tokenizer(cell)
        if id(tok) not in self._ratios:
            import random

            sample = ruler.ruler_example("niah_single", random.Random(0), 2048)[0]
            tokens = len(tok(sample, add_special_tokens=False)["input_ids"])
            self._ratios[id(tok)] = max(1.0, tokens / len(sample.split()))
        return max(64, int((cell.seq_len - 16) / self._ratios[id(tok)]))

    def splits(self, task: str, seq_len: int | None = None, cell: Cell | None = None) -> dict[str, data_mod.Split]:
        """The task's train and validation splits, from the first of: ``--longeff-dataset`` (through ``datasets``,
        for every task), the RULER-style generator (per input length ``seq_len``), SCROLLS for the paper profile
        (``hubdata.load_scrolls``: data dir, earlier download, hub parquet, hub zips), ``--longeff-data-dir`` or
        generated data."""
        per_length = self.per_length(task)
        if per_length and seq_len is None:
            raise ValueError(f"task {task!r} is generated for each input length: pass seq_len")
        items = self.ruler_items(cell) if per_length and cell is not None else seq_len
        key = f"{task}-{items}" if per_length else f"{task}@{self.doc_words(seq_len)}"
        if key not in self._splits:
            s = self.settings
            if s.dataset:
                loaded = hubdata.load_user_dataset(s.dataset, dict(s.columns or ()), task, self.cache_dir)
            elif per_length:
                assert items is not None
                root = (self.cache_dir /
                        f"ruler-v{ruler.RULER_VERSION}-lexicon{data_mod.GENERATOR_VERSION}-seed{self.profile.seed}")
                loaded = ruler.load_ruler(root, task, items, self.profile.seed)
            elif self.profile.data == "scrolls":
                loaded = hubdata.load_scrolls(task, Path(s.data_dir) if s.data_dir else None, self.cache_dir)
            else:
                loaded = data_mod.load_task(self.task_root(task, seq_len), task)
            self._splits[key] = loaded
        return self._splits[key]

    def generated(self) -> bool:
        """Whether the session's data is the generator's (not the user's)."""
        return self.profile.data == "generated" and not self.settings.data_dir and not self.settings.dataset

    def tokenizer_tasks(self) -> tuple[str, ...]:
        """Tasks whose data is generated (the default four as well, so a cell's inputs do not change with the tasks
        selected) and whose training text an offline tokenizer learns on user data; for a ``--longeff-dataset``
        (the same rows for every task) one task."""
        if self.settings.dataset is not None:
            return self.settings.tasks[:1]
        if self.profile.data == "generated" and self.settings.data_dir is None:
            return tuple(t for t in dict.fromkeys((*DEFAULT_TASKS, *self.settings.tasks)) if not self.per_length(t))
        return tuple(t for t in self.settings.tasks if not self.per_length(t))

    def tokenizer(self, cell: Cell) -> Any:
        """The cell's tokenizer: the checkpoint's own for pretrained weights, the generator's fixed vocabulary on
        generated data, else one trained offline on the training splits of the session's tasks (shared by every
        cell, so one model serves every task)."""
        pretrained = self.profile.weights == "pretrained"
        key = f"{cell.family}-{cell.size}" if pretrained else "shared"
        if key not in self._tokenizers:
            if pretrained:
                from transformers import AutoTokenizer

                source = model_source(self.families[cell.family], cell.size, self.settings)
                tok = AutoTokenizer.from_pretrained(source)
                # Inputs are padded on the right and read as such (a decoder-only family's wrapper moves the padding
                # first itself); a decoder-only checkpoint's tokenizer often has no padding token: its end token
                # serves (every padded position is masked).
                tok.padding_side = "right"
                if tok.pad_token is None:
                    tok.pad_token = tok.eos_token
                self._tokenizers[key] = tok
            elif self.generated():
                self._tokenizers[key] = lexicon_tokenizer()  # the generator's fixed vocabulary
            else:
                self._tokenizers[key] = self._offline_tokenizer()
        return self._tokenizers[key]

    def _offline_tokenizer(self) -> Any:
        texts: list[str] = []
        key_parts: list[str] = []
        for task in self.tokenizer_tasks():
            try:
                split = self.splits(task)["train"]
            except DataError:
                continue  # that task's own cells report the problem; the others can still run
            texts.extend(r.input for r in split.rows)
            texts.extend(r.output for r in split.rows)
            key_parts.append(file_key(Path(split.path)))
        return cached_tokenizer(self.cache_dir / "tokenizers", "|".join(key_parts), texts)

    def target_end(self, cell: Cell, tok: Any) -> int | None:
        """For a decoder-only family's pretrained tokenizer: the end token every target is given (such tokenizers add
        a start token and no end token, so a model fine-tuned on their targets would never learn to stop); None
        where the tokenizer's own targets already end with one (the generator's tokenizer, encoder-decoders)."""
        from pytest_longeff.models.recent import is_decoder_only

        if self.profile.weights != "pretrained" or not is_decoder_only(self.families[cell.family]):
            return None
        return int(tok.eos_token_id)

    def data_key(self, task: str, seq_len: int | None = None, cell: Cell | None = None) -> str:
        """The version of the task's training split (path, size, modification time), for cache keys."""
        return file_key(Path(self.splits(task, seq_len, cell)["train"].path))

    def tokenizer_digest(self, cell: Cell) -> str:
        """A digest of the cell's tokenizer (its vocabulary sizes the embeddings, so it keys cached batch sizes)."""
        return self._digest(self.tokenizer(cell))

    def _digest(self, tok: Any) -> str:
        if id(tok) not in self._digests:
            backend = getattr(tok, "backend_tokenizer", None)
            text = backend.to_str() if backend is not None else repr(tok)
            self._digests[id(tok)] = hashlib.sha256(text.encode()).hexdigest()
        return self._digests[id(tok)]

    def tokenized(self, cell: Cell, task: TaskSpec, split_name: str, limit: int = 0,
                  rows: str = "examples") -> TokenizedSplit:
        """A split tokenised for the cell's length, cached per (tokenizer, task, split, length, limit, rows).

        ``rows="examples"``: one row per example (the training split keeps every row), labels padded as the
        profile says (:attr:`~pytest_longeff.profiles.Profile.label_padding`). ``rows="study"``: every row of the
        first ``limit`` examples (every reference is a row, as the study scored them), labels padded to the task's
        target length, for the study's teacher-forced scoring."""
        tok = self.tokenizer(cell)
        padding = "study" if rows == "study" else self.profile.label_padding
        target_end = self.target_end(cell, tok)
        key = (id(tok), task.name, split_name, cell.seq_len, limit, rows, padding)
        if key not in self._tokenized:
            split = self.splits(task.name, cell.seq_len, cell)[split_name]
            disk = self.cache_dir / "tokenized" / (hashlib.sha256(json.dumps(
                [self._digest(tok), file_key(Path(split.path)), split_name, cell.seq_len, limit,
                 task.max_target_tokens, rows, padding,
                 *([task.truncation] if task.truncation != "right" else []),
                 *([f"end {target_end}"] if target_end is not None else [])]).encode()).hexdigest()[:24] + ".pt")
            chosen = _rows(split, split_name, limit, rows)
            loaded = _load_tokenized(disk, Shape([r.id for r in chosen], cell.seq_len, task.max_target_tokens,
                                                 padding))
            if loaded is None:
                self.misses += 1
                loaded = _tokenize(tok, chosen, cell.seq_len, task.max_target_tokens, padding, task.truncation,
                                   target_end)
                _save_tokenized(disk, loaded)
                self._tokenized[key] = loaded
                return loaded
            self._tokenized[key] = loaded
        self.cache_hits += 1
        return self._tokenized[key]


def _rows(split: data_mod.Split, split_name: str, limit: int, rows: str) -> list[data_mod.Row]:
    """The rows a tokenised split holds (see :meth:`Inputs.tokenized`)."""
    if rows == "study":
        ids = list(dict.fromkeys(r.id for r in split.rows))
        keep = set(ids[:limit] if limit else ids)
        return [r for r in split.rows if r.id in keep]
    chosen = split.examples() if split_name != "train" else list(split.rows)
    return chosen[:limit] if limit else chosen


def _tokenize(tok: Any, rows: list[data_mod.Row], seq_len: int, max_target: int, padding: str,
              truncation: str = "right", target_end: int | None = None) -> TokenizedSplit:
    # "left": a long input loses its beginning, so a question at its end stays (the RULER-style tasks).
    side, tok.truncation_side = tok.truncation_side, truncation
    try:
        enc = tok([r.input for r in rows], max_length=seq_len, truncation=True, padding="max_length",
                  return_tensors="pt")
    finally:
        tok.truncation_side = side
    # "study": every target padded to the task's target length, as the study's preprocessing did.
    if target_end is not None:  # the target's own tokens, then the end token
        pieces = [tok(r.output, add_special_tokens=False, truncation=True, max_length=max_target - 1)["input_ids"]
                  + [target_end] for r in rows]
        width = max_target if padding == "study" else max(len(p) for p in pieces)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, piece in enumerate(pieces):
            labels[i, :len(piece)] = torch.tensor(piece, dtype=torch.long)
        return TokenizedSplit([r.id for r in rows], enc["input_ids"], enc["attention_mask"], labels,
                              int(enc["attention_mask"].sum()))
    tgt = tok([r.output for r in rows], max_length=max_target, truncation=True,
              padding="max_length" if padding == "study" else "longest", return_tensors="pt")
    labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
    return TokenizedSplit([r.id for r in rows], enc["input_ids"], enc["attention_mask"], labels,
                          int(enc["attention_mask"].sum()))


@dataclass(frozen=True)
class Shape:
    """What a cached tokenised split must be to serve a cell: these rows, inputs exactly ``seq_len`` wide (the
    tokenizer pads and truncates every input to the cell's length), labels padded as ``padding`` says (``study``:
    exactly ``max_target`` wide; ``longest``: as wide as the longest target, at most ``max_target``)."""

    ids: list[str]
    seq_len: int
    max_target: int
    padding: str


def _integer_matrix(value: object, rows: int, width: int | None) -> str | None:
    """What keeps ``value`` from being an integer tensor of ``rows`` x ``width`` (any width when None), or None."""
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}, not a tensor"
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        return f"of dtype {value.dtype}, not an integer dtype"
    if value.dim() != 2:
        return f"{value.dim()}-dimensional, not 2-dimensional"
    if value.shape[0] != rows or (width is not None and value.shape[1] != width):
        return f"of shape {tuple(value.shape)}, not ({rows}, {width if width is not None else 'any'})"
    return None


def tokenized_problem(blob: Mapping[str, object], shape: Shape) -> str | None:
    """What keeps a stored tokenised split from serving a cell of ``shape``, or None when it can."""
    if blob.get("ids") != shape.ids:
        return "its rows are not the split's (ids differ)"
    rows = len(shape.ids)
    for name, width in (("input_ids", shape.seq_len), ("attention_mask", shape.seq_len), ("labels", None)):
        problem = _integer_matrix(blob.get(name), rows, width)
        if problem is not None:
            return f"{name} is {problem} (the cell's input length is {shape.seq_len})"
    labels = blob["labels"]
    assert isinstance(labels, torch.Tensor)
    width = int(labels.shape[1])
    if shape.padding == "study" and width != shape.max_target:
        return f"labels are {width} wide, not the task's target length {shape.max_target} (label padding study)"
    # Padded to the longest target: some row's target reaches the last column.
    if shape.padding != "study" and (width > shape.max_target or (rows and not bool((labels[:, -1] != -100).any()))):
        return f"labels are {width} wide, not the longest target's width (label padding {shape.padding})"
    mask = blob["attention_mask"]
    assert isinstance(mask, torch.Tensor)
    tokens = blob.get("input_tokens")
    if type(tokens) is not int or tokens != int(mask.sum()):
        return f"input_tokens is {tokens!r}, not the attention mask's count {int(mask.sum())}"
    return None


def _load_tokenized(path: Path, shape: Shape) -> TokenizedSplit | None:
    """A tokenised split saved by an earlier run. One that cannot be read or does not fit the cell
    (:func:`tokenized_problem`) is a miss with a warning: removed, and rebuilt by the caller, never used."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True)
        problem = tokenized_problem(blob, shape) if isinstance(blob, dict) else f"a {type(blob).__name__}, not a dict"
    except Exception as exc:  # noqa: BLE001 - any unreadable cache entry is a miss, never a failure
        problem = f"it cannot be read ({type(exc).__name__})"
    if problem is not None:
        path.unlink(missing_ok=True)  # before the warning, which ``-W error`` raises: the bad entry never stays
        warnings.warn(f"tokenised inputs cache {path} ignored: {problem}; rebuilding it", LongeffWarning,
                      stacklevel=2)
        return None
    return TokenizedSplit(list(blob["ids"]), blob["input_ids"], blob["attention_mask"], blob["labels"],
                          blob["input_tokens"])


def _save_tokenized(path: Path, split: TokenizedSplit) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.part")  # workers may share the cache
    torch.save({"ids": split.ids, "input_ids": split.input_ids, "attention_mask": split.attention_mask,
                "labels": split.labels, "input_tokens": split.input_tokens}, tmp)
    tmp.replace(path)

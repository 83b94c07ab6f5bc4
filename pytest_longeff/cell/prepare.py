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
from pytest_longeff.data import scrolls as data_mod
from pytest_longeff.data.tokenizer import cached_tokenizer, lexicon_tokenizer
from pytest_longeff.errors import DataError, LongeffWarning
from pytest_longeff.matrix import DEFAULT_TASKS, Cell

if TYPE_CHECKING:
    from pytest_longeff.config.settings import Settings
    from pytest_longeff.models.families import Family
    from pytest_longeff.profiles import Profile
    from pytest_longeff.tasks.specs import TaskSpec


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

    def task_root(self, task: str) -> Path:
        """The folder holding ``<task>/{train,validation}.jsonl`` for generated-data profiles: ``--longeff-data-dir``
        when given, else the generated data (written once under the cache)."""
        if self.settings.data_dir:
            return Path(self.settings.data_dir)
        root = self.cache_dir / f"generated-v{data_mod.GENERATOR_VERSION}-seed{self.profile.seed}"
        return data_mod.write_generated(root, self.tokenizer_tasks(), self.profile.seed)

    def splits(self, task: str) -> dict[str, data_mod.Split]:
        """The task's train and validation splits, from the first of: ``--longeff-dataset`` (through ``datasets``,
        for every task), SCROLLS for the paper profile (``hubdata.load_scrolls``: data dir, earlier download, hub
        parquet, hub zips), ``--longeff-data-dir`` or generated data."""
        if task not in self._splits:
            s = self.settings
            if s.dataset:
                loaded = hubdata.load_user_dataset(s.dataset, dict(s.columns or ()), task, self.cache_dir)
            elif self.profile.data == "scrolls":
                loaded = hubdata.load_scrolls(task, Path(s.data_dir) if s.data_dir else None, self.cache_dir)
            else:
                loaded = data_mod.load_task(self.task_root(task), task)
            self._splits[task] = loaded
        return self._splits[task]

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
            return tuple(dict.fromkeys((*DEFAULT_TASKS, *self.settings.tasks)))
        return self.settings.tasks

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
                self._tokenizers[key] = AutoTokenizer.from_pretrained(source)
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

    def data_key(self, task: str) -> str:
        """The version of the task's training split (path, size, modification time), for cache keys."""
        return file_key(Path(self.splits(task)["train"].path))

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
        key = (id(tok), task.name, split_name, cell.seq_len, limit, rows, padding)
        if key not in self._tokenized:
            split = self.splits(task.name)[split_name]
            disk = self.cache_dir / "tokenized" / (hashlib.sha256(json.dumps(
                [self._digest(tok), file_key(Path(split.path)), split_name, cell.seq_len, limit,
                 task.max_target_tokens, rows, padding]).encode()).hexdigest()[:24] + ".pt")
            chosen = _rows(split, split_name, limit, rows)
            loaded = _load_tokenized(disk, Shape([r.id for r in chosen], cell.seq_len, task.max_target_tokens,
                                                 padding))
            if loaded is None:
                self.misses += 1
                loaded = _tokenize(tok, chosen, cell.seq_len, task.max_target_tokens, padding)
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


def _tokenize(tok: Any, rows: list[data_mod.Row], seq_len: int, max_target: int, padding: str) -> TokenizedSplit:
    enc = tok([r.input for r in rows], max_length=seq_len, truncation=True, padding="max_length",
              return_tensors="pt")
    # "study": every target padded to the task's target length, as the study's preprocessing did.
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

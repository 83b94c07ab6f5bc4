"""SCROLLS-format data: reading JSONL splits, unpacking the SCROLLS zips, and generating the offline data.

A split is a JSONL file of rows ``{"id", "pid", "input", "output"}``; a task with several references has several
rows with the same ``id``. Layout on disk: ``DIR/<task>/train.jsonl`` and ``DIR/<task>/validation.jsonl``. Data read
through the ``datasets`` library (the hub's SCROLLS parquet, users' own datasets) lives in ``hubdata``.
"""

from __future__ import annotations

import json
import os
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_longeff.errors import DataError

SPLITS: tuple[str, ...] = ("train", "validation")
FIELDS: tuple[str, ...] = ("id", "pid", "input", "output")
GENERATOR_VERSION = 2  # bump when generated data changes, so caches keyed on it are rebuilt


@dataclass(frozen=True)
class Row:
    """One SCROLLS row: an input and one of its references."""

    id: str
    pid: str
    input: str
    output: str


@dataclass(frozen=True)
class Split:
    """The rows of one split of one task."""

    task: str
    name: str
    rows: tuple[Row, ...]
    path: str

    def examples(self) -> list[Row]:
        """One row per distinct ``id`` (its first reference), in file order: what the model reads."""
        seen: dict[str, Row] = {}
        for row in self.rows:
            seen.setdefault(row.id, row)
        return list(seen.values())

    def references(self) -> dict[str, list[str]]:
        """Every reference of every ``id``, in file order, without duplicates."""
        refs: dict[str, list[str]] = {}
        for row in self.rows:
            group = refs.setdefault(row.id, [])
            if row.output not in group:
                group.append(row.output)
        return refs


def read_jsonl(path: Path, task: str, split: str) -> Split:
    """Read one split, refusing malformed lines and missing fields with the file and line in the message."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected SCROLLS JSONL for task {task!r}, split {split!r})")
    rows: list[Row] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object with fields {', '.join(FIELDS)}")
            missing = [f for f in FIELDS if f not in obj]
            if missing:
                raise DataError(
                    f"{path}:{lineno}: missing field(s) {', '.join(missing)}; each row needs {', '.join(FIELDS)}"
                )
            bad = [f for f in FIELDS if not isinstance(obj[f], str)]
            if bad:
                raise DataError(f"{path}:{lineno}: field(s) {', '.join(bad)} must be strings")
            rows.append(Row(obj["id"], obj["pid"], obj["input"], obj["output"]))
    if not rows:
        raise DataError(f"{path}: no rows (an empty split cannot be trained or scored)")
    return Split(task, split, tuple(rows), str(path))


def load_task(root: Path, task: str) -> dict[str, Split]:
    """Load ``root/<task>/{train,validation}.jsonl``."""
    folder = root / task
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no folder for task {task!r}; --longeff-data-dir must hold <task>/train.jsonl and "
            f"<task>/validation.jsonl for every task in the matrix (or narrow it with --longeff-tasks)"
        )
    return {split: read_jsonl(folder / f"{split}.jsonl", task, split) for split in SPLITS}


def extract_scrolls_zip(zip_path: Path, dest: Path, task: str) -> Path:
    """Unpack a SCROLLS task zip (``<task>/{train,validation,test}.jsonl``, or the files at its top) into
    ``dest/<task>/`` and return that folder."""
    out = dest / task
    out.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = {Path(name).name: name for name in zf.namelist() if name.endswith(".jsonl")}
            for split in SPLITS:
                name = members.get(f"{split}.jsonl")
                if name is None:
                    raise DataError(f"{zip_path}: no {split}.jsonl inside (is it a SCROLLS task zip?)")
                tmp = out / f".{split}.jsonl.{os.getpid()}.part"
                with zf.open(name) as src, tmp.open("wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                tmp.replace(out / f"{split}.jsonl")
    except zipfile.BadZipFile:
        raise DataError(f"{zip_path}: not a zip file (a partial download? delete it and run again)") from None
    return out


def hub_offline() -> str | None:
    """The variable that puts the hub offline, read now (the hub libraries read it once, at their import)."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return name
    return None


def write_rows(path: Path, rows: Sequence[Row]) -> Path:
    """Write rows as SCROLLS JSONL, atomically (temp file, then rename: workers may share the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.part"
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({"id": row.id, "pid": row.pid, "input": row.input, "output": row.output}))
            fh.write("\n")
    tmp.replace(path)
    return path


def fetch_scrolls(task: str, cache_dir: Path, mirror: Path | None = None) -> Path:
    """Make ``cache_dir/<task>/`` hold the task's splits, from a local zip (``mirror/<task>.zip``) when given,
    else from the SCROLLS zips on the Hugging Face hub (the loading script does not run on datasets 5)."""
    folder = cache_dir / task
    if all((folder / f"{s}.jsonl").is_file() for s in SPLITS):
        return folder
    if mirror is not None and (mirror / f"{task}.zip").is_file():
        return extract_scrolls_zip(mirror / f"{task}.zip", cache_dir, task)
    offline = hub_offline()
    if offline:
        raise DataError(
            f"could not download SCROLLS {task}.zip: {offline} is set (the hub is off); put {task}.zip or "
            f"{task}/train.jsonl and {task}/validation.jsonl under --longeff-data-dir, or unset {offline}"
        )
    try:
        from huggingface_hub import hf_hub_download

        zip_path = hf_hub_download(repo_id="tau/scrolls", filename=f"{task}.zip", repo_type="dataset")
    except Exception as exc:  # noqa: BLE001 - the hub client raises many types; all mean "could not get it"
        raise DataError(
            f"could not download SCROLLS {task}.zip from the hub ({type(exc).__name__}: {exc}); without network, "
            f"put {task}.zip or {task}/train.jsonl and {task}/validation.jsonl under --longeff-data-dir"
        ) from None
    return extract_scrolls_zip(Path(zip_path), cache_dir, task)


# ---------------------------------------------------------------------------------------------------------------
# Generated data (the tiny and dims profiles)
# ---------------------------------------------------------------------------------------------------------------
#
# Version 2 is built so that reading more pays: every document carries one fact per slot (12 slots, spread
# evenly through its 4,000 words), each fact's value is drawn fresh for every document from that slot's pool, and
# the targets list the values in document order. A value cannot be guessed (one in POOL_SIZE), only copied, and a
# model that reads the first L tokens can copy about the share of facts that lies in them. The vocabulary is fixed
# (LEXICON_SEED, never the run's seed), so the shipped tiny checkpoints and their tokenizer serve every seed.

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
LEXICON_SEED = 20220415
DOC_WORDS = 4000  # every fact lies within the longest default input (4096 tokens, one token per word)
LONG_DOC_WORDS = 30000  # for matrices with inputs beyond 4096 tokens: every fact within 32,768 tokens
N_TRAIN, N_VALIDATION = 48, 8
N_SLOTS = 12
POOL_SIZE = 40
ORDINALS: tuple[str, ...] = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
                             "tenth", "eleventh", "twelfth")
FUNCTION_WORDS: tuple[str, ...] = ("the", "record", "notes", "we", "saw", "what", "is", "said", "recorded",
                                   "which", "onwards", "(", ")", "a", "b", "c", "d", ".", ":", "?")
assert len(ORDINALS) == N_SLOTS


def _words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


@dataclass(frozen=True)
class Lexicon:
    """Every word the generator writes: filler, one pool of values per slot, speakers."""

    filler: tuple[str, ...]
    pools: tuple[tuple[str, ...], ...]
    speakers: tuple[str, ...]

    def vocabulary(self) -> list[str]:
        """Every word, in a fixed order (the shipped tokenizer's ids follow it)."""
        return [*FUNCTION_WORDS, *ORDINALS, *self.filler, *(w for pool in self.pools for w in pool), *self.speakers]


def lexicon() -> Lexicon:
    """The generator's fixed vocabulary."""
    rng = random.Random(LEXICON_SEED)
    taken: set[str] = set(FUNCTION_WORDS) | set(ORDINALS)
    return Lexicon(
        filler=tuple(_words(rng, 300, 2, taken)),
        pools=tuple(tuple(_words(rng, POOL_SIZE, 3, taken)) for _ in range(N_SLOTS)),
        speakers=tuple(_words(rng, 8, 3, taken)),
    )


def _document(rng: random.Random, values: Sequence[str], lex: Lexicon, speakers: bool, doc_words: int) -> str:
    """Filler sentences with one fact sentence per value at places spread evenly (with jitter) through the whole
    document, so an input truncated to fewer tokens sees fewer of the facts."""
    n = len(values)
    anchors = [int(doc_words * (i + rng.uniform(0.1, 0.9)) / n) for i in range(n)]
    words: list[str] = []
    k = 0
    while len(words) < doc_words:
        if k < n and len(words) >= anchors[k]:
            sentence = ["we", "saw", values[k], "."] if speakers else ["the", "record", "notes", values[k], "."]
            k += 1
        else:
            sentence = [rng.choice(lex.filler) for _ in range(rng.randint(5, 11))] + ["."]
        if speakers:
            sentence = [rng.choice(lex.speakers), ":", *sentence]
        words.extend(sentence)
    return " ".join(words)


def _example(task: str, rng: random.Random, lex: Lexicon, doc_words: int) -> list[tuple[str, str]]:
    """One generated example: its input and its references (the first one is the training target)."""
    values = [rng.choice(pool) for pool in lex.pools]
    if task == "summ_screen_fd":
        doc = _document(rng, values, lex, speakers=True, doc_words=doc_words)
        return [(doc, " ".join(values))]
    if task == "qmsum":
        # The query asks for the facts from one slot onwards; the target names the slot, then its values in order.
        first = rng.randrange(N_SLOTS // 2)
        query = f"{ORDINALS[first]} onwards : what is said ?"
        doc = _document(rng, values, lex, speakers=True, doc_words=doc_words)
        return [(f"{query}\n\n{doc}", " ".join([ORDINALS[first], *values[first:]]))]
    if task in ("qasper", "narrative_qa"):
        i = rng.randrange(N_SLOTS)
        query = f"{ORDINALS[i]} : what is recorded ?"
        doc = _document(rng, values, lex, speakers=False, doc_words=doc_words)
        # Several references per id, as in SCROLLS' QA tasks: the value, and a sentence around it.
        text = f"{query}\n\n{doc}"
        return [(text, values[i]), (text, f"the {ORDINALS[i]} is {values[i]}")]
    if task in ("quality", "contract_nli"):
        i = rng.randrange(N_SLOTS)
        options = [values[i], *rng.sample([v for v in lex.pools[i] if v != values[i]], 3)]
        rng.shuffle(options)
        query = f"{ORDINALS[i]} : which is recorded ? " + " ".join(
            f"( {letter} ) {o}" for letter, o in zip("abcd", options, strict=True))
        doc = _document(rng, values, lex, speakers=False, doc_words=doc_words)
        return [(f"{query}\n\n{doc}", values[i])]
    # gov_report and any other summarization task: every value, in document order.
    doc = _document(rng, values, lex, speakers=False, doc_words=doc_words)
    return [(doc, " ".join(values))]


def generate_task(task: str, seed: int = 0, n_train: int = N_TRAIN, n_validation: int = N_VALIDATION,
                  doc_words: int = DOC_WORDS) -> dict[str, list[Row]]:
    """Deterministic SCROLLS-format rows for ``task`` (same seed, same rows, on every machine)."""
    lex = lexicon()
    out: dict[str, list[Row]] = {}
    for split, n in (("train", n_train), ("validation", n_validation)):
        rng = random.Random(f"{seed}-{task}-{split}")
        rows: list[Row] = []
        for k in range(n):
            ex_id = f"{task}-{split}-{k:04d}"
            for text, ref in _example(task, rng, lex, doc_words):
                rows.append(Row(ex_id, ex_id, text, ref))
        out[split] = rows
    return out


def generate_examples(task: str, seed: str, n: int, doc_words: int) -> list[tuple[str, str]]:
    """``n`` (input, target) pairs of ``task`` from a named seed stream (pretraining draws from streams the
    benchmark's splits never use), documents of ``doc_words`` words."""
    lex = lexicon()
    rng = random.Random(f"pretrain-{seed}-{task}")
    return [_example(task, rng, lex, doc_words)[0] for _ in range(n)]


def write_generated(root: Path, tasks: Sequence[str], seed: int = 0, doc_words: int = DOC_WORDS) -> Path:
    """Write generated splits to ``root/<task>/<split>.jsonl`` (atomically; existing ones are reused)."""
    for task in tasks:
        folder = root / task
        if all((folder / f"{s}.jsonl").is_file() for s in SPLITS):
            continue
        for split, rows in generate_task(task, seed, doc_words=doc_words).items():
            write_rows(folder / f"{split}.jsonl", rows)
    return root

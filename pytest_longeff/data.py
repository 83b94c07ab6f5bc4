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
GENERATOR_VERSION = 1  # bump when generated data changes, so caches keyed on it are rebuilt


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

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
DOC_WORDS = 5200  # longer than the longest default input (4096 tokens, one token per word)
N_TRAIN, N_VALIDATION = 48, 8
FACTS_PER_DOC = 6


def _words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


@dataclass(frozen=True)
class _Lexicon:
    entities: list[str]
    attributes: list[str]
    filler: list[str]
    speakers: list[str]
    places: list[str]


def _lexicon(seed: int) -> _Lexicon:
    rng = random.Random(seed)
    taken: set[str] = {"the", "is", "what", "said", "about", "goes", "to"}
    return _Lexicon(
        entities=_words(rng, 40, 3, taken),
        attributes=_words(rng, 40, 2, taken),
        filler=_words(rng, 300, 2, taken),
        speakers=_words(rng, 8, 3, taken),
        places=_words(rng, 30, 2, taken),
    )


def _filler_sentence(rng: random.Random, lex: _Lexicon) -> list[str]:
    return [rng.choice(lex.filler) for _ in range(rng.randint(5, 11))] + ["."]


def _document(rng: random.Random, facts: Sequence[list[str]], lex: _Lexicon, speakers: bool) -> str:
    """Filler sentences with the fact sentences at positions spread evenly (with jitter) through the whole
    document, so an input truncated to fewer tokens sees fewer of the facts."""
    n = len(facts)
    anchors = sorted(int(DOC_WORDS * (i + rng.uniform(0.1, 0.9)) / n) for i in range(n))
    words: list[str] = []
    k = 0
    while len(words) < DOC_WORDS:
        if k < n and len(words) >= anchors[k]:
            sentence = list(facts[k])
            k += 1
        else:
            sentence = _filler_sentence(rng, lex)
        if speakers:
            sentence = [rng.choice(lex.speakers), ":", *sentence]
        words.extend(sentence)
    return " ".join(words)


def _example(task: str, rng: random.Random, lex: _Lexicon) -> list[tuple[str, str]]:
    """One generated example: its input and its references."""
    entities = rng.sample(lex.entities, FACTS_PER_DOC)
    if task == "summ_screen_fd":
        facts = [[e, "goes", "to", rng.choice(lex.places), "."] for e in entities]
        doc = _document(rng, facts, lex, speakers=True)
        return [(doc, " ".join(w for f in facts for w in f))]
    facts = [[e, "is", rng.choice(lex.attributes), "."] for e in entities]
    if task == "qmsum":
        # The query asks about two entities; the target keeps their facts in document order.
        asked = sorted(rng.sample(range(FACTS_PER_DOC), 2))
        query = "what is said about " + " and ".join(entities[i] for i in asked) + " ?"
        doc = _document(rng, facts, lex, speakers=True)
        return [(f"{query}\n\n{doc}", " ".join(w for i in asked for w in facts[i]))]
    if task in ("qasper", "narrative_qa"):
        i = rng.randrange(FACTS_PER_DOC)
        query = f"what is {entities[i]} ?"
        doc = _document(rng, facts, lex, speakers=False)
        answer = facts[i][2]
        # Several references per id, as in SCROLLS' QA tasks: a short and a longer phrasing.
        return [(f"{query}\n\n{doc}", answer), (f"{query}\n\n{doc}", f"{entities[i]} is {answer}")]
    if task in ("quality", "contract_nli"):
        i = rng.randrange(FACTS_PER_DOC)
        options = [facts[i][2], *rng.sample([a for a in lex.attributes if a != facts[i][2]], 3)]
        rng.shuffle(options)
        letters = "abcd"
        query = f"what is {entities[i]} ? " + " ".join(f"( {letters[j]} ) {o}" for j, o in enumerate(options))
        doc = _document(rng, facts, lex, speakers=False)
        return [(f"{query}\n\n{doc}", options[options.index(facts[i][2])])]
    # gov_report and any other summarization task: every fact, in document order.
    doc = _document(rng, facts, lex, speakers=False)
    return [(doc, " ".join(w for f in facts for w in f))]


def generate_task(task: str, seed: int = 0, n_train: int = N_TRAIN, n_validation: int = N_VALIDATION) -> dict[
    str, list[Row]
]:
    """Deterministic SCROLLS-format rows for ``task`` (same seed, same rows, on every machine)."""
    lex = _lexicon(seed)
    out: dict[str, list[Row]] = {}
    for split, n in (("train", n_train), ("validation", n_validation)):
        rng = random.Random(f"{seed}-{task}-{split}")
        rows: list[Row] = []
        for k in range(n):
            ex_id = f"{task}-{split}-{k:04d}"
            for text, ref in _example(task, rng, lex):
                rows.append(Row(ex_id, ex_id, text, ref))
        out[split] = rows
    return out


def write_generated(root: Path, tasks: Sequence[str], seed: int = 0) -> Path:
    """Write generated splits to ``root/<task>/<split>.jsonl`` (atomically; existing ones are reused)."""
    for task in tasks:
        folder = root / task
        if all((folder / f"{s}.jsonl").is_file() for s in SPLITS):
            continue
        for split, rows in generate_task(task, seed).items():
            write_rows(folder / f"{split}.jsonl", rows)
    return root

"""Long-context tasks in the style of RULER (Hsieh et al. 2024, "RULER: What's the real context size of your
long-context language models?"), generated offline from the generator's fixed lexicon.

RULER sizes every example to the length under test: the haystack fills the input up to the question, and the
needles sit at depths spread through it. So these tasks are generated per input length (``<task>-<seq_len>``
folders), each input exactly one cell's length in tokens, the question last. Every word of the lexicon is one token of
the generator's tokenizer, as is each punctuation mark, so a text's length in tokens is its count of
whitespace-separated items plus the end token.

Tasks (RULER's names in brackets):

* ``niah_single`` [niah_single]: one needle "the record notes KEY is VALUE ." in filler; asked KEY, answer VALUE.
* ``niah_multikey`` [niah_multikey]: four needles with different keys; asked one of them.
* ``niah_multivalue`` [niah_multivalue]: four needles with the same key and different values; all four are asked.
* ``vt`` [vt]: variable tracking, one chain of four hops, "X1 is VALUE", "X2 is X1", ...; asked which names hold
  VALUE, answer all five names.
* ``fwe`` [fwe]: frequent-word extraction; the text is words drawn from a Zipf distribution (alpha 2); answer the
  three most frequent.
* ``qa_distractors`` [qa_1/qa_2]: paragraphs about speakers' numbered facts, one holding the answer and the others
  distractors of the same form; the question names a speaker and an ordinal.

Scoring follows RULER: ``ruler_all`` (its ``string_match_all``: the share of the reference's values found in the
prediction) for the first five, ``ruler_part`` (``string_match_part``: whether any reference is found) for QA;
values are matched as whole words, case-insensitively (RULER matches substrings; for its own one-token values the
two agree).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from pytest_longeff.data.scrolls import ORDINALS, Lexicon, Row, lexicon, load_task, write_rows

__all__ = ["RULER_TASKS", "RULER_VERSION", "generate_ruler", "ruler_example", "write_ruler"]

RULER_TASKS: tuple[str, ...] = ("niah_single", "niah_multikey", "niah_multivalue", "vt", "fwe", "qa_distractors")
RULER_VERSION = 1  # bump when the generated examples change
N_TRAIN, N_VALIDATION = 48, 8
NEEDLES = 4  # multikey: needles in all (one asked); multivalue: values of the one key
HOPS = 4  # variable tracking: names after the first
FWE_TOP, FWE_ALPHA, FWE_WORDS = 3, 2.0, 60


def _keys(lex: Lexicon) -> list[str]:
    return [w for pool in lex.pools[:6] for w in pool]


def _values(lex: Lexicon) -> list[str]:
    return [w for pool in lex.pools[6:] for w in pool]


def _filler(rng: random.Random, lex: Lexicon, words: int) -> list[list[str]]:
    """Filler sentences of exactly ``words`` tokens in all, each ending with ``.`` (the last one shorter when the
    count asks for it)."""
    sentences: list[list[str]] = []
    left = words
    while left > 0:
        n = min(rng.randint(5, 11), left - 1)
        sentences.append([rng.choice(lex.filler) for _ in range(n)] + ["."])
        left -= n + 1
    return sentences


def _haystack(rng: random.Random, lex: Lexicon, needles: list[list[str]], budget: int) -> list[str]:
    """Filler with the ``needles`` (sentences, kept in their order) inserted between sentences at random depths,
    exactly ``budget`` tokens in all."""
    need = sum(len(n) for n in needles)
    if need > budget:
        raise ValueError(f"an input of {budget} tokens cannot hold the task's {need} tokens of needles")
    sentences = _filler(rng, lex, budget - need)
    slots = sorted(rng.randrange(len(sentences) + 1) for _ in needles)
    out: list[str] = []
    k = 0
    for i in range(len(sentences) + 1):
        while k < len(needles) and slots[k] == i:
            out.extend(needles[k])
            k += 1
        if i < len(sentences):
            out.extend(sentences[i])
    return out


def _fill(rng: random.Random, lex: Lexicon, needles: list[list[str]], question: list[str],
          tokens: int) -> str:
    """The input: haystack with the needles, then the question, ``tokens`` tokens in all with the end token."""
    budget = tokens - len(question) - 1
    return " ".join([*_haystack(rng, lex, needles, budget), *question])


def ruler_example(task: str, rng: random.Random, tokens: int, lex: Lexicon | None = None) -> tuple[str, str]:
    """One example of ``task`` whose input is ``tokens`` tokens long (the end token included): (input, target).
    The target lists every value the metric looks for, separated by spaces."""
    lex = lex or lexicon()
    keys, values = _keys(lex), _values(lex)
    if task == "niah_single":
        key, value = rng.choice(keys), rng.choice(values)
        needle = ["the", "record", "notes", key, "is", value, "."]
        return _fill(rng, lex, [needle], ["what", "is", key, "?"], tokens), value
    if task == "niah_multikey":
        chosen = rng.sample(keys, NEEDLES)
        vals = [rng.choice(values) for _ in chosen]
        needles = [["the", "record", "notes", k, "is", v, "."] for k, v in zip(chosen, vals, strict=True)]
        rng.shuffle(needles)
        asked = rng.randrange(NEEDLES)
        return _fill(rng, lex, needles, ["what", "is", chosen[asked], "?"], tokens), vals[asked]
    if task == "niah_multivalue":
        key = rng.choice(keys)
        vals = rng.sample(values, NEEDLES)
        needles = [["the", "record", "notes", key, "is", v, "."] for v in vals]
        return _fill(rng, lex, needles, ["what", "is", "said", key, "?"], tokens), " ".join(vals)
    if task == "vt":
        names = rng.sample(keys, HOPS + 1)
        value = rng.choice(values)
        chain = [["the", "record", "notes", names[0], "is", value, "."]]
        chain += [["the", "record", "notes", names[i + 1], "is", names[i], "."] for i in range(HOPS)]
        return _fill(rng, lex, chain, ["which", "is", value, "?"], tokens), " ".join(names)
    if task == "fwe":
        vocab = rng.sample(list(lex.filler), FWE_WORDS)
        weights = [1.0 / (rank + 1) ** FWE_ALPHA for rank in range(FWE_WORDS)]
        question = ["which", "is", "said", "?"]
        for _ in range(20):  # drawn again while the third and fourth most frequent tie (the answer is ambiguous)
            words = rng.choices(vocab, weights=weights, k=tokens - len(question) - 1)
            counts = Counter(words).most_common()
            if len(counts) <= FWE_TOP or counts[FWE_TOP - 1][1] > counts[FWE_TOP][1]:
                break
        top = [w for w, _ in counts[:FWE_TOP]]
        return " ".join([*words, *question]), " ".join(top)
    if task == "qa_distractors":
        speakers = list(lex.speakers)
        facts = [(s, i, rng.choice(lex.pools[i])) for s in speakers for i in rng.sample(range(len(ORDINALS)), 2)]
        gold = rng.choice(facts)
        paragraphs = [[s, ":", "the", "record", "notes", "the", ORDINALS[i], "is", v, "."] for s, i, v in facts]
        rng.shuffle(paragraphs)
        question = [gold[0], ":", "the", ORDINALS[gold[1]], "is", "what", "?"]
        return _fill(rng, lex, paragraphs, question, tokens), gold[2]
    raise ValueError(f"unknown RULER-style task {task!r}; accepted: {', '.join(RULER_TASKS)}")


def generate_ruler(task: str, seq_len: int, seed: int = 0, n_train: int = N_TRAIN,
                   n_validation: int = N_VALIDATION) -> dict[str, list[Row]]:
    """Deterministic rows of ``task`` whose inputs are exactly ``seq_len`` tokens (same seed, same rows)."""
    lex = lexicon()
    out: dict[str, list[Row]] = {}
    for split, n in (("train", n_train), ("validation", n_validation)):
        rng = random.Random(f"ruler{RULER_VERSION}-{seed}-{task}-{seq_len}-{split}")
        rows = []
        for k in range(n):
            ex_id = f"{task}-{seq_len}-{split}-{k:04d}"
            text, target = ruler_example(task, rng, seq_len, lex)
            rows.append(Row(ex_id, ex_id, text, target))
        out[split] = rows
    return out


def write_ruler(root: Path, task: str, seq_len: int, seed: int = 0) -> Path:
    """Write ``root/<task>-<seq_len>/{train,validation}.jsonl`` once (reused when there) and return ``root``."""
    folder = root / f"{task}-{seq_len}"
    if not all((folder / f"{s}.jsonl").is_file() for s in ("train", "validation")):
        for split, rows in generate_ruler(task, seq_len, seed).items():
            write_rows(folder / f"{split}.jsonl", rows)
    return root


def load_ruler(root: Path, task: str, seq_len: int, seed: int = 0) -> dict[str, object]:
    """The generated splits of ``task`` at ``seq_len`` (written first when missing)."""
    return load_task(write_ruler(root, task, seq_len, seed), f"{task}-{seq_len}")

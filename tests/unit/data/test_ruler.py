"""The RULER-style tasks: exact input lengths, answers that a rule-based reader finds in the text (an independent
check that every example is answerable), determinism, and RULER's scoring."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from pytest_longeff.data.ruler import RULER_TASKS, generate_ruler, ruler_example
from pytest_longeff.data.scrolls import ORDINALS
from pytest_longeff.data.tokenizer import UNK_ID, lexicon_tokenizer
from pytest_longeff.tasks.metrics import score_predictions, string_match_all, string_match_part
from pytest_longeff.tasks.specs import BUILTIN_TASKS


def _solve(task: str, text: str) -> str:
    """Answer an example by reading its text with rules (no code of the generator's)."""
    words = text.split()
    question = text[text.rindex(" . ") + 3:] if " . " in text else text
    facts = re.findall(r"the record notes (\S+) is (\S+) \.", text)
    if task in ("niah_single", "niah_multikey"):
        key = question.split()[2]
        return " ".join(v for k, v in facts if k == key)
    if task == "niah_multivalue":
        key = question.split()[3]
        return " ".join(v for k, v in facts if k == key)
    if task == "vt":
        value = question.split()[2]
        names, frontier = [], {value}
        changed = True
        while changed:
            changed = False
            for k, v in facts:
                if v in frontier and k not in names:
                    names.append(k)
                    frontier.add(k)
                    changed = True
        return " ".join(names)
    if task == "fwe":
        counts = Counter(words[:-4])
        return " ".join(w for w, _ in counts.most_common(3))
    speaker, ordinal = question.split()[0], question.split()[3]
    found = re.search(rf"{speaker} : the record notes the {ordinal} is (\S+) \.", text)
    return found.group(1) if found else ""


@pytest.mark.parametrize("task", RULER_TASKS)
@pytest.mark.parametrize("tokens", [256, 1024, 4096])
def test_inputs_are_exactly_the_length_in_tokens_and_answerable(task: str, tokens: int) -> None:
    tok = lexicon_tokenizer()
    rng = random.Random(f"test-{task}-{tokens}")
    for _ in range(5):
        text, target = ruler_example(task, rng, tokens)
        ids = tok(text)["input_ids"]
        assert len(ids) == tokens
        assert UNK_ID not in ids and UNK_ID not in tok(target)["input_ids"]
        answer = _solve(task, text)
        assert string_match_all(answer, target) == 1.0, (answer, target)


def test_the_needle_depth_varies_over_the_haystack() -> None:
    depths = []
    rng = random.Random(3)
    for _ in range(40):
        text, target = ruler_example("niah_single", rng, 2048)
        depths.append(text.split().index(target) / 2048)
    assert min(depths) < 0.2 and max(depths) > 0.8


def test_generation_is_deterministic_and_sized_per_length() -> None:
    a, b = generate_ruler("vt", 512, seed=0), generate_ruler("vt", 512, seed=0)
    assert a == b
    assert generate_ruler("vt", 512, seed=1) != a
    assert len(a["train"]) == 48 and len(a["validation"]) == 8
    assert all(r.id.startswith("vt-512-") for r in a["train"])


def test_ruler_tasks_are_scored_as_ruler_scores_them() -> None:
    specs = {t.name: t for t in BUILTIN_TASKS}
    assert {specs[t].metric for t in RULER_TASKS} == {"ruler_all", "ruler_part"}
    assert specs["qa_distractors"].metric == "ruler_part"
    assert all(specs[t].truncation == "left" for t in RULER_TASKS)
    # string_match_all: the share of values found, as whole words, any order, ignoring case.
    assert string_match_all("Bada kitu", "kitu bada lomo sefi") == 0.5
    assert string_match_all("badaka", "bada") == 0.0  # a longer word is not the value
    assert string_match_part("it is Bada Kitu here", "bada kitu") == 1.0
    assert string_match_part("bada", "bada kitu") == 0.0
    refs = {"1": ["kitu bada"], "2": ["lomo"]}
    assert score_predictions("ruler_all", {"1": "kitu", "2": "lomo"}, refs)["score"] == 75.0
    assert score_predictions("ruler_part", {"1": "x", "2": "lomo"}, {"1": ["kitu"], "2": ["lomo"]})["score"] == 50.0


def test_qa_distractors_hold_one_gold_paragraph_among_many() -> None:
    text, target = ruler_example("qa_distractors", random.Random(5), 1024)
    paragraphs = re.findall(r"(\S+) : the record notes the (\S+) is (\S+) \.", text)
    assert len(paragraphs) >= 16
    assert sum(1 for _, _, v in paragraphs if v == target) >= 1
    assert all(o in ORDINALS for _, o, _ in paragraphs)


def test_values_are_found_next_to_punctuation_but_not_inside_words() -> None:
    assert string_match_all("Kavo.", "kavo") == 1.0
    assert string_match_all("kavo, dibu", "kavo dibu") == 1.0
    assert string_match_all("kavos", "kavo") == 0.0


def test_frequent_words_have_a_strict_top_three() -> None:
    rng = random.Random(11)
    for _ in range(60):
        text, target = ruler_example("fwe", rng, 256)
        counts = Counter(text.split()[:-4]).most_common()
        assert counts[2][1] > counts[3][1]
        assert target.split() == [w for w, _ in counts[:3]]

"""Tests for pytest_longeff.tasks.metrics: hand-computed values, SCROLLS aggregation rules and metric invariants."""

from __future__ import annotations

import dataclasses
import socket
import string
import subprocess
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pytest_longeff.tasks.metrics import (
    BUILTIN_METRICS,
    METRICS,
    ROUGE_TYPES,
    Metric,
    MetricSpec,
    exact_match,
    group_references,
    metric_table,
    normalize_answer,
    rouge_scores,
    score_predictions,
    token_f1,
)

# --- normalise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Cat, sat!", "cat sat"),
        ("An apple a day", "apple day"),
        # Articles go only as whole words.
        ("theatre another", "theatre another"),
        # Punctuation is deleted, not turned into a space (SQuAD order: punctuation before articles).
        ("re-run", "rerun"),
        ("the-end", "theend"),
        ("  \t\n ", ""),
        ("A. The! an?", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


# --- token F1


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # [cat, sat, on, mat] vs [cat, sat, on, hat]: 3 shared, P = R = 3/4.
        ("the cat sat on the mat", "a cat sat on a hat", 0.75),
        # [cat, sat] vs [cat, sat, on, mat]: 2 shared, P = 1, R = 1/2, F1 = 2 * 1/2 / (3/2) = 2/3.
        ("cat sat", "the cat sat on the mat", 2 / 3),
        # Multiset overlap: cat x3 vs cat x1 shares 1, P = 1/3, R = 1, F1 = (2/3) / (4/3) = 1/2.
        ("cat cat cat", "cat", 0.5),
        # Case, punctuation and articles do not count.
        ("The Cat!", "cat", 1.0),
        ("dog", "cat", 0.0),
        # SQuAD v1.1 / SCROLLS: an empty side gives 0, even when both are empty.
        ("", "cat", 0.0),
        ("cat", "", 0.0),
        ("", "", 0.0),
        ("the", "a", 0.0),
    ],
)
def test_token_f1(prediction: str, reference: str, expected: float) -> None:
    assert token_f1(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The Cat.", "cat", 1.0),
        ("cats", "cat", 0.0),
        ("cat sat", "sat cat", 0.0),
        # Both normalise to "": they are equal, unlike for token F1.
        ("The", "a.", 1.0),
    ],
)
def test_exact_match(prediction: str, reference: str, expected: float) -> None:
    assert exact_match(prediction, reference) == expected


# --- ROUGE


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # Unigrams: a, b, d shared of 4 each: P = R = 3/4.
        # Bigrams: pred ab, bc, cd vs ref ab, be, ed: 1 shared of 3 each: 1/3.
        # LCS "a b d" = 3 of 4 each: 3/4.
        ("a b c d", "a b e d", {"rouge1": 0.75, "rouge2": 1 / 3, "rougeL": 0.75}),
        # Pred [the, cat, sat] vs ref [the, cat, sat, on, the, mat] (ROUGE keeps articles).
        # Unigrams: 3 shared, P = 3/3, R = 3/6: F = 2/3.
        # Bigrams: pred {the cat, cat sat} vs 5 ref bigrams, 2 shared: P = 1, R = 2/5, F = 0.8 / 1.4 = 4/7.
        # LCS "the cat sat" = 3: P = 1, R = 1/2: F = 2/3.
        ("the cat sat", "the cat sat on the mat", {"rouge1": 2 / 3, "rouge2": 4 / 7, "rougeL": 2 / 3}),
        # "b a" vs "a b": both unigrams shared, no bigram shared, LCS 1 of 2.
        ("b a", "a b", {"rouge1": 1.0, "rouge2": 0.0, "rougeL": 0.5}),
        # The tokenizer lowercases and turns everything outside [a-z0-9] into a separator...
        ("Hello, World!", "hello world", {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}),
        # ...so accented letters vanish ("café" is "caf")...
        ("café", "caf", {"rouge1": 1.0, "rouge2": 0.0, "rougeL": 1.0}),
        # ...and a text with no [a-z0-9] at all has no tokens and scores 0, even against itself.
        ("日本語", "日本語", {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}),
        ("", "a b", {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}),
    ],
)
def test_rouge_scores(prediction: str, reference: str, expected: dict[str, float]) -> None:
    scores = rouge_scores(prediction, reference)
    assert set(scores) == set(ROUGE_TYPES)
    assert scores == pytest.approx(expected)


def test_scoring_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("metrics tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for metric in METRICS:
        assert score_predictions(metric, {"q": "the cat"}, {"q": ["the cat"]})["score"] == 100.0


def test_import_does_not_load_rouge_score() -> None:
    # The plugin loads in every pytest run; rouge_score drags NLTK in, so it must wait until ROUGE is scored.
    code = "import sys, pytest_longeff.tasks.metrics; print('rouge_score' in sys.modules, 'nltk' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.split() == ["False", "False"]


# --- aggregation


def test_metric_table() -> None:
    assert list(METRICS) == ["rouge", "f1", "exact_match", "ruler_all", "ruler_part"]
    for name, spec in METRICS.items():
        assert spec == MetricSpec(name)
        assert spec.higher_is_better
    with pytest.raises(dataclasses.FrozenInstanceError):
        METRICS["f1"].name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        METRICS["bleu"] = MetricSpec("bleu")  # type: ignore[index]


def test_f1_takes_best_reference_averages_ids_and_scales() -> None:
    predictions = {"q1": "cat sat", "q2": "blue", "q9": "ignored: no references"}
    references = {
        # vs "dog": 0; vs [cat, sat, on, mat]: P = 1, R = 1/2, F1 = 2/3. Best: 2/3.
        "q1": ["dog", "the cat sat on the mat"],
        "q2": ["Blue."],  # 1
        "q3": ["anything"],  # no prediction: scored as "", 0
    }
    result = score_predictions("f1", predictions, references)
    expected = 100 * (2 / 3 + 1 + 0) / 3  # 55.55...
    assert set(result) == {"f1", "score"}
    assert result["f1"] == pytest.approx(expected)
    assert result["score"] == result["f1"]


def test_exact_match_takes_best_reference() -> None:
    predictions = {"q1": "cat sat", "q2": "blue"}
    references = {"q1": ["dog", "Cat sat."], "q2": ["red"], "q3": ["x"]}  # 1, 0, 0 (missing)
    result = score_predictions("exact_match", predictions, references)
    assert set(result) == {"exact_match", "score"}
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["score"] == result["exact_match"]


def test_rouge_takes_best_reference_per_sub_metric_then_geometric_mean() -> None:
    predictions = {"x": "a b c d", "y": "p q"}
    references = {
        # vs "a b e d": rouge1 3/4, rouge2 1/3, rougeL 3/4 (see test_rouge_scores).
        # vs "c d": rouge1 2 shared, P = 2/4, R = 2/2, F = 2/3; rouge2 "c d" shared, P = 1/3, R = 1, F = 1/2;
        #   rougeL LCS 2, F = 2/3.
        # Best per sub-metric mixes the two references: rouge1 3/4, rouge2 1/2, rougeL 3/4.
        "x": ["a b e d", "c d"],
        "y": ["p q"],  # all 1
    }
    result = score_predictions("rouge", predictions, references)
    assert set(result) == {"rouge1", "rouge2", "rougeL", "score"}
    assert result["rouge1"] == pytest.approx(100 * (3 / 4 + 1) / 2)  # 87.5
    assert result["rouge2"] == pytest.approx(100 * (1 / 2 + 1) / 2)  # 75.0
    assert result["rougeL"] == pytest.approx(100 * (3 / 4 + 1) / 2)  # 87.5
    assert result["score"] == pytest.approx((87.5 * 75.0 * 87.5) ** (1 / 3))  # about 83.1


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("rouge", {"rouge1": 72.2222, "rouge2": 33.3333, "rougeL": 72.2222, "score": 55.8136}),
        ("f1", {"f1": 72.2222, "score": 72.2222}),
        ("exact_match", {"exact_match": 33.3333, "score": 33.3333}),
    ],
)
def test_matches_the_official_scrolls_docstring_example(metric: str, expected: dict[str, float]) -> None:
    # The worked example in tau/scrolls metrics/scrolls.py, whose outputs are rounded to 4 decimals. By hand:
    # "hello there" is best against "hello" (rouge1/F1 2/3, no shared bigram); "general kenobi" vs
    # "commander kenobi" gives rouge1/rougeL/F1 1/2 and rouge2 0; so rouge1 = (1 + 2/3 + 1/2) / 3.
    predictions = {"1": "exact match example", "2": "hello there", "3": "general kenobi"}
    references = {"1": ["exact match example"], "2": ["hello", "hi there"], "3": ["commander kenobi"]}
    result = score_predictions(metric, predictions, references)
    assert {key: round(value, 4) for key, value in result.items()} == expected


def test_rouge_score_is_zero_when_one_sub_metric_is_zero() -> None:
    # "b a" vs "a b": rouge1 1, rouge2 0, rougeL 1/2.
    result = score_predictions("rouge", {"x": "b a"}, {"x": ["a b"]})
    assert result == pytest.approx({"rouge1": 100.0, "rouge2": 0.0, "rougeL": 50.0, "score": 0.0})


def test_a_one_word_text_has_no_rouge2_so_its_rouge_score_is_zero() -> None:
    # No bigram on either side: rouge_score reports ROUGE-2 as 0, which zeroes the geometric mean.
    result = score_predictions("rouge", {"x": "lazy"}, {"x": ["lazy"]})
    assert result == {"rouge1": 100.0, "rouge2": 0.0, "rougeL": 100.0, "score": 0.0}


@pytest.mark.parametrize("metric", list(METRICS))
def test_missing_predictions_score_zero(metric: str) -> None:
    result = score_predictions(metric, {}, {"q1": ["the answer"], "q2": ["another one"]})
    assert all(value == 0.0 for value in result.values())


@pytest.mark.parametrize("metric", list(METRICS))
def test_perfect_predictions_score_exactly_100(metric: str) -> None:
    texts = {"q1": "the quick brown fox", "q2": "Jumps over 2 dogs.", "q3": "lazy dog"}
    result = score_predictions(metric, texts, {key: [value] for key, value in texts.items()})
    assert all(value == 100.0 for value in result.values()), result


def test_unknown_metric_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="'bleu'") as raised:
        score_predictions("bleu", {"q": "a"}, {"q": ["a"]})
    for name in METRICS:
        assert repr(name) in str(raised.value)


def test_no_references_is_an_error() -> None:
    with pytest.raises(ValueError, match="no references"):
        score_predictions("f1", {"q": "a"}, {})
    with pytest.raises(ValueError, match="'q'"):
        score_predictions("f1", {"q": "a"}, {"q": []})


def test_a_single_string_as_references_is_rejected() -> None:
    with pytest.raises(TypeError, match="'q'"):
        score_predictions("exact_match", {"q": "cat"}, {"q": "cat"})


def test_group_references_keeps_order_and_drops_duplicates() -> None:
    rows = [("b", "y"), ("a", "x"), ("b", "z"), ("a", "x"), ("b", "y"), ("a", "w")]
    grouped = group_references(rows)
    assert grouped == {"b": ["y", "z"], "a": ["x", "w"]}
    assert list(grouped) == ["b", "a"]
    assert group_references([]) == {}
    assert group_references(iter([("a", "x")])) == {"a": ["x"]}


# --- properties

# The first ROUGE call imports rouge_score and NLTK, which would trip hypothesis' per-example deadline.
_PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

_ids = st.sampled_from(["q1", "q2", "q3", "q4"])
_any_text = st.text(max_size=40)
# Words ROUGE keeps whole: ASCII letters and digits only.
_alnum_text = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=6), min_size=1, max_size=10
).map(" ".join)
_references = st.dictionaries(_ids, st.lists(_any_text, min_size=1, max_size=3), min_size=1)
_predictions = st.dictionaries(_ids, _any_text)


@_PROPERTY_SETTINGS
@given(metric=st.sampled_from(list(METRICS)), predictions=_predictions, references=_references)
def test_every_value_is_between_0_and_100(
    metric: str, predictions: dict[str, str], references: dict[str, list[str]]
) -> None:
    result = score_predictions(metric, predictions, references)
    assert all(0.0 <= value <= 100.0 for value in result.values()), result


@_PROPERTY_SETTINGS
@given(metric=st.sampled_from(list(METRICS)), texts=st.dictionaries(_ids, _alnum_text, min_size=1))
def test_a_prediction_equal_to_its_reference_scores_100(metric: str, texts: dict[str, str]) -> None:
    # A text made only of articles ("a an") normalises to nothing, and token F1 of two empty answers is 0.
    assume(all(normalize_answer(text) for text in texts.values()))
    if metric == "rouge":
        # A one-word text has no bigram, so ROUGE-2 and with it the geometric mean are 0 (tested above).
        assume(all(len(text.split()) >= 2 for text in texts.values()))
    result = score_predictions(metric, texts, {key: [value] for key, value in texts.items()})
    assert all(value == 100.0 for value in result.values()), result


@_PROPERTY_SETTINGS
@given(
    metric=st.sampled_from(list(METRICS)),
    predictions=_predictions,
    references=_references,
    extra_index=st.integers(min_value=0, max_value=3),
    extra_reference=_any_text,
)
def test_an_extra_reference_never_lowers_a_value(
    metric: str,
    predictions: dict[str, str],
    references: dict[str, list[str]],
    extra_index: int,
    extra_reference: str,
) -> None:
    extra_id = sorted(references)[extra_index % len(references)]
    before = score_predictions(metric, predictions, references)
    extended = {**references, extra_id: [*references[extra_id], extra_reference]}
    after = score_predictions(metric, predictions, extended)
    assert all(after[key] >= before[key] for key in before), (before, after)


@_PROPERTY_SETTINGS
@given(metric=st.sampled_from(list(METRICS)), predictions=_predictions, references=_references)
def test_a_repeated_reference_changes_nothing(
    metric: str, predictions: dict[str, str], references: dict[str, list[str]]
) -> None:
    doubled = {key: [*values, *values] for key, values in references.items()}
    assert score_predictions(metric, predictions, doubled) == score_predictions(
        metric, predictions, references
    )


# --- mutation-testing additions (see docs/validation/mutation.md)


def test_unknown_metric_message_is_exact() -> None:
    with pytest.raises(ValueError) as raised:
        score_predictions("bleu", {"q": "a"}, {"q": ["a"]})
    assert str(raised.value) == ("unknown metric 'bleu'; accepted metrics: 'rouge', 'f1', 'exact_match', 'ruler_all', "
                                 "'ruler_part'")


@pytest.mark.parametrize("reference", ["XXXX", "xxxx", "None"])
def test_a_missing_prediction_is_the_empty_string_not_a_placeholder(reference: str) -> None:
    # "" never matches a reference with tokens, whatever a placeholder would have matched.
    assert score_predictions("exact_match", {}, {"q": [reference]})["score"] == 0.0
    assert score_predictions("f1", {}, {"q": [reference]})["score"] == 0.0


def test_a_table_metric_is_scored_like_the_built_ins_and_only_with_its_table() -> None:
    def same_length(prediction: str, reference: str) -> float:
        return 1.0 if len(prediction) == len(reference) else 0.0

    with pytest.raises(ValueError) as builtin:
        metric_table({**BUILTIN_METRICS, "f1": same_length})
    assert str(builtin.value) == "metric 'f1' is built in and cannot be replaced"
    with pytest.raises(ValueError, match="non-empty"):
        metric_table({" padded ": same_length})
    with pytest.raises(ValueError, match="expected a function"):
        metric_table({"not_callable": 1.0})  # type: ignore[dict-item]
    table = metric_table({"same_length": same_length, **BUILTIN_METRICS})
    assert list(table) == ["rouge", "f1", "exact_match", "ruler_all", "ruler_part", "same_length"]  # built-ins first
    assert table["f1"] is BUILTIN_METRICS["f1"]
    with pytest.raises(TypeError):
        table["other"] = table["f1"]  # type: ignore[index]
    # "abc" vs ["xy", "xyz"]: best 1; "a" vs ["bb"]: 0; missing vs ["c"]: "" has length 0, so 0.
    references = {"q1": ["xy", "xyz"], "q2": ["bb"], "q3": ["c"]}
    result = score_predictions("same_length", {"q1": "abc", "q2": "a"}, references, table)
    assert result == pytest.approx({"same_length": 100 / 3, "score": 100 / 3})
    assert score_predictions("f1", {"q": "the cat"}, {"q": ["cat"]}, table) == score_predictions(
        "f1", {"q": "the cat"}, {"q": ["cat"]})
    # Not in the built-in table, nor in another table: nothing was registered anywhere else.
    for other in (BUILTIN_METRICS, metric_table(BUILTIN_METRICS)):
        with pytest.raises(ValueError, match="unknown metric 'same_length'"):
            score_predictions("same_length", {"q": "a"}, {"q": ["a"]}, other)
    assert list(METRICS) == list(BUILTIN_METRICS) == ["rouge", "f1", "exact_match", "ruler_all", "ruler_part"]


def test_a_metric_with_components_keeps_them() -> None:
    def halves(prediction: str, reference: str) -> dict[str, float]:
        return {"exact": exact_match(prediction, reference), "f": token_f1(prediction, reference)}

    table = metric_table({"both": Metric(("exact", "f"), halves, lambda averages: max(averages.values()))})
    result = score_predictions("both", {"q1": "the cat sat", "q2": "dog"}, {"q1": ["cat"], "q2": ["dog"]}, table)
    # q1: exact 0, F1 2/3 ("cat sat" against "cat"); q2: both 1. The headline is the larger average.
    assert result == pytest.approx({"exact": 50.0, "f": 250 / 3, "score": 250 / 3})
    with pytest.raises(ValueError, match=r"accepted metrics: 'both'$"):
        score_predictions("f1", {"q": "a"}, {"q": ["a"]}, table)


def test_no_module_level_mutable_table() -> None:
    from pytest_longeff.tasks import metrics

    constants = {"_DELETE_PUNCTUATION"}  # str.translate's deletion table
    assert not [name for name, value in vars(metrics).items()
                if isinstance(value, (dict, list, set)) and not name.startswith("__") and name not in constants]

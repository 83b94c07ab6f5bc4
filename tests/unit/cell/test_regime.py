"""The study's regime, checked against independent computations: every training step runs the same decoder
positions (so the batch-size probe covers the longest targets), the study's teacher-forced scoring and its
one-pass evaluation, and generation that is plain greedy whatever the checkpoint's own settings."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch

from pytest_longeff.cell.batch import probe_batch
from pytest_longeff.cell.budget import parse_train_budget
from pytest_longeff.cell.infer import generate, study_pass
from pytest_longeff.cell.prepare import TokenizedSplit, _rows, _tokenize
from pytest_longeff.cell.train import TrainPlan, batch_tensors, fine_tune
from pytest_longeff.data.scrolls import Row, Split
from pytest_longeff.data.tokenizer import EOS_ID, PAD_ID, lexicon_tokenizer
from pytest_longeff.models.families import BuiltModel, LEDFamily, build_model


def _split_with_targets(widths: list[int], vocab: int, length: int = 1024) -> TokenizedSplit:
    """Rows whose targets have ``widths`` tokens, labels padded with -100 to the longest, as tokenisation pads."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 200, (len(widths), length), generator=g)
    labels = torch.full((len(widths), max(widths)), -100)
    for i, w in enumerate(widths):
        labels[i, :w] = torch.randint(4, vocab, (w,), generator=g)
    return TokenizedSplit([f"r{i}" for i in range(len(widths))], ids, torch.ones_like(ids), labels,
                          len(widths) * length)


def test_every_batch_runs_the_splits_decoder_positions() -> None:
    split = _split_with_targets([3, 3, 9, 5], vocab=60, length=16)
    for index in ([0, 1], [2, 3], [0], [1, 3]):
        assert batch_tensors(split, index, "cpu")[2].shape[1] == split.decoder_positions == 9


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_probe_on_the_first_rows_covers_a_batch_of_the_longest_targets() -> None:
    """Guards the probe trimming labels to its own rows: with 8-token targets first and 128-token targets later, it
    read 137-152 MiB where a batch of the long targets took 491 MiB (the LM head's logits grow with the decoder
    positions), about 0.3 of it. The batch of long targets is measured the same way, on its own. The bound leaves
    room for what a CPU reading moves by: 0.99-1.00 on a quiet machine (three pairs, each probe in a fresh
    process), 0.89-0.90 twice under the full test suite (in one process, and with each probe in a fresh process).
    A CPU peak moves in steps of one large buffer (here the long targets' logits, 98 MiB, about a fifth of it), so
    one probe of each side can read a step apart: the bound sits about half-way between the defect's 0.3 and 1."""
    from transformers import LEDConfig, LEDForConditionalGeneration

    vocab = 50265
    config = LEDConfig(vocab_size=vocab, d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                       decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, attention_window=[64],
                       max_encoder_position_embeddings=1024, max_decoder_position_embeddings=1024,
                       attn_implementation="eager")
    torch.manual_seed(0)
    built = BuiltModel(LEDFamily(), "base", LEDForConditionalGeneration(config), 0.0, "1+1-layer LED")
    split = _split_with_targets([8, 8, 8, 8, 128, 128, 128, 128], vocab)
    first = probe_batch(built, split, 4, "cpu")
    longest = TokenizedSplit(split.ids[4:], split.input_ids[4:], split.attention_mask[4:], split.labels[4:],
                             split.input_tokens // 2)
    long_only = probe_batch(built, longest, 4, "cpu")
    assert first >= 0.6 * long_only, (first, long_only)


def test_study_padding_pads_every_target_to_the_task_length_and_longest_to_the_split() -> None:
    tok = lexicon_tokenizer()
    rows = [Row("a", "a", "some input words", "one two"), Row("b", "b", "more input", "three four five six")]
    study = _tokenize(tok, rows, 32, 128, "study")
    longest = _tokenize(tok, rows, 32, 128, "longest")
    assert study.labels.shape == (2, 128) and study.decoder_positions == 128
    assert longest.decoder_positions == int((longest.labels != -100).sum(dim=1).max())
    assert torch.equal(study.labels[:, :longest.decoder_positions], longest.labels)
    assert (study.labels[:, longest.decoder_positions:] == -100).all()


def test_the_studys_rows_are_every_reference_of_the_scored_examples() -> None:
    rows = (Row("a", "p", "x", "ref a1"), Row("b", "p", "y", "ref b"), Row("a", "p", "x", "ref a2"),
            Row("c", "p", "z", "ref c"))
    split = Split("qasper", "validation", rows, "v.jsonl")
    assert [r.output for r in _rows(split, "validation", 2, "study")] == ["ref a1", "ref b", "ref a2"]
    assert [r.output for r in _rows(split, "validation", 2, "examples")] == ["ref a1", "ref b"]
    assert len(_rows(split, "validation", 0, "study")) == 4


def _tiny_led() -> BuiltModel:
    return build_model(LEDFamily(), "base", "tiny", len(lexicon_tokenizer()), 256, None, seed=0)


def _study_split(n: int = 3, width: int = 12) -> TokenizedSplit:
    tok = lexicon_tokenizer()
    rows = [Row(f"r{i}", f"r{i}", "the record notes we saw what " * (i + 2), "first second") for i in range(n)]
    return _tokenize(tok, rows, 64, width, "study")


def test_the_studys_scoring_decodes_the_argmax_at_every_padded_position() -> None:
    """Guards masking the argmax past each label: the study decoded all 128 positions, so whatever the model
    predicts after a short answer counted against it. Checked against a plain forward per row."""
    built, split, tok = _tiny_led(), _study_split(), lexicon_tokenizer()
    result = study_pass(built, split, tok, 2, "cpu")
    built.model.eval()
    expected_texts, expected_loss = [], 0.0
    with torch.no_grad():
        for i in range(len(split.ids)):
            ids, mask, labels = split.input_ids[i:i + 1], split.attention_mask[i:i + 1], split.labels[i:i + 1]
            out = built.model(**built.family.model_inputs(ids, mask), labels=labels)
            expected_loss += float(out.loss) / len(split.ids)
            expected_texts.append(tok.decode(out.logits.argmax(-1)[0], skip_special_tokens=True).strip())
    assert result.predictions == expected_texts
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    # An untrained model predicts words past the 2-token answer too: they are in the prediction.
    assert any(len(t.split()) > 2 for t in result.predictions)
    assert result.labels == ["first second"] * len(split.ids)


def test_a_study_evaluation_is_one_forward_per_batch() -> None:
    """Guards early stopping on the study metric running a loss pass and then a second teacher-forced pass."""
    built, split, tok = _tiny_led(), _study_split(n=4), lexicon_tokenizer()
    forwards: list[bool] = []
    built.model.register_forward_hook(lambda module, args, out: forwards.append(module.training))

    def study() -> tuple[float, float]:
        result = study_pass(built, split, tok, 2, "cpu")
        return result.loss, float(len(result.predictions))

    plan = TrainPlan(2, 1, parse_train_budget("epochs=1,patience=3,eval_every=1"), "cpu", 0, 1e-3,
                     study_evaluation=study)
    result = fine_tune(built, split, split, plan)
    evaluations = len(result.evals)
    assert evaluations >= 1 and all("validation_loss" in e and "study_score" in e for e in result.evals)
    assert forwards.count(False) == evaluations * 2  # 4 rows at batch 2: two forwards per evaluation


def _greedy(built: BuiltModel, ids: torch.Tensor, max_new: int) -> list[int]:
    """Greedy decoding by hand: one full forward per new token, argmax, stop after the end token."""
    start = built.model.config.decoder_start_token_id
    built.model.eval()
    out = [start]
    with torch.no_grad():
        for _ in range(max_new):
            logits = built.model(**built.family.model_inputs(ids, torch.ones_like(ids)),
                                 decoder_input_ids=torch.tensor([out])).logits
            out.append(int(logits[0, -1].argmax()))
            if out[-1] == EOS_ID:
                break
    return out


def test_generation_is_plain_greedy_whatever_the_checkpoint_ships() -> None:
    """Guards a checkpoint's generation_config (forced first token, no repeated n-grams, repetition penalty,
    minimum length) changing what and how much the suite generates."""
    built = _tiny_led()
    split = _study_split(n=1)
    expected = _greedy(built, split.input_ids[:1], 8)
    shipped: dict[str, Any] = {"forced_bos_token_id": 5 if expected[1] != 5 else 6, "no_repeat_ngram_size": 1,
                               "repetition_penalty": 4.0, "min_length": 8}
    for name, value in shipped.items():
        setattr(built.model.generation_config, name, value)
    result = generate(built, split, 1, 8, 1, "cpu")
    (index, out), = result.outputs
    tokens = [t for t in out[0].tolist()]
    while len(tokens) > len(expected) and tokens[-1] == PAD_ID:
        tokens.pop()
    assert tokens == expected
    assert all(getattr(built.model.generation_config, name, None) in (None, 0, 1.0) for name in shipped)

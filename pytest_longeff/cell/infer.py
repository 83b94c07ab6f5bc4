"""Inference: greedy generation timed per batch, decoding after the window, and the study's teacher-forced
scoring."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from pytest_longeff.cell.precision import FP32, Precision
from pytest_longeff.cell.train import batch_tensors
from pytest_longeff.measure.window import synchronize

if TYPE_CHECKING:
    from pytest_longeff.cell.phases import Timeline
    from pytest_longeff.cell.prepare import TokenizedSplit
    from pytest_longeff.models.families import BuiltModel


@dataclass
class InferResult:
    """Generation over the validation examples: one latency sample per batch, outputs decoded later."""

    batch_latencies_s: list[float]
    batch_sizes: list[int]
    passes: int
    predictions: dict[str, str] = field(default_factory=dict)
    generated_tokens: int = 0
    outputs: list[tuple[list[int], torch.Tensor]] = field(default_factory=list)


# The token ids a seq2seq model's generation needs; every other field of a checkpoint's generation config
# (min_length, no_repeat_ngram_size, repetition_penalty, forced tokens, beams, sampling) is left out, so generation
# is plain greedy whatever the checkpoint ships.
GENERATION_TOKEN_FIELDS = ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id")


def pin_generation(model: Any) -> dict[str, Any]:
    """Replace ``model.generation_config`` with plain greedy decoding that keeps only the checkpoint's token ids, and
    return the fields it sets (for the record). transformers fills whatever a ``generate()`` call leaves unset from
    the model's generation config, so the checkpoint's own settings are dropped there, not only overridden."""
    from transformers import GenerationConfig

    shipped = model.generation_config
    tokens = {name: getattr(shipped, name, None) if getattr(shipped, name, None) is not None
              else getattr(model.config, name, None) for name in GENERATION_TOKEN_FIELDS}
    tokens = {k: v for k, v in tokens.items() if v is not None}
    model.generation_config = GenerationConfig(**tokens)
    return {**tokens, "num_beams": 1, "do_sample": False}


@torch.no_grad()
def generate(built: BuiltModel, split: TokenizedSplit, batch_size: int, max_new_tokens: int, repeats: int,
             device: str, precision: Precision = FP32, fixed: bool = False,
             timelines: list[Timeline] | None = None) -> InferResult:
    """Greedy generation over ``split``, ``repeats`` times; each batch's wall time is one latency sample. ``fixed``:
    exactly ``max_new_tokens`` new tokens per row (the end token suppressed until then), so the time does not
    depend on when the model chooses to stop. ``timelines``: a list that receives each batch's token times
    (:mod:`pytest_longeff.cell.phases`)."""
    from pytest_longeff.cell.phases import Timeline, clock

    model = built.model
    model.eval()
    pin_generation(model)
    result = InferResult([], [], repeats)
    for _ in range(repeats):
        for start in range(0, len(split.ids), batch_size):
            index = list(range(start, min(start + batch_size, len(split.ids))))
            ids, mask, _ = batch_tensors(split, index, device)
            extra: dict[str, Any] = {}
            if timelines is not None:
                token_clock, extra["logits_processor"] = clock(device)
            if timelines is not None:
                token_clock.start()
            t0 = time.perf_counter()
            with precision.autocast():
                out = model.generate(**built.family.model_inputs(ids, mask), max_new_tokens=max_new_tokens,
                                     min_new_tokens=max_new_tokens if fixed else None, num_beams=1,
                                     do_sample=False, **extra)
            synchronize(device)
            t_end = time.perf_counter()
            result.batch_latencies_s.append(t_end - t0)
            if timelines is not None:
                timelines.append(Timeline(t0, token_clock.stamps(t0), t_end, len(index)))
            result.batch_sizes.append(len(index))
            result.outputs.append((index, out))
    return result


def decode_outputs(result: InferResult, split: TokenizedSplit, tokenizer: Any) -> None:
    """Fill in predictions and the count of generated tokens; called after the inference window closes, since
    decoding and counting are not inference."""
    for index, out in result.outputs:
        # New tokens: everything after the decoder-start token that is not padding (an end token counts).
        result.generated_tokens += int((out[:, 1:] != tokenizer.pad_token_id).sum())
        for i, text in zip(index, tokenizer.batch_decode(out, skip_special_tokens=True), strict=True):
            result.predictions[split.ids[i]] = text.strip()
    result.outputs = []


@dataclass
class StudyPass:
    """One teacher-forced pass over the study's rows: the mean loss, and the argmax texts beside each row's label."""

    loss: float
    predictions: list[str]
    labels: list[str]


@torch.no_grad()
def study_pass(built: BuiltModel, split: TokenizedSplit, tokenizer: Any, batch_size: int, device: str,
               precision: Precision = FP32) -> StudyPass:
    """The study's evaluation in one forward per batch: the loss, and the argmax of the logits at every one of the
    labels' padded positions (the study padded targets to 128 and decoded all of them, so whatever the model
    predicts past a short answer counts), beside each row's own label; ``split`` holds every validation row
    (:meth:`~pytest_longeff.cell.prepare.Inputs.tokenized` with ``rows="study"``). Texts are decoded without
    special tokens."""
    built.model.eval()
    result = StudyPass(0.0, [], [])
    total, n = 0.0, 0
    for start in range(0, len(split.ids), batch_size):
        index = list(range(start, min(start + batch_size, len(split.ids))))
        ids, mask, labels = batch_tensors(split, index, device)
        with precision.autocast():
            out = built.model(**built.family.model_inputs(ids, mask), labels=labels)
        total += float(out.loss) * len(index)
        n += len(index)
        tokens = out.logits.argmax(-1)
        result.predictions.extend(t.strip() for t in tokenizer.batch_decode(tokens, skip_special_tokens=True))
        gold = labels.masked_fill(labels == -100, tokenizer.pad_token_id)
        result.labels.extend(t.strip() for t in tokenizer.batch_decode(gold, skip_special_tokens=True))
    result.loss = total / max(n, 1)
    return result

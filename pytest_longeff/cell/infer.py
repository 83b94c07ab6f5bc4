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


@torch.no_grad()
def generate(built: BuiltModel, split: TokenizedSplit, batch_size: int, max_new_tokens: int, repeats: int,
             device: str, precision: Precision = FP32, fixed: bool = False) -> InferResult:
    """Greedy generation over ``split``, ``repeats`` times; each batch's wall time is one latency sample. ``fixed``:
    exactly ``max_new_tokens`` new tokens per row (the end token suppressed until then), so the time does not
    depend on when the model chooses to stop."""
    model = built.model
    model.eval()
    result = InferResult([], [], repeats)
    for _ in range(repeats):
        for start in range(0, len(split.ids), batch_size):
            index = list(range(start, min(start + batch_size, len(split.ids))))
            ids, mask, _ = batch_tensors(split, index, device)
            t0 = time.perf_counter()
            with precision.autocast():
                out = model.generate(**built.family.model_inputs(ids, mask), max_new_tokens=max_new_tokens,
                                     min_new_tokens=max_new_tokens if fixed else None, num_beams=1,
                                     do_sample=False)
            synchronize(device)
            result.batch_latencies_s.append(time.perf_counter() - t0)
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


@torch.no_grad()
def teacher_forced_texts(built: BuiltModel, split: TokenizedSplit, tokenizer: Any, batch_size: int, device: str,
                         precision: Precision = FP32) -> tuple[list[str], list[str]]:
    """The study's predictions: argmax of the logits under teacher forcing (no generation), beside each row's own
    label as the model saw it (truncated to the task's target length), both decoded without special tokens."""
    built.model.eval()
    predictions: list[str] = []
    labels_text: list[str] = []
    for start in range(0, len(split.ids), batch_size):
        index = list(range(start, min(start + batch_size, len(split.ids))))
        ids, mask, labels = batch_tensors(split, index, device)
        with precision.autocast():
            logits = built.model(**built.family.model_inputs(ids, mask), labels=labels).logits
        tokens = logits.argmax(-1).masked_fill(labels == -100, tokenizer.pad_token_id)
        predictions.extend(t.strip() for t in tokenizer.batch_decode(tokens, skip_special_tokens=True))
        gold = labels.masked_fill(labels == -100, tokenizer.pad_token_id)
        labels_text.extend(t.strip() for t in tokenizer.batch_decode(gold, skip_special_tokens=True))
    return predictions, labels_text

"""Pretraining the tiny profile's checkpoints: what the study's models had before fine-tuning, in miniature.

Each (family, size) is trained once, from its fixed seed, on generated examples of the four default tasks drawn from
seed streams the benchmark's splits never use, with a curriculum of document lengths (short documents first, where
finding the facts is easy, then the full 4,000 words so every position a cell uses has been trained). The result is
saved as safetensors with the generator's tokenizer; ``benchmarks/pretrain_tiny.py`` runs it and writes the
checkpoints the package ships.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pytest_longeff.data import scrolls as data_mod
from pytest_longeff.data.tokenizer import lexicon_tokenizer
from pytest_longeff.models.families import Family
from pytest_longeff.tasks.metrics import score_predictions
from pytest_longeff.tasks.specs import BUILTIN_TASKS

PRETRAIN_TASKS: tuple[str, ...] = ("gov_report", "summ_screen_fd", "qmsum", "qasper")
#: The decoder-only family also learns needle retrieval (RULER-style), as instruction-tuned LLMs have.
DECODER_TASKS: tuple[str, ...] = (*PRETRAIN_TASKS, "niah_single", "niah_multikey")
MAX_LEN = 4096  # the longest default input: the checkpoints' encoder positions
RULER_MIN_TOKENS = 256  # the shortest RULER-style example of a stage (16 distractor paragraphs need 160 tokens)


@dataclass(frozen=True)
class Stage:
    """``steps`` optimizer steps on documents of ``doc_words`` words, ``batch`` examples each, cycling through
    ``tasks`` (every pretraining task when empty)."""

    doc_words: int
    steps: int
    batch: int
    tasks: tuple[str, ...] = ()


# The schedules the shipped checkpoints were trained with, by family-size (benchmarks/pretrain_tiny.py prints the time
# each takes). Copying appears first on 60-word documents (mostly fact sentences; the 12 of them do not all fit in
# 60 words, so the generator's last facts fall off such a document while its target still lists them: 11-36 % of
# target values by task, unguessable noise in that stage only, measured; from 400 words on it is under 3 %, and
# none at the benchmark's 4,000). The later stages teach finding the facts among filler and train every encoder
# position up to the longest input. Trained on all four tasks from the
# start, LED base and Big Bird large stayed on a plateau where they output a fixed value per slot (measured: score 0
# at every length); learning to copy on one task alone first gets them off it.
_BASE = (Stage(60, 2400, 32), Stage(400, 600, 16), Stage(1500, 300, 8), Stage(4000, 200, 4))
_LARGE = (Stage(60, 1200, 32), Stage(400, 500, 16), Stage(1500, 250, 8), Stage(4000, 150, 4))
# The families added later (LongT5, PEGASUS-X, the Llama-style decoder-only) start with the copying stage on one
# task, as LED did, and then follow a shorter version of the same curriculum.
_RECENT_BASE = (Stage(60, 1000, 32, ("gov_report",)), Stage(60, 1500, 32), Stage(400, 400, 16), Stage(1500, 200, 8),
                Stage(4000, 120, 4))
_RECENT_LARGE = (Stage(60, 600, 32, ("gov_report",)), Stage(60, 900, 32), Stage(400, 300, 16), Stage(1500, 150, 8),
                 Stage(4000, 100, 4))
# The decoder-only model learns to copy later (it has to learn an induction head: one layer passes each token's
# predecessor forward, the next matches it), so it gets longer short-document stages.
_DECODER = (Stage(60, 2000, 32, ("gov_report",)), Stage(60, 3000, 32), Stage(400, 800, 16), Stage(1500, 300, 8),
            Stage(4000, 150, 4))
_DECODER_LARGE = (Stage(60, 1200, 32, ("gov_report",)), Stage(60, 1800, 32), Stage(400, 500, 16),
                  Stage(1500, 200, 8), Stage(4000, 100, 4))
SCHEDULES: dict[str, tuple[Stage, ...]] = {
    "led-base": (Stage(60, 1500, 32, ("gov_report",)), *_BASE),
    "bigbird-base": _BASE,
    "led-large": (Stage(60, 800, 32, ("gov_report",)), *_LARGE),
    "bigbird-large": (Stage(60, 800, 32, ("gov_report",)), *_LARGE),
    # LongT5 learns fastest: the shorter schedule took it to LED's scores. PEGASUS-X base did not (0-19 at every
    # length after it, measured): it gets LED base's.
    "longt5-base": _RECENT_BASE,
    "longt5-large": _RECENT_LARGE,
    "pegasus_x-base": (Stage(60, 1500, 32, ("gov_report",)), *_BASE),
    # PEGASUS-X large trains without dropout (PRETRAIN_DROPOUT), on LED large's schedule.
    "pegasus_x-large": (Stage(60, 800, 32, ("gov_report",)), *_LARGE),
    "llama-base": _DECODER,
    "llama-large": _DECODER_LARGE,
}
#: Stages some checkpoints continue with after their schedule, with a fresh optimiser and learning-rate schedule
#: (:data:`CONTINUATION_LR`): the decoder-only model read well at 1024 tokens after its schedule but not at 4096
#: (needle retrieval 87.5 at 1024, 25 at 4096, with the default rotary base; measured), so it trains longer on
#: long documents. (Its examples
#: come from the same seed streams as the schedule's first stages.)
CONTINUATIONS: dict[str, tuple[Stage, ...]] = {
    "llama-base": (Stage(1500, 300, 8), Stage(4000, 400, 4)),
}
CONTINUATION_LR = 1e-3
#: Dropout while pretraining, where it is not the family's own (0.1). With it, PEGASUS-X large stayed on the plateau
#: where a model writes each slot's likeliest value (loss 3.3 at step 2,300 of base's schedule; on LED large's, score
#: 0-5 at every length); without it the same first stage leaves the plateau by step 400 (loss 3.04 at 300, 1.98 at
#: 400, 0.53 at 600; measured). Only pretraining changes: a cell builds the family's model (dropout 0.1) and loads the
#: weights into it, so fine-tuning is as for the other checkpoints.
PRETRAIN_DROPOUT: dict[str, float] = {"pegasus_x-large": 0.0}


def tasks_for(family: Family) -> tuple[str, ...]:
    """What a family's checkpoint is pretrained on."""
    from pytest_longeff.models.recent import is_decoder_only

    return DECODER_TASKS if is_decoder_only(family) else PRETRAIN_TASKS


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that decides a checkpoint (it is saved beside the weights)."""

    family: str
    size: str
    stages: tuple[Stage, ...]
    lr: float = 3e-3
    warmup: int = 100
    seed: int = 0
    generator_version: int = data_mod.GENERATOR_VERSION
    tasks: tuple[str, ...] = PRETRAIN_TASKS
    max_len: int = MAX_LEN
    """The longest input trained (the cells the shipped checkpoint serves)."""
    dropout: float | None = None
    """Dropout while pretraining (the config's ``dropout``); None keeps the family's."""


@dataclass
class PretrainLog:
    """What happened: losses by step, time, parameter count."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    params: int = 0


def _lr_at(step: int, total: int, config: PretrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, total - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _batch(tok: Any, pairs: Sequence[tuple[str, str]], max_len: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                               torch.Tensor]:
    enc = tok([p[0] for p in pairs], max_length=max_len, truncation=True, padding="longest", return_tensors="pt")
    tgt = tok([p[1] for p in pairs], max_length=128, truncation=True, padding="longest", return_tensors="pt")
    labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
    return enc["input_ids"], enc["attention_mask"], labels


def build(family: Family, size: str, seed: int, dropout: float | None = None) -> Any:
    """A randomly initialised tiny model of the family, on the generator's tokenizer (with ``dropout`` in place of
    the family's, when given)."""
    torch.manual_seed(seed)
    model = family.build(size, "tiny", len(lexicon_tokenizer()), MAX_LEN, None)
    if dropout is None:
        return model
    config = model.config
    if not isinstance(getattr(config, "dropout", None), float):
        raise ValueError(f"{family.name} {size}: its config has no float `dropout` to set to {dropout}")
    config.dropout = dropout
    torch.manual_seed(seed)  # the modules read their dropout once, when built: build it again from the same seed
    return type(model)(config)


def pretrain(family: Family, config: PretrainConfig,
             progress: Callable[[int, int, float], None] | None = None, model: Any = None) -> tuple[Any, PretrainLog]:
    """Train a fresh model (or continue training ``model``) by the curriculum; returns it and the log."""
    tok = lexicon_tokenizer()
    model = model if model is not None else build(family, config.size, config.seed, config.dropout)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    total = sum(s.steps for s in config.stages)
    log = PretrainLog(params=sum(p.numel() for p in model.parameters()))
    t0 = time.perf_counter()
    step = 0
    for k, stage in enumerate(config.stages):
        tasks = stage.tasks or config.tasks
        streams = {task: iter(_stream(task, f"{config.seed}-{k}", stage.doc_words)) for task in tasks}
        for _ in range(stage.steps):
            task = tasks[step % len(tasks)]
            pairs = [next(streams[task]) for _ in range(stage.batch)]
            ids, mask, labels = _batch(tok, pairs, MAX_LEN)
            family.prepare(model, ids.shape[1])
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, config)
            loss = model(**family.model_inputs(ids, mask), labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            log.losses.append(loss.item())
            step += 1
            if progress is not None:  # the mean over the last round of tasks, not one task's batch
                recent = log.losses[-4 * len(config.tasks):]
                progress(step, total, sum(recent) / len(recent))
    log.seconds = time.perf_counter() - t0
    model.eval()
    return model, log


def _stream(task: str, seed: str, doc_words: int) -> Any:
    """An endless stream of fresh (input, target) pairs, generated in chunks (a RULER-style task's inputs are
    ``doc_words`` tokens long, at least :data:`RULER_MIN_TOKENS`)."""
    from pytest_longeff.data import ruler

    if task in ruler.RULER_TASKS:
        import random

        rng = random.Random(f"pretrain-{seed}-{task}")
        while True:
            yield ruler.ruler_example(task, rng, min(MAX_LEN, max(doc_words, RULER_MIN_TOKENS)))
    chunk = 0
    while True:
        yield from data_mod.generate_examples(task, f"{seed}-{chunk}", 64, doc_words)
        chunk += 1


def _final(log: PretrainLog) -> float:
    return round(sum(log.losses[-20:]) / max(1, len(log.losses[-20:])), 4)


@torch.no_grad()
def length_scores(family: Family, model: Any, lengths: Sequence[int], tasks: Sequence[str] = PRETRAIN_TASKS,
                  n: int = 8, max_new_tokens: int = 32, seed: str = "eval",
                  doc_words: int = data_mod.DOC_WORDS) -> dict[str, dict[int, float]]:
    """Each task's score at each input length, on ``n`` fresh documents of an evaluation stream."""
    tok = lexicon_tokenizer()
    specs = {t.name: t for t in BUILTIN_TASKS}
    tasks = tuple(tasks)
    model.eval()
    out: dict[str, dict[int, float]] = {}
    from pytest_longeff.data import ruler

    for task in tasks:
        pairs = data_mod.generate_examples(task, seed, n, doc_words) if task not in ruler.RULER_TASKS else []
        out[task] = {}
        for length in lengths:
            if task in ruler.RULER_TASKS:  # generated at each length, as RULER sizes its examples
                import random

                rng = random.Random(f"eval-{seed}-{task}-{length}")
                pairs = [ruler.ruler_example(task, rng, length) for _ in range(n)]
            refs = {str(i): [p[1]] for i, p in enumerate(pairs)}
            ids, mask, _ = _batch(tok, pairs, length)
            family.prepare(model, ids.shape[1])
            gen = model.generate(**family.model_inputs(ids, mask), max_new_tokens=max_new_tokens, num_beams=1,
                                 do_sample=False)
            texts = tok.batch_decode(gen, skip_special_tokens=True)
            preds = {str(i): t.strip() for i, t in enumerate(texts)}
            out[task][length] = score_predictions(specs[task].metric, preds, refs)["score"]
    return out


def save(model: Any, config: PretrainConfig, log: PretrainLog, folder: Path,
         continuation: tuple[PretrainConfig, PretrainLog] | None = None) -> Path:
    """Write the checkpoint (safetensors), its tokenizer and how it was made (and how it was trained further, when
    it was)."""
    folder.mkdir(parents=True, exist_ok=True)
    # Stored in half precision (half the size in the package); loaded back as fp32, so what ships is what the
    # length table measured (benchmarks/pretrain_tiny.py scores the reloaded checkpoint).
    model.half().save_pretrained(folder, safe_serialization=True)
    model.float()
    lexicon_tokenizer().save_pretrained(folder)
    made: dict[str, Any] = {"config": asdict(config), "params": log.params, "seconds": round(log.seconds, 1),
                             "final_loss": _final(log)}
    if continuation is not None:
        more, more_log = continuation
        made["continuation"] = {"config": asdict(more), "seconds": round(more_log.seconds, 1),
                                "final_loss": _final(more_log)}
    (folder / "pretraining.json").write_text(json.dumps(made, indent=2) + "\n")
    return folder

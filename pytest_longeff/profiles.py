"""Profiles: where weights and data come from, as a table of data rather than an ``if`` ladder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """One row of the profile table.

    ``weights``: ``tiny`` (family-faithful tiny configs, fixed seed), ``dims`` (published architectures at real
    dimensions, random init) or ``pretrained`` (checkpoints from the hub or a local mirror).
    ``data``: ``generated`` (offline, deterministic, SCROLLS format) or ``scrolls`` (the SCROLLS zips).
    """

    name: str
    weights: str
    data: str
    accuracy_meaning: str
    default_memory_budget: str
    default_max_batch: int
    default_train_budget: str
    default_eval_samples: int
    max_new_tokens: int
    default_repeats: int = 3
    seed: int = 0
    default_precision: str = "fp32"
    default_early_stop_metric: str = "loss"
    label_padding: str = "longest"
    """How training labels are padded, so every step's decoder runs the same positions: ``study`` pads them to the
    task's target length (128 tokens), as the study's preprocessing did; ``longest`` to the split's longest target
    (the tiny profile's generated targets are short: 128 positions would mostly be padding)."""


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="tiny",
            weights="tiny",
            data="generated",
            accuracy_meaning="pipeline check: tiny random-init models; efficiency trends are real",
            default_memory_budget="512MiB",
            default_max_batch=4,
            default_train_budget="steps=4",
            default_eval_samples=3,  # one batch per pass at most batch sizes: 3 passes give 3 latency samples
            max_new_tokens=32,
            default_repeats=3,
        ),
        Profile(
            name="dims",
            weights="dims",
            data="generated",
            accuracy_meaning="meaningless: published architectures with random weights; efficiency is real",
            default_memory_budget="48GiB",
            default_max_batch=64,
            default_train_budget="steps=20",
            default_eval_samples=8,
            max_new_tokens=128,
            label_padding="study",
        ),
        Profile(
            name="paper",
            weights="pretrained",
            data="scrolls",
            accuracy_meaning="the study reproduced: pretrained checkpoints fine-tuned on SCROLLS",
            default_memory_budget="48GiB",
            default_max_batch=64,
            default_train_budget="epochs=50,patience=3,eval_every=500",
            default_eval_samples=0,  # 0: the whole validation split
            max_new_tokens=128,
            # The study's "fp32" ran its matrix multiplies in TF32 (torch 1.10's default on its Ampere GPU), and it
            # stopped early on its own teacher-forced metric.
            default_precision="tf32",
            default_early_stop_metric="study",
            label_padding="study",
        ),
        Profile(
            name="recent",
            weights="pretrained",
            data="scrolls",
            accuracy_meaning=("today's pretrained checkpoints (LongT5, PEGASUS-X, decoder-only LLMs; the paper profile "
                              "stays the study's) fine-tuned on SCROLLS, or on RULER-style tasks generated per length"),
            default_memory_budget="80GiB",
            default_max_batch=64,
            default_train_budget="steps=200",
            default_eval_samples=64,
            max_new_tokens=128,
            # Decoder-only LLMs are trained and served in bf16 today.
            default_precision="bf16",
            label_padding="study",
        ),
    )
}


TINY_PRETRAINED_MEANING = ("the study's trade-off in miniature: tiny models pretrained offline (the checkpoints "
                           "shipped in the package) and fine-tuned on generated data; not the study's numbers")


def accuracy_meaning(profile: Profile, tiny_pretrained: bool) -> tuple[str, bool | None]:
    """What a cell's score means under ``profile`` (and, for the tiny profile, whether the cell's model is a
    shipped pretrained checkpoint), and whether it ranks models (None: as the profile says)."""
    if profile.weights == "tiny" and tiny_pretrained:
        return TINY_PRETRAINED_MEANING, True
    if profile.weights == "tiny":
        return profile.accuracy_meaning, False
    return profile.accuracy_meaning, None

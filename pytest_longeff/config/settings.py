"""User-facing options, defined once, validated by ``type=`` callables and resolved once into :class:`Settings`.

Precedence: command line, then ini key (``longeff_*``), then the profile's default. A wrong value is a usage error
that names the option (or ini key) and the accepted values.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from pytest_longeff.cell.budget import TrainBudget, parse_train_budget
from pytest_longeff.choices import DEFAULT_FAIL_ON, ENERGY_CHOICES
from pytest_longeff.config.rules import check_options
from pytest_longeff.models.common import ATTN_IMPLEMENTATIONS
from pytest_longeff.matrix import (
    DEFAULT_FAMILIES,
    DEFAULT_LENGTHS,
    DEFAULT_SIZES,
    DEFAULT_TASKS,
    KNOWN_SIZES,
    parse_lengths,
    parse_name_list,
)
from pytest_longeff.profiles import PROFILES
from pytest_longeff.record.figures import GATED
from pytest_longeff.units import parse_size

DEFAULT_JSON = "reports/longeff.json"
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
EARLY_STOP_METRICS: tuple[str, ...] = ("loss", "study")
TINY_WEIGHTS: tuple[str, ...] = ("auto", "pretrained", "random")


def _choice(accepted: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in accepted:
            raise ValueError(f"got {text!r}; accepted: {', '.join(accepted)}")
        return text

    return parse


def parse_device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ValueError(f"got {text!r}; accepted: auto, cpu, cuda, cuda:N (N a device index)")


def _number(cast: Callable[[str], Any], minimum: float, inclusive: bool, what: str) -> Callable[[str], Any]:
    """A parser for a number of ``cast``'s type at or above (``inclusive``) or strictly above ``minimum``."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise ValueError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise ValueError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, 0, False, "a positive integer")
_non_negative_int = _number(int, 0, True, "an integer >= 0")
_positive_float = _number(float, 0, False, "a positive number")
_non_negative_float = _number(lambda t: float(t.removesuffix("s")), 0, True, "a number of seconds >= 0")


def _shard(text: str) -> str:
    k, sep, n = text.partition("/")
    if text == "auto" or (k == "auto" and n.isdigit() and int(n) >= 1):
        return text
    if sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n):
        return text
    raise ValueError(f"expected K/N with 1 <= K <= N (e.g. 2/4), auto or auto/N, got {text!r}")


def _meter_name(text: str) -> str:
    # Meters can be added by hooks, so the name is checked against the table at configure (see resolve()).
    if not text.strip():
        raise ValueError(f"expected a meter name ({', '.join(ENERGY_CHOICES)}), got an empty value")
    return text.strip()


def _dataset(text: str) -> str:
    name, _, config = text.partition(":")
    if not name.strip() or (":" in text and not config.strip()):
        raise ValueError(f"expected NAME or NAME:CONFIG (a hub dataset or a local path), got {text!r}")
    return text


def _columns(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, column = part.partition("=")
        if not sep or key not in ("input", "output", "id") or not column:
            raise ValueError(f"expected input=COL,output=COL[,id=COL], got {part!r}")
        pairs.append((key, column))
    keys = [k for k, _ in pairs]
    if "input" not in keys or "output" not in keys or len(set(keys)) != len(keys):
        raise ValueError(f"expected input=COL,output=COL[,id=COL] (each once), got {text!r}")
    return tuple(pairs)


def _fail_on(text: str) -> str:
    from pytest_longeff.gate.check import parse_fail_on  # the gate loads only when it is asked for

    parse_fail_on(text)
    return text


def _positive_size(text: str) -> int:
    value = parse_size(text)
    if value <= 0:
        raise ValueError(f"expected a size above 0 like 48GiB or 512MiB, got {text!r}")
    return value


def _names(accepted: tuple[str, ...], what: str) -> Callable[[str], tuple[str, ...]]:
    return lambda text: parse_name_list(text, accepted, what)


def _any_names(text: str) -> tuple[str, ...]:
    # Families and tasks can be added by hooks, so their names are checked against the registry at configure.
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise ValueError("expected a comma list of names, got an empty value")
    return names


@dataclass(frozen=True)
class Option:
    """One ``--longeff-<name>`` option and its ``longeff_<name>`` ini key."""

    name: str
    parse: Callable[[str], Any] | None  # None: a flag
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        """The command-line flag, ``--longeff-<name>``."""
        return f"--longeff-{self.name}"

    @property
    def dest(self) -> str:
        """The attribute and ini name, ``longeff_<name>``."""
        return "longeff_" + self.name.replace("-", "_")


def _shipped_words() -> str:
    """The shipped tiny checkpoints in words, from :data:`~pytest_longeff.models.checkpoints.SHIPPED` (so the help
    cannot drift from what ships): families by the sizes they ship, e.g. ``led and bigbird base and large``."""
    from pytest_longeff.models.checkpoints import SHIPPED

    sizes: dict[str, list[str]] = {}
    for family, size in SHIPPED:
        sizes.setdefault(family, []).append(size)
    groups: dict[str, list[str]] = {}
    for family, have in sizes.items():
        groups.setdefault(" and ".join(have), []).append(family)

    def join(names: list[str]) -> str:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    return "; ".join(f"{join(families)} {have}" for have, families in groups.items())


OPTIONS: tuple[Option, ...] = (
    Option("profile", _choice(tuple(PROFILES)), "where weights and data come from: tiny (default; offline, "
           "minutes on a CPU), dims (published architectures, random weights), paper (the study's pretrained "
           "checkpoints and SCROLLS), recent (today's pretrained checkpoints of any family, bf16, for a GPU)",
           "{" + ",".join(PROFILES) + "}"),
    Option("families", _any_names, f"comma list of model families (default {','.join(DEFAULT_FAMILIES)})", "LIST"),
    Option("sizes", _names(KNOWN_SIZES, "sizes"), f"comma list of sizes (default {','.join(DEFAULT_SIZES)})",
           "LIST"),
    Option("lengths", parse_lengths, "comma list of input lengths in tokens (default "
           f"{','.join(map(str, DEFAULT_LENGTHS))})", "LIST"),
    Option("tasks", _any_names, f"comma list of tasks (default {','.join(DEFAULT_TASKS)}; also the SCROLLS tasks "
           "narrative_qa, quality, contract_nli, and the RULER-style long-context tasks niah_single, niah_multikey, "
           "niah_multivalue, vt, fwe, qa_distractors, generated for each input length)", "LIST"),
    Option("data-dir", str, "SCROLLS-format data: DIR/<task>/train.jsonl and DIR/<task>/validation.jsonl (or, for "
           "the paper profile, DIR/<task>.zip or DIR/<task>/{train,validation}/*.parquet)", "DIR"),
    Option("tiny-weights", _choice(TINY_WEIGHTS), "tiny profile: auto (the default on generated data: the "
           f"checkpoints shipped in the package, pretrained offline, where it has one, i.e. {_shipped_words()}; "
           "random init for the others), pretrained (only those; other "
           "cells are skipped) or random (fixed-seed random init, for pure efficiency runs; the default with "
           "--longeff-data-dir or --longeff-dataset)", "{" + ",".join(TINY_WEIGHTS) + "}"),
    Option("model-dir", str, "paper profile: local mirror of checkpoints as DIR/<org>/<name> (save_pretrained "
           "folders) instead of the hub", "DIR"),
    Option("device", parse_device, "where models run: auto (cuda if available), cpu, cuda, cuda:N", "DEVICE"),
    Option("share-gpus", None, "allow more pytest-xdist workers than GPUs (or several workers on one cuda:N): "
           "workers then share GPUs, and each cell's time, memory and energy include another's work (refused "
           "without this flag)"),
    Option("energy", _meter_name, "energy meter: auto (best real meter for the device), nvml (GPU energy counter), "
           "nvml-power (sampled power, integrated), rapl, estimate (labelled model), none, or one registered "
           "through pytest_longeff_meters", "{" + ",".join(ENERGY_CHOICES) + ",...}"),
    Option("energy-hz", _positive_float, "nvml-power sampling rate in Hz (default 20)", "HZ"),
    Option("energy-align", None, "align energy-counter windows to the counter's ticks: a tighter error bar for up to "
           "one update period of waiting at each edge, outside the window"),
    Option("idle-s", _non_negative_float, "seconds of idle power measured once per session for net energy, after "
           "the device is initialised (default 10 on a GPU, 2 elsewhere; 0 skips)", "SECONDS"),
    Option("memory-budget", _positive_size, "memory one cell may use, e.g. 48GiB; the batch-size search respects it "
           "(default: the profile's)", "SIZE"),
    Option("max-batch", _positive_int, "largest batch size the search may pick (default: the profile's)", "N"),
    Option("batch-size", _positive_int, "use this training batch size instead of searching", "N"),
    Option("batch-reset", None, "forget cached batch sizes and search again"),
    Option("effective-batch", _positive_int, "reach this effective batch by gradient accumulation", "N"),
    Option("train-budget", parse_train_budget, "training budget: steps=N, samples=N, "
           "epochs=N,patience=K[,eval_every=M], time=60s, energy=20kJ (default: the profile's)", "SPEC"),
    Option("lr", _positive_float, "peak learning rate of AdamW (default 2e-5, the study's; tiny random-init "
           "models learn little at it in a few steps)", "LR"),
    Option("eval-samples", _non_negative_int, "validation examples generated and scored per cell (0: all; "
           "default: the profile's)", "N"),
    Option("repeats", _positive_int, "inference passes over the validation examples for timing statistics "
           "(default 3; every batch is a latency sample)", "N"),
    Option("warmup-steps", _non_negative_int, "training steps excluded from throughput statistics (default 1)",
           "N"),
    Option("teacher-forced", None, "also score the study's way: argmax of teacher-forced logits at every position of "
           "labels padded to 128 tokens, every validation row against its own label, no generation"),
    Option("precision", _choice(PRECISIONS), "numeric precision of training and inference: fp32, tf32 (fp32 "
           "weights, TF32 matrix multiplies: the study's, and the paper profile's default), bf16 or fp16 (autocast "
           "mixed precision) (default: the profile's)", "{" + ",".join(PRECISIONS) + "}"),
    Option("attn-implementation", _choice(ATTN_IMPLEMENTATIONS), "attention implementation: auto (default: each "
           "family's preferred: sdpa for decoder-only families, eager for LED, Big Bird, LongT5 and PEGASUS-X, which "
           "support nothing else), eager, sdpa, or flash_attention_2 (CUDA with flash-attn); refused for a family "
           "that does not support it", "{" + ",".join(ATTN_IMPLEMENTATIONS) + "}"),
    Option("gradient-checkpointing", None, "recompute activations in the backward pass instead of keeping them "
           "(transformers' gradient checkpointing, in training only): less memory, so larger batches or longer "
           "inputs fit the budget, for about a third more compute a step; recorded in model_config"),
    Option("early-stop-metric", _choice(EARLY_STOP_METRICS), "what early stopping watches with epochs=N,patience=K: "
           "loss (validation loss) or study (the study's teacher-forced ROUGE mean, F1 for QA) (default: the "
           "profile's)", "{" + ",".join(EARLY_STOP_METRICS) + "}"),
    Option("dataset", _dataset, "a datasets-library dataset (hub name or local path) as the task data, NAME[:CONFIG]; "
           "with --longeff-columns; the task's metric comes from --longeff-tasks", "NAME[:CONFIG]"),
    Option("columns", _columns, "column mapping for --longeff-dataset: input=COL,output=COL[,id=COL]", "MAP"),
    Option("json", str, f"where the JSON report goes (default {DEFAULT_JSON})", "PATH"),
    Option("shard", _shard, "run one shard of the matrix: K/N (1 <= K <= N), or auto[/N] to take K and N from "
           "LONGEFF_SHARD=K/N, a SLURM job array or a Kubernetes Indexed Job; cells of one (family, size) stay in "
           "one shard", "K/N"),
    Option("durations", str, "a previous JSON report whose cell times balance the shards (default: a cost model)",
           "REPORT"),
    Option("resume", str, "a JSON report of an interrupted run: cells that passed there under the same settings, "
           "software, machine kind and code version are carried over, the rest run (may be --longeff-json's own "
           "file)", "REPORT"),
    Option("speed-reference", _choice(("auto", "on", "off")), "measure a machine-speed reference before and after "
           "each cell (about 0.35 s a cell on a 2-core CPU) so the gate can correct time figures for drift common "
           "to the whole machine: auto (default) on CPU devices and not on GPUs (where it is not yet validated), "
           "on, or off", "auto|on|off"),
    Option("remeasure", _non_negative_int, "with a baseline: measure a cell again, up to N times, while a gated "
           "figure is worse than its tolerance, before the gate judges it (default 1; 0: never); the first "
           "measurement stands in the record, the gate judges the figures pooled over every measurement, the others "
           "go in the record's remeasured section", "N"),
    Option("acknowledged", str, "a file of accepted changes (metric, cell, reason) the gate does not fail on",
           "PATH"),
    Option("benchmark-json", str, "write github-action-benchmark files (customSmallerIsBetter / "
           "customBiggerIsBetter) into DIR", "DIR"),
    Option("plots", str, "where the figures go (default: plots/ beside the JSON report; needs the plots extra); "
           "none draws no figures", "DIR"),
    Option("html", str, "the self-contained HTML report page (default: the JSON report's path with .html)",
           "PATH"),
    Option("baseline", str, "an earlier JSON report to gate regressions against (same machine)", "PATH"),
    Option("fail-on", _fail_on, "metrics and tolerated change for the worse, e.g. "
           f"'inference_j_per_sample:10%,train_samples_per_s:10%' (default with a baseline: {DEFAULT_FAIL_ON}; "
           f"metrics: {', '.join(GATED)})", "SPEC"),
)


@dataclass(frozen=True)
class Settings:
    """Every longeff setting, resolved once per session."""

    profile: str
    families: tuple[str, ...]
    sizes: tuple[str, ...]
    lengths: tuple[int, ...]
    tasks: tuple[str, ...]
    data_dir: str | None
    model_dir: str | None
    device: str
    energy: str
    energy_hz: float
    energy_align: bool
    idle_s: float | None
    """None: the device's default (10 s on a GPU, 2 s elsewhere)."""
    memory_budget_bytes: int
    memory_budget_source: str  # "option" or "profile default"
    max_batch: int
    batch_size: int | None
    batch_reset: bool
    effective_batch: int | None
    train_budget: TrainBudget
    lr: float
    eval_samples: int
    repeats: int
    warmup_steps: int
    teacher_forced: bool
    share_gpus: bool
    precision: str
    early_stop_metric: str
    attn_implementation: str
    """auto (each family's preferred), eager, sdpa or flash_attention_2."""
    gradient_checkpointing: bool
    """Train with transformers' activation checkpointing (--longeff-gradient-checkpointing)."""
    tiny_weights: str | None
    """auto, pretrained or random for the tiny profile; None for the others."""
    dataset: str | None
    columns: tuple[tuple[str, str], ...] | None
    json_path: str
    shard: str | None
    durations: str | None
    resume: str | None
    speed_reference: str
    """auto, on or off; :meth:`measures_reference` says what it means on a device."""
    remeasure: int
    acknowledged: str | None
    benchmark_json: str | None
    plots: str | None
    html: str | None
    baseline: str | None
    fail_on: str | None

    def measures_reference(self, device: str) -> bool:
        """Whether cells on ``device`` are measured with the machine-speed reference (``--longeff-speed-reference``:
        auto measures it on CPU devices only; its small workload is not yet validated as a speed gauge of a GPU)."""
        return self.speed_reference == "on" or (self.speed_reference == "auto" and not device.startswith("cuda"))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        out = asdict(self)
        out["train_budget"] = self.train_budget.to_dict()
        return out


GROUP = "longeff"
GROUP_DESCRIPTION = "long-context accuracy vs. efficiency benchmarks (pytest-longeff)"


def argparse_text(text: str) -> str:
    """``text`` as argparse prints it: argparse %-formats help strings (for ``%(default)s``), so a bare ``%`` would
    crash ``pytest --help`` in every suite of the environment. The ini listing prints help verbatim."""
    return text.replace("%", "%%")


def add_options(parser: pytest.Parser) -> None:
    """Add every ``--longeff-*`` option and its ini setting to pytest's parser."""
    group = parser.getgroup(GROUP, GROUP_DESCRIPTION)
    for opt in OPTIONS:
        if opt.parse is None:
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.dest, help=argparse_text(opt.help))
            parser.addini(opt.dest, help=opt.help, type="bool", default=None)
        else:
            group.addoption(opt.flag, type=_argtype(opt.parse), default=None, dest=opt.dest,
                            metavar=opt.metavar, help=argparse_text(opt.help))
            parser.addini(opt.dest, help=opt.help, default=None)


def _argtype(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = getattr(parse, "__name__", "value")
    return wrapped


def _value(config: pytest.Config, opt: Option) -> Any:
    cli = config.getoption(opt.dest)
    if cli is not None:
        return cli
    raw = config.getini(opt.dest)
    if raw is None or raw == "" or raw == []:
        return None
    if opt.parse is None:
        return bool(raw)
    try:
        return opt.parse(str(raw))
    except ValueError as exc:
        raise pytest.UsageError(f"ini option {opt.dest} = {raw!r}: {exc}") from None


_FIELDS = frozenset(Settings.__dataclass_fields__)


def resolve(config: pytest.Config, known_families: tuple[str, ...], known_tasks: tuple[str, ...],
            known_meters: tuple[str, ...] = ENERGY_CHOICES) -> Settings:
    """Resolve every option once; unknown family, task or energy meter names (checked against the session's
    registries, which hooks extend; meters default to the built-ins) are usage errors that list the accepted names."""
    v = {opt.name: _value(config, opt) for opt in OPTIONS}
    check_options(v, known_families, known_tasks, known_meters)
    profile = PROFILES[v["profile"] or "tiny"]
    if v["memory-budget"] is not None:
        budget, budget_source = v["memory-budget"], "option"
    else:
        budget, budget_source = parse_size(profile.default_memory_budget), f"{profile.name} profile default"
    # Options that map 1:1 onto a field; the rest get their defaults below. Option-only names are left out.
    given = {f: v[opt.name] for opt in OPTIONS if (f := opt.dest.removeprefix("longeff_")) in _FIELDS}
    return Settings(**{
        **given,
        "profile": profile.name,
        "families": tuple(v["families"] or DEFAULT_FAMILIES),
        "sizes": tuple(v["sizes"] or DEFAULT_SIZES),
        "lengths": tuple(v["lengths"] or DEFAULT_LENGTHS),
        "tasks": tuple(v["tasks"] or DEFAULT_TASKS),
        "device": v["device"] or "auto",
        "energy": v["energy"] or "auto",
        "energy_hz": v["energy-hz"] or 20.0,
        "energy_align": bool(v["energy-align"]),
        "memory_budget_bytes": budget,
        "memory_budget_source": budget_source,
        "max_batch": v["max-batch"] or profile.default_max_batch,
        "batch_reset": bool(v["batch-reset"]),
        "train_budget": v["train-budget"] or parse_train_budget(profile.default_train_budget),
        "lr": v["lr"] or 2e-5,
        "eval_samples": profile.default_eval_samples if v["eval-samples"] is None else v["eval-samples"],
        "repeats": v["repeats"] or profile.default_repeats,
        "warmup_steps": 1 if v["warmup-steps"] is None else v["warmup-steps"],
        "teacher_forced": bool(v["teacher-forced"]),
        "share_gpus": bool(v["share-gpus"]),
        "speed_reference": v["speed-reference"] or "auto",
        "remeasure": 1 if v["remeasure"] is None else v["remeasure"],
        "precision": v["precision"] or profile.default_precision,
        "early_stop_metric": v["early-stop-metric"] or profile.default_early_stop_metric,
        "attn_implementation": v["attn-implementation"] or "auto",
        "gradient_checkpointing": bool(v["gradient-checkpointing"]),
        "tiny_weights": None if profile.weights != "tiny" else v["tiny-weights"] or (
            "random" if v["data-dir"] or v["dataset"] else "auto"),
        "json_path": v["json"] or DEFAULT_JSON,
        "fail_on": v["fail-on"] or (DEFAULT_FAIL_ON if v["baseline"] else None),
    })

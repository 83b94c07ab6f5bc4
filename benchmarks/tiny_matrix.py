"""What the CPU memory benchmarks share: the default matrix's models and lengths at the tiny scale, each prepared
and searched as a tiny gov_report cell is (``probe_steady_state.py``, ``allocator_cost.py``; they run as scripts,
so this folder is on their import path)."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def add_cell_arguments(parser: argparse.ArgumentParser, lengths: str) -> None:
    """The options that choose the cells, and torch's threads."""
    parser.add_argument("--families", default="led,bigbird",
                        help="comma-separated built-in families (default %(default)s)")
    parser.add_argument("--sizes", default="base,large", help="comma-separated sizes (default %(default)s)")
    parser.add_argument("--lengths", default=lengths, help="comma-separated input lengths (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")


class TinyCells:
    """The chosen cells, validated (a usage error names the option), with the generated gov_report training
    split and the tiny profile's tokenizer, label padding, budget and largest batch."""

    def __init__(self, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
        try:
            self.lengths = [int(x) for x in args.lengths.split(",")]
        except ValueError:
            parser.error(f"--lengths takes comma-separated integers, not {args.lengths!r}")
        if any(n < 1 for n in self.lengths):
            parser.error(f"--lengths must be positive, not {args.lengths!r}")
        if args.threads is not None and args.threads < 1:
            parser.error(f"--threads must be at least 1, not {args.threads}")
        self.sizes = args.sizes.split(",")
        if any(s not in ("base", "large") for s in self.sizes):
            parser.error(f"--sizes: choose from base, large, not {args.sizes!r}")

        import torch

        from pytest_longeff.cell.prepare import _rows
        from pytest_longeff.data.scrolls import load_task, write_generated
        from pytest_longeff.data.tokenizer import lexicon_tokenizer
        from pytest_longeff.models.families import BUILTIN_FAMILIES
        from pytest_longeff.profiles import PROFILES
        from pytest_longeff.tasks.specs import BUILTIN_TASKS

        known = {f.name: f for f in BUILTIN_FAMILIES}
        self.families = args.families.split(",")
        unknown = [f for f in self.families if f not in known]
        if unknown:
            parser.error(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
        self._known = known
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        self.profile = PROFILES["tiny"]
        self.tok = lexicon_tokenizer()
        self.task = next(t for t in BUILTIN_TASKS if t.name == "gov_report")
        with tempfile.TemporaryDirectory() as tmp:
            self.rows = _rows(load_task(write_generated(Path(tmp), ["gov_report"]), "gov_report")["train"], "train",
                              0, "examples")

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        for name in self.families:
            for size in self.sizes:
                for length in self.lengths:
                    yield name, size, length

    def prepare(self, name: str, size: str, length: int) -> tuple[Any, Any]:
        """The cell's training split (the profile's label padding, the task's truncation side, as a tiny cell
        prepares it) and its model (the shipped checkpoint where there is one)."""
        from pytest_longeff.cell.prepare import _tokenize
        from pytest_longeff.models.checkpoints import shipped, trained_length
        from pytest_longeff.models.families import build_model

        split = _tokenize(self.tok, self.rows, length, self.task.max_target_tokens, self.profile.label_padding,
                          self.task.truncation)
        # The shipped checkpoint where a tiny cell would load it: one ships for the model and was pretrained up to
        # this length (a longer cell runs random-init, as --longeff-tiny-weights random would).
        folder = shipped(name, size)
        built = build_model(self._known[name], size, "tiny", len(self.tok), length, None, seed=0,
                            tiny_pretrained=folder is not None and length <= trained_length(folder))
        return split, built

    def search(self, built: Any, split: Any, budget: int) -> Any:
        """The suite's batch-size search with its real CPU probes, as a cell runs it."""
        from pytest_longeff.cell.batch import probe_batch
        from pytest_longeff.cell.search import search_batch_size
        from pytest_longeff.measure.window import release_memory

        return search_batch_size(lambda b: probe_batch(built, split, b, "cpu"), budget,
                                 max_batch=self.profile.default_max_batch,
                                 release=lambda: release_memory("cpu", full=False))


def proc_status(key: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` (VmRSS, VmHWM), in bytes."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def reset_high_water_mark() -> None:
    """Start VmHWM again from the current resident set (Linux ``clear_refs``)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")

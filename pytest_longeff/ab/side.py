"""One side of an A/B comparison: a process of the side's own environment that measures on command.

``pytest-longeff ab`` (:mod:`pytest_longeff.ab.run`) opens an execnet gateway per side (``popen//python=...//
chdir=...``) and has it run ``from pytest_longeff.ab.side import serve; serve(channel)``, so every side measures with
its own installed code. Commands are dicts ``{"op": name, **arguments}``; every answer is ``{"ok": True, ...}`` or
``{"ok": False, "error": ...}``, and a side never exits on a cell's error. The side collects the cells through pytest
itself (``--collect-only`` with the command's pytest arguments, in its own directory), so selection (``-k``), the
``--longeff-*`` options and families registered by a conftest or plugin are exactly what ``pytest`` would run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What a window's answer says of its energy reading.
ENERGY_KEYS = ("energy_j", "energy_uncertainty_j", "energy_valid", "energy_note", "energy_method",
               "energy_throttle_reasons")
#: Bumped when a command or an answer changes meaning; both sides of a comparison must speak the same one.
PROTOCOL = 1


@dataclass
class _Cell:
    prepared: Any
    stepper: Any = None
    batch: int = 0
    tokens: int = 0


def _libc() -> str | None:
    """The C library and its version (e.g. ``glibc 2.36``), None where the platform does not say."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None


def _thp_mode() -> str | None:
    """The kernel's transparent huge page mode (``always``, ``madvise``, ``never``), None where there is none."""
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii").read()
    except OSError:
        return None
    chosen = [w.strip("[]") for w in text.split() if w.startswith("[")]
    return chosen[0] if chosen else text.strip() or None


def _cpulist(text: str) -> set[int]:
    """The cores of a kernel CPU list (``0-3,8,10-11``)."""
    cores: set[int] = set()
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cores.update(range(int(first), int(last or first) + 1))
    return cores


def node_cores(cores: list[int], root: Path = Path("/sys/devices/system/node")) -> set[int] | None:
    """The cores of the NUMA nodes that hold any of ``cores``; None where the kernel does not say (no such files,
    unreadable, or none of ``cores`` on any node)."""
    near: set[int] = set()
    try:
        for node in root.glob("node[0-9]*"):
            listed = _cpulist((node / "cpulist").read_text(encoding="ascii"))
            if listed & set(cores):
                near |= listed
    except (OSError, ValueError):
        return None
    return near or None


def threads_of_this_process() -> list[int]:
    """The ids of this process's threads (Linux: ``/proc/self/task``), else ``[0]`` (the calling thread)."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except (OSError, ValueError):
        return [0]


class Cores:
    """Where this side's process runs. Its windows and their warm-ups: on its measuring cores (``measure``; both
    sides on the same one when they take turns). The rest (collecting, building models and inputs, the batch search,
    the work counters: nothing timed) on every core it may use on the NUMA nodes of the measuring cores, so that
    where both sides do that work at once (collecting; preparing the cells from the second process pair on) it runs
    on more than one core (a process pair's fixed cost, measured here on 2 cores: 5.5 s collecting and 5 s
    preparing the 4-cell gate workload's cells, both sides on one core), and what they allocate lies in the memory
    nearest to the measuring cores. Every thread of the process is moved (torch's worker threads start on the cores
    their first parallel operation found). ``measure`` None: never pinned."""

    def __init__(self, measure: list[int] | None) -> None:
        pinning = bool(measure) and hasattr(os, "sched_setaffinity")
        self.measure = sorted(measure) if pinning and measure else None
        self.between: list[int] | None = None
        if self.measure is not None:
            allowed = set(os.sched_getaffinity(0))
            near = node_cores(self.measure)
            self.between = sorted(allowed & near if near and allowed & near else allowed)
        self._now: list[int] | None = None

    def windows(self) -> None:
        """Run on the measuring cores."""
        self._set(self.measure)

    def unmeasured(self) -> None:
        """Run on the cores near the measuring ones."""
        self._set(self.between)

    def _set(self, cores: list[int] | None) -> None:
        if cores is not None and cores != self._now:
            for thread in threads_of_this_process():
                with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                    os.sched_setaffinity(thread, cores)
            self._now = cores


def _running_on() -> list[int] | None:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


class Side:
    """The commands a side answers; one instance per process."""

    def __init__(self) -> None:
        self.session: Any = None
        self.cells: dict[str, Any] = {}
        self.ready: dict[str, _Cell] = {}
        self.cores = Cores(None)

    def hello(self) -> dict[str, Any]:
        """Who this side is: protocol, package version, interpreter, directory, and what its heap runs on (the
        ``GLIBC_TUNABLES`` it started with, its C library, the kernel's transparent huge page mode), as this process
        sees them, for the report."""
        from pytest_longeff._version import __version__

        return {"protocol": PROTOCOL, "version": __version__, "python": sys.executable, "cwd": os.getcwd(),
                "pid": os.getpid(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES"), "libc": _libc(),
                "thp": _thp_mode()}

    def collect(self, args: list[str], threads: int | None = None, cpus: list[int] | None = None) -> dict[str, Any]:
        """Collect the cells ``pytest --collect-only ARGS`` selects here and open a measuring session with the
        resolved settings; ``threads``: torch's CPU threads for this side (None: torch's default); ``cpus``: the CPU
        cores its measured windows run on (None: as started; between windows: :class:`Cores`)."""
        self.cores = Cores(cpus)
        self.cores.unmeasured()
        import pytest
        import torch

        from pytest_longeff.cell.resources import LongeffSession
        from pytest_longeff.config.caches import cache_dir
        from pytest_longeff.plugin import EXTENSIONS_KEY, SETTINGS_KEY
        from pytest_longeff.record.io import code_digest
        from pytest_longeff.report.roles import cell_of

        if threads:
            torch.set_num_threads(threads)
        grabbed: dict[str, Any] = {}

        class Grab:
            @pytest.hookimpl(trylast=True)
            def pytest_collection_finish(self, session: pytest.Session) -> None:
                grabbed["config"] = session.config
                # Taken now: the plugin clears its stash when pytest unconfigures.
                grabbed["settings"] = session.config.stash[SETTINGS_KEY]
                grabbed["ext"] = session.config.stash[EXTENSIONS_KEY]
                grabbed["cells"] = [c for item in session.items if (c := cell_of(item)) is not None]

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = pytest.main(["--collect-only", "-q", *args], plugins=[Grab()])
        if "config" not in grabbed or code not in (0, 5):
            raise RuntimeError(f"pytest --collect-only {' '.join(args)} failed (exit {int(code)}): "
                               f"{out.getvalue().strip()[-2000:]}")
        config = grabbed["config"]
        settings, ext = grabbed["settings"], grabbed["ext"]
        self.cells = {c.id: c for c in grabbed["cells"]}
        self.session = LongeffSession(settings, cache_dir(config), ext.families, ext.tasks, meters=ext.meters,
                                      metrics=ext.metrics)
        return {"cells": list(self.cells), "settings": settings.to_dict(), "machine": self.session.facts(),
                "code": code_digest(), "threads": torch.get_num_threads(), "device": self.session.device,
                "cpus": self.cores.measure or _running_on(), "cpus_between_windows": _running_on()}

    def prepare(self, cell: str, batch: int | None, tokens: int | None, count: bool) -> dict[str, Any]:
        """Make a cell ready to measure: inputs, model, the batch (``batch``; without it this side's own choice,
        searched as the plugin searches) and one warm-up of each window; with ``count``, also this side's own
        choice of batch and the work counters of a step and of a generated token."""
        from pytest_longeff.cell.fixed import Stepper, count_step, count_tokens, generate_fixed
        from pytest_longeff.cell.precision import Precision
        from pytest_longeff.cell.run import check_ready, choose, max_new_tokens, prepare

        s = self.session
        c = self.cells[cell]
        self.cores.unmeasured()
        check_ready(s, c)
        precision = Precision(s.settings.precision, s.device)
        p, facts = prepare(s, c, precision)
        searched = choose(s, p, None).batch_size if count or batch is None else None
        use = batch if batch is not None else searched or 0
        if use <= 0:
            raise RuntimeError(f"{cell}: no batch size fits the memory budget on this side")
        n_tokens = tokens or max_new_tokens(s, p)
        ready = self.ready[cell] = _Cell(p, Stepper(p.built, p.train, use, s.device, precision, s.settings.lr),
                                         use, n_tokens)
        work = {}
        if count:
            work = {"train": count_step(p.built, p.train, use, s.device, precision).to_dict(),
                    "inference": count_tokens(p.built, p.validation, use, n_tokens, s.device, precision).to_dict()}
        self.cores.windows()  # warm-ups where the windows run: their caches and clock as a window will find them
        ready.stepper.run(1)  # warm-up: first-call costs stay out of the rounds
        step_s = ready.stepper.run(1)
        generate_fixed(p.built, p.validation, use, n_tokens, s.device, precision)
        generate_s, _ = generate_fixed(p.built, p.validation, use, n_tokens, s.device, precision)
        return {"batch": use, "searched_batch": searched, "tokens": n_tokens, "work": work, "step_s": step_s,
                "generate_s": generate_s,
                "params": facts.params, "model": facts.label}

    def _window(self, cell: str, kind: str, count: int) -> dict[str, Any]:
        from pytest_longeff.cell.fixed import generate_fixed
        from pytest_longeff.measure.window import window
        from pytest_longeff.record.sections import Energy

        s, r = self.session, self.ready[cell]
        p = r.prepared
        self.cores.windows()
        p.built.family.prepare(p.built.model, p.cell.seq_len)  # another cell may share this model
        with p.precision.matmul(), window(kind, s.device, s.meter) as w:
            if kind == "train":
                r.stepper.run(count)
            else:
                for _ in range(count):
                    generate_fixed(p.built, p.validation, r.batch, r.tokens, s.device, p.precision)
        e = Energy.from_reading(w.energy, s.idle) if w.energy is not None else None
        energy = None if e is None else {k: v for k, v in e.to_dict().items() if k in ENERGY_KEYS}
        units = count * r.batch * (1 if kind == "train" else r.tokens)
        return {"time_s": w.time_s, "units": units, "peak_memory_bytes": w.peak_memory_bytes, "energy": energy,
                "cpus": _running_on()}

    def train(self, cell: str, steps: int) -> dict[str, Any]:
        """Time ``steps`` training steps of a prepared cell in a ``train`` window."""
        return self._window(cell, "train", steps)

    def infer(self, cell: str, repeats: int = 1) -> dict[str, Any]:
        """Time ``repeats`` fixed-token generations of a prepared cell in an ``inference`` window."""
        return self._window(cell, "inference", repeats)

    def release(self, cell: str) -> dict[str, Any]:
        """Drop a prepared cell (its optimiser state and inputs)."""
        self.ready.pop(cell, None)
        return {}

    def close(self) -> dict[str, Any]:
        """Close the session (its energy meter)."""
        if self.session is not None:
            self.session.close()
        return {}


def serve(channel: Any) -> None:
    """Answer commands on an execnet ``channel`` until ``close`` or the channel ends."""
    side = Side()
    for message in channel:
        op = message.get("op") if isinstance(message, dict) else None
        handler = getattr(side, str(op), None) if op in {"hello", "collect", "prepare", "train", "infer", "release",
                                                           "close"} else None
        if handler is None:
            channel.send({"ok": False, "error": f"unknown command {op!r}"})
            continue
        args = {k: v for k, v in message.items() if k != "op"}
        try:
            # Plain JSON types only: what a channel carries and a report can hold.
            channel.send(json.loads(json.dumps({"ok": True, **handler(**args)}, default=str)))
        except Exception as exc:  # a cell's error is an answer; the side stays up for the other cells
            channel.send({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": "".join(traceback.format_exception(exc))[-4000:]})
        if op == "close":
            return


def main() -> None:
    """``python -m pytest_longeff.ab.side``: not meant to be run by hand."""
    print("pytest_longeff.ab.side is started by `pytest-longeff ab` through execnet", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()

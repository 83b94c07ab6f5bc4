"""Shards of the matrix for runs spread over machines (``--longeff-shard K/N``).

A shard is a set of (family, size) groups, so each model is built once, on one machine. The assignment depends only
on the matrix and, when given, the cell times of an earlier report (``--longeff-durations``): never on the machine,
so every shard of a CI matrix, SLURM array or Kubernetes Indexed Job computes the same split independently.

Balance: greedy longest-processing-time. Groups are taken by decreasing cost (ties: family, then size, by name), and
each goes to the shard with the least cost so far (ties: the lower shard number). A group's cost is the sum of its
cells' costs: the earlier report's ``cell_wall_s`` when it has the cell, else the cost model ``SIZE_FACTOR[size] x
seq_len`` (sparse attention is about linear in the input length; ``large`` does about three times the work of
``base``), scaled by the ratio of measured to modelled cost over the cells the report has, so the two mix.

``auto`` takes K/N from the environment, first match wins (see :func:`shard_from_env`):

* ``LONGEFF_SHARD=K/N`` (1-based, as on the command line);
* a SLURM job array: K = (``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN``) / ``SLURM_ARRAY_TASK_STEP`` + 1 (MIN
  0 and STEP 1 when unset), N = ``SLURM_ARRAY_TASK_COUNT``; so ``--array=1-4`` and ``--array=0-3`` both give 1/4..4/4;
* a Kubernetes Indexed Job: K = ``JOB_COMPLETION_INDEX`` + 1 (it is 0-based), N from ``auto/N`` (the pod does not
  see the completion count).

``auto/N`` also checks that the environment's count is N. Anything missing or contradictory is a :class:`ShardError`
naming the variables.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_longeff.matrix import Cell, build_matrix

if TYPE_CHECKING:
    from pytest_longeff.config.settings import Settings

#: Relative work of a model size in the cost model (unknown sizes count as ``base``).
SIZE_FACTOR: Mapping[str, float] = {"base": 1.0, "large": 3.0}
ENV_VARS = ("LONGEFF_SHARD", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
            "JOB_COMPLETION_INDEX")


class ShardError(ValueError):
    """A shard that cannot be determined (bad spec, missing or contradictory environment)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based) and where that came from."""

    index: int
    count: int
    source: str = "option"

    @property
    def spec(self) -> str:
        """``K/N``."""
        return f"{self.index}/{self.count}"


def _pair(text: str, what: str) -> tuple[int, int]:
    k, sep, n = text.strip().partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ShardError(f"{what}: expected K/N with 1 <= K <= N (e.g. 2/4), got {text!r}")
    return int(k), int(n)


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ShardError(f"{name}={env[name]!r} is not an integer") from None


def _slurm(env: Mapping[str, str], expected: int | None) -> Shard:
    if "SLURM_ARRAY_TASK_COUNT" not in env and expected is None:
        raise ShardError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; use --longeff-shard auto/N")
    count = _int(env, "SLURM_ARRAY_TASK_COUNT") if "SLURM_ARRAY_TASK_COUNT" in env else expected
    assert count is not None
    low = _int(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
    step = _int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    offset = _int(env, "SLURM_ARRAY_TASK_ID") - low
    if step < 1 or offset < 0 or offset % step or not 1 <= offset // step + 1 <= count:
        raise ShardError(f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']} does not map to a shard of "
                         f"{count} (SLURM_ARRAY_TASK_MIN={low}, SLURM_ARRAY_TASK_STEP={step}): K = (ID - MIN) / "
                         "STEP + 1 must be in 1..SLURM_ARRAY_TASK_COUNT")
    return Shard(offset // step + 1, count, f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']}")


def shard_from_env(spec: str, env: Mapping[str, str]) -> Shard:
    """The shard of ``--longeff-shard`` ``spec`` (``K/N``, ``auto`` or ``auto/N``) in environment ``env``."""
    if not spec.startswith("auto"):
        k, n = _pair(spec, "--longeff-shard")
        return Shard(k, n)
    expected = int(spec[5:]) if spec.startswith("auto/") and spec[5:].isdigit() else None
    if "LONGEFF_SHARD" in env:
        k, n = _pair(env["LONGEFF_SHARD"], "LONGEFF_SHARD")
        found = Shard(k, n, "LONGEFF_SHARD")
    elif "SLURM_ARRAY_TASK_ID" in env:
        found = _slurm(env, expected)
    elif "JOB_COMPLETION_INDEX" in env:
        if expected is None:
            raise ShardError("JOB_COMPLETION_INDEX is set but a Kubernetes pod does not see the completion count: "
                             "use --longeff-shard auto/N with N = the Job's completions")
        index = _int(env, "JOB_COMPLETION_INDEX")
        if not 0 <= index < expected:
            raise ShardError(f"JOB_COMPLETION_INDEX={index} is outside 0..{expected - 1} (--longeff-shard {spec})")
        found = Shard(index + 1, expected, f"JOB_COMPLETION_INDEX={index}")
    else:
        raise ShardError(f"--longeff-shard {spec}: none of {', '.join(ENV_VARS)} is set; set LONGEFF_SHARD=K/N "
                         "or run in a SLURM job array or Kubernetes Indexed Job")
    if expected is not None and found.count != expected:
        raise ShardError(f"--longeff-shard {spec} contradicts {found.source}: the environment says {found.count} "
                         f"shards, the option {expected}")
    return found


def model_cost(cell: Cell) -> float:
    """The cost model of a cell without a measured time: size factor x input length."""
    return SIZE_FACTOR.get(cell.size, 1.0) * cell.seq_len


def group_costs(cells: Iterable[Cell], durations: Mapping[str, float] | None = None) -> dict[tuple[str, str], float]:
    """Each (family, size) group's cost: measured cell times where known, the scaled cost model elsewhere."""
    cells = list(cells)
    known = {c.id: float(durations[c.id]) for c in cells if durations and durations.get(c.id, 0) > 0}
    modelled = sum(model_cost(c) for c in cells if c.id in known)
    scale = sum(known.values()) / modelled if known and modelled > 0 else 1.0
    costs: dict[tuple[str, str], float] = {}
    for c in cells:
        costs[c.model_key] = costs.get(c.model_key, 0.0) + known.get(c.id, model_cost(c) * scale)
    return costs


def assign(costs: Mapping[tuple[str, str], float], count: int) -> list[list[tuple[str, str]]]:
    """Greedy longest-processing-time: groups in decreasing cost go to the least loaded shard (ties broken by
    group name and shard number), so the result is the same on every machine."""
    shards: list[list[tuple[str, str]]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for key in sorted(costs, key=lambda k: (-costs[k], k)):
        target = min(range(count), key=lambda i: (loads[i], i))
        shards[target].append(key)
        loads[target] += costs[key]
    return shards


def shard_cells(cells: Sequence[Cell], shard: Shard, durations: Mapping[str, float] | None = None) -> list[Cell]:
    """The cells of ``shard``, in matrix order."""
    groups = set(assign(group_costs(cells, durations), shard.count)[shard.index - 1])
    return [c for c in cells if c.model_key in groups]


def in_shard(nodeid: str, shard: Shard) -> bool:
    """Whether a test that is not a matrix cell (e.g. a ``longeff_window`` benchmark) belongs to ``shard``: by a
    stable hash of its node id, so it runs in exactly one shard."""
    return zlib.crc32(nodeid.encode()) % shard.count == shard.index - 1


def load_durations(path: Path) -> dict[str, float]:
    """Cell times (``cell_wall_s``) of an earlier report, by cell id; :class:`ReportError` if it is unusable."""
    from pytest_longeff.record.io import load_report

    doc = load_report(path)
    return {str(r["id"]): float(r["cell_wall_s"]) for r in doc["records"]
            if isinstance(r.get("cell_wall_s"), (int, float)) and r["cell_wall_s"] > 0}


@dataclass(frozen=True)
class Selection:
    """This run's shard: which cells it runs and how the split was balanced."""

    shard: Shard
    cells: frozenset[str]
    balance: str

    def keeps(self, cell_id: str | None, nodeid: str) -> bool:
        """Whether a collected test runs in this shard (a matrix cell by the split, any other test by its id)."""
        return cell_id in self.cells if cell_id is not None else in_shard(nodeid, self.shard)

    def header(self) -> dict[str, object]:
        """The report header's ``shard`` section."""
        return {"index": self.shard.index, "count": self.shard.count, "source": self.shard.source,
                "balance": self.balance, "cells": len(self.cells)}

    def line(self, collected: int) -> str:
        """The terminal header line."""
        return (f"longeff: shard {self.shard.spec}: {collected} cell{'s' if collected != 1 else ''} (from "
                f"{self.shard.source}; balanced by {self.balance})")


def select(spec: str, env: Mapping[str, str], cells: Sequence[Cell], durations: Path | None,
           shown_as: str | None = None) -> Selection:
    """The selection of ``--longeff-shard spec``; ValueError (:class:`ShardError` or a report error) when the
    environment or the durations report is unusable."""
    shard = shard_from_env(spec, env)
    times = load_durations(durations) if durations is not None else None
    if times:
        timed = sum(c.id in times for c in cells)
        balance = f"cell times in {shown_as or durations} ({timed} of {len(cells)} cells timed)"
    else:
        balance = "the cost model (size factor x input length)"
    return Selection(shard, frozenset(c.id for c in shard_cells(cells, shard, times)), balance)


def run_selection(settings: Settings, env: Mapping[str, str], cwd: Path) -> Selection | None:
    """This run's shard of the settings' matrix (``--longeff-shard``; ``--longeff-durations`` relative to ``cwd``),
    or None for the whole matrix; ValueError naming the option when the shard or the durations are unusable."""
    if not settings.shard:
        return None
    durations = Path(settings.durations) if settings.durations else None
    if durations is not None and not durations.is_absolute():
        durations = cwd / durations
    cells = build_matrix(settings.families, settings.sizes, settings.lengths, settings.tasks)
    try:
        return select(settings.shard, env, cells, durations, settings.durations)
    except ValueError as exc:
        option = "--longeff-shard" if isinstance(exc, ShardError) else "--longeff-durations"
        raise ValueError(f"{option}: {exc}") from None

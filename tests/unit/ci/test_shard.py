"""Shards of the matrix: disjoint and complete, model groups kept, balanced by cost, chosen from options or the
environment."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_longeff.ci.shard import Shard, ShardError, assign, group_costs, shard_cells, shard_from_env
from pytest_longeff.matrix import Cell, build_matrix

names = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=4, unique=True)


matrices = st.builds(build_matrix, names, st.lists(st.sampled_from(["base", "large"]), min_size=1, unique=True),
                     st.lists(st.integers(1, 9000), min_size=1, max_size=3, unique=True), names)


@settings(max_examples=60, deadline=None)
@given(matrices, st.integers(1, 4), st.none() | st.dictionaries(st.text(min_size=1), st.floats(0.1, 100.0)))
def test_shards_are_disjoint_complete_and_keep_model_groups(cells: list[Cell], n: int,
                                                             durations: dict[str, float] | None) -> None:
    parts = [shard_cells(cells, Shard(k, n), durations) for k in range(1, n + 1)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == sorted(c.id for c in cells) and len(ids) == len(set(ids))
    owner = {c.model_key: k for k, part in enumerate(parts) for c in part}
    assert all(owner[c.model_key] == k for k, part in enumerate(parts) for c in part)
    assert parts == [shard_cells(list(cells), Shard(k, n), durations) for k in range(1, n + 1)]  # deterministic


def test_lpt_balances_by_cost_with_deterministic_ties() -> None:
    cells = build_matrix(["led", "bigbird"], ["base", "large"], [1024], ["qasper"])
    # Cost model: large = 3x base, so each large group gets a shard of its own and the bases share one.
    assert assign(group_costs(cells), 3) == [[("bigbird", "large")], [("led", "large")],
                                             [("bigbird", "base"), ("led", "base")]]
    timed = {"led-base-1024-qasper": 500.0, "bigbird-base-1024-qasper": 1.0, "led-large-1024-qasper": 2.0,
             "bigbird-large-1024-qasper": 3.0}
    assert assign(group_costs(cells, timed), 2) == [[("led", "base")], [("bigbird", "large"), ("led", "large"),
                                                                         ("bigbird", "base")]]
    assert assign(group_costs(cells, timed), 2) == assign(group_costs(list(reversed(cells)), dict(timed)), 2)


def test_durations_of_some_cells_scale_the_cost_model_for_the_rest() -> None:
    cells = build_matrix(["led"], ["base", "large"], [1000], ["t"])
    # The timed cell took 10x its modelled cost: the untimed one is scaled alike, so neither dominates wrongly.
    costs = group_costs(cells, {"led-base-1000-t": 10000.0})
    assert costs == {("led", "base"): 10000.0, ("led", "large"): 30000.0}


@pytest.mark.parametrize(("spec", "env", "expected"), [
    ("2/4", {}, Shard(2, 4)),
    ("auto", {"LONGEFF_SHARD": "3/5"}, Shard(3, 5, "LONGEFF_SHARD")),
    ("auto", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"},
     Shard(3, 4, "SLURM_ARRAY_TASK_ID=7")),
    ("auto/4", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(1, 4, "SLURM_ARRAY_TASK_ID=0")),
    ("auto", {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "4",
              "SLURM_ARRAY_TASK_COUNT": "3"}, Shard(3, 3, "SLURM_ARRAY_TASK_ID=8")),
    ("auto/3", {"JOB_COMPLETION_INDEX": "0"}, Shard(1, 3, "JOB_COMPLETION_INDEX=0")),
])
def test_shard_from_the_environment(spec: str, env: dict[str, str], expected: Shard) -> None:
    assert shard_from_env(spec, env) == expected


@pytest.mark.parametrize(("spec", "env", "message"), [
    ("auto", {}, "none of LONGEFF_SHARD, SLURM_ARRAY_TASK_ID"),
    ("auto/3", {"LONGEFF_SHARD": "1/4"}, "contradicts LONGEFF_SHARD"),
    ("auto", {"JOB_COMPLETION_INDEX": "2"}, "use --longeff-shard auto/N"),
    ("auto/2", {"JOB_COMPLETION_INDEX": "2"}, "outside 0..1"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_MIN"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT is not"),
    ("auto", {"LONGEFF_SHARD": "5/4"}, "LONGEFF_SHARD: expected K/N"),
])
def test_missing_or_contradictory_environment_names_the_variables(spec: str, env: dict[str, str],
                                                                  message: str) -> None:
    with pytest.raises(ShardError, match=message):
        shard_from_env(spec, env)


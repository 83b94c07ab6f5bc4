"""Shards of the matrix: disjoint and complete, model groups kept, balanced by cost, chosen from options or the
environment."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_longeff.ci.shard import (
    Selection,
    Shard,
    ShardError,
    assign,
    group_costs,
    in_shard,
    load_durations,
    model_cost,
    run_selection,
    select,
    shard_cells,
    shard_from_env,
)
from pytest_longeff.matrix import Cell, build_matrix
from pytest_longeff.record.io import SCHEMA_VERSION, ReportError

if TYPE_CHECKING:
    from pytest_longeff.config.settings import Settings

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



# -- tests that are not matrix cells (``longeff_window`` benchmarks) ------------------------------------------------


def _node_ids(n: int) -> list[str]:
    return [f"benchmarks/test_windows.py::test_window_{i}" for i in range(n)]


@pytest.mark.parametrize("count", range(1, 7))
@pytest.mark.parametrize("tests", range(11))
def test_every_test_that_is_not_a_cell_runs_in_exactly_one_shard(count: int, tests: int) -> None:
    ids = _node_ids(tests)
    owners = {nodeid: [k for k in range(1, count + 1) if in_shard(nodeid, Shard(k, count))] for nodeid in ids}
    assert {nodeid: len(found) for nodeid, found in owners.items()} == dict.fromkeys(ids, 1)
    # The same through the selection the plugin asks, with no cell of the matrix in any shard.
    selections = [Selection(Shard(k, count), frozenset(), "the cost model") for k in range(1, count + 1)]
    runs = [[n for n in ids if s.keeps(None, n)] for s in selections]
    assert sorted(n for run in runs for n in run) == sorted(ids)


def test_a_test_that_is_not_a_cell_goes_to_the_shard_of_its_node_id_hash() -> None:
    # An independent statement of the rule: CRC-32 of the node id, modulo the count, is the 0-based shard.
    for nodeid in _node_ids(10):
        expected = zlib.crc32(nodeid.encode("utf-8")) % 4 + 1
        assert [k for k in range(1, 5) if in_shard(nodeid, Shard(k, 4))] == [expected]
    assert all(in_shard(nodeid, Shard(1, 1)) for nodeid in _node_ids(10))


@pytest.mark.parametrize("count", range(1, 7))
def test_every_cell_runs_in_exactly_one_shard_and_tests_are_kept_by_cell_not_node_id(count: int) -> None:
    cells = build_matrix(["led", "bigbird", "pegasus"], ["base", "large"], [1024, 4096], ["qasper", "qmsum"])
    selections = [select(f"{k}/{count}", {}, cells, None) for k in range(1, count + 1)]
    owners = {c.id: [s.shard.index for s in selections if s.keeps(c.id, "any::node")] for c in cells}
    assert {cell: len(found) for cell, found in owners.items()} == dict.fromkeys(owners, 1)
    assert sum(len(s.cells) for s in selections) == len(cells)
    # A cell's test runs where its cell is, whatever its node id hashes to.
    for s in selections:
        assert all(s.keeps(c.id, f"nodeid-{i}") == (c.id in s.cells) for i, c in enumerate(cells))
    # Six model groups: every shard of up to six gets at least one.
    assert all(s.cells for s in selections)


def test_the_cost_model_is_the_size_factor_times_the_input_length() -> None:
    assert model_cost(Cell("led", "base", 1024, "t")) == 1024.0
    assert model_cost(Cell("led", "large", 1024, "t")) == 3072.0
    assert model_cost(Cell("led", "xl", 2000, "t")) == 2000.0  # an unknown size counts as base
    cells = build_matrix(["led"], ["base", "large"], [1000, 3000], ["a", "b"])
    assert group_costs(cells) == {("led", "base"): 8000.0, ("led", "large"): 24000.0}
    # Durations that are zero, negative or of cells outside the matrix leave the cost model as it is.
    assert group_costs(cells, {"led-base-1000-a": 0.0, "led-large-1000-a": -5.0, "other": 7.0}) == \
        group_costs(cells)


def test_assign_to_one_shard_keeps_every_group_and_to_more_shards_than_groups_leaves_some_empty() -> None:
    costs = {("a", "base"): 1.0, ("b", "base"): 2.0}
    assert assign(costs, 1) == [[("b", "base"), ("a", "base")]]
    assert assign(costs, 3) == [[("b", "base")], [("a", "base")], []]
    # Equal costs: by name; equal loads: the lower shard number.
    assert assign({("b", "x"): 5.0, ("a", "x"): 5.0, ("c", "x"): 1.0}, 2) == [[("a", "x"), ("c", "x")],
                                                                             [("b", "x")]]


def test_shard_cells_keep_matrix_order() -> None:
    cells = build_matrix(["led", "bigbird"], ["base"], [512, 1024], ["qasper"])
    assert shard_cells(cells, Shard(1, 1)) == cells
    first = shard_cells(cells, Shard(1, 2))
    assert first == [c for c in cells if c.family == first[0].family] and len(first) == 2


# -- the selection, its header and line, and the durations report ---------------------------------------------------


def _report(path: Path, times: dict[str, object]) -> Path:
    records = [{"id": cell, "status": "passed", "cell_wall_s": t} for cell, t in times.items()]
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "records": records}))
    return path


def test_durations_are_the_positive_cell_times_of_a_valid_report(tmp_path: Path) -> None:
    path = _report(tmp_path / "r.json", {"a": 2.5, "b": 0, "c": None, "d": 7})
    times = load_durations(path)
    assert times == {"a": 2.5, "d": 7.0} and all(type(v) is float for v in times.values())
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ReportError, match="bad.json: not a readable"):
        load_durations(tmp_path / "bad.json")


def test_selection_header_line_and_spec(tmp_path: Path) -> None:
    cells = build_matrix(["led", "bigbird"], ["base"], [1024], ["qasper"])
    modelled = select("2/2", {}, cells, None)
    assert modelled.shard.spec == "2/2"
    assert modelled.header() == {"index": 2, "count": 2, "source": "option",
                                 "balance": "the cost model (size factor x input length)", "cells": 1}
    assert modelled.line(1) == ("longeff: shard 2/2: 1 cell (from option; balanced by the cost model (size factor x "
                                "input length))")
    assert modelled.line(0) == ("longeff: shard 2/2: 0 cells (from option; balanced by the cost model (size factor "
                                "x input length))")
    report = _report(tmp_path / "times.json", {"led-base-1024-qasper": 100.0, "other-base-1-x": 3.0})
    timed = select("auto", {"LONGEFF_SHARD": "1/2"}, cells, report, "times.json")
    assert timed.balance == "cell times in times.json (1 of 2 cells timed)"
    assert timed.line(2) == ("longeff: shard 1/2: 2 cells (from LONGEFF_SHARD; balanced by cell times in times.json "
                             "(1 of 2 cells timed))")
    # The measured 100 s cell outweighs the modelled one (scaled by the same ratio, 1024 x 100/1024 = 100 s: a tie
    # broken by name, bigbird first); without a name to show, the path is shown.
    assert timed.cells == frozenset({"bigbird-base-1024-qasper"})
    assert select("1/2", {}, cells, report).balance == f"cell times in {report} (1 of 2 cells timed)"
    # A report without a usable time balances by the cost model.
    empty = _report(tmp_path / "empty.json", {"led-base-1024-qasper": 0})
    assert select("1/2", {}, cells, empty, "empty.json").balance == "the cost model (size factor x input length)"


def _settings(**changes: object) -> Settings:
    values: dict[str, object] = {"shard": "2/2", "durations": None, "families": ("led", "bigbird"),
                                 "sizes": ("base",), "lengths": (1024,), "tasks": ("qasper",)}
    values.update(changes)
    return cast("Settings", SimpleNamespace(**values))


def test_run_selection_takes_the_settings_matrix_and_durations_relative_to_the_directory(tmp_path: Path) -> None:
    assert run_selection(_settings(shard=None), {}, tmp_path) is None
    assert run_selection(_settings(shard=""), {}, tmp_path) is None
    chosen = run_selection(_settings(), {}, tmp_path)
    assert chosen is not None and chosen.cells == frozenset({"led-base-1024-qasper"})
    _report(tmp_path / "times.json", {"bigbird-base-1024-qasper": 50.0})
    relative = run_selection(_settings(durations="times.json"), {}, tmp_path)
    assert relative is not None and relative.balance == "cell times in times.json (1 of 2 cells timed)"
    absolute = run_selection(_settings(durations=str(tmp_path / "times.json")), {}, Path("/nonexistent"))
    assert absolute is not None and absolute.cells == relative.cells


def test_run_selection_errors_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^--longeff-shard: --longeff-shard auto: none of LONGEFF_SHARD") as info:
        run_selection(_settings(shard="auto"), {}, tmp_path)
    assert not isinstance(info.value, ShardError) and info.value.__cause__ is None
    with pytest.raises(ValueError, match=r"^--longeff-durations: .*missing\.json: not a readable") as info:
        run_selection(_settings(durations="missing.json"), {}, tmp_path)
    assert info.value.__suppress_context__


@pytest.mark.parametrize(("spec", "env", "message"), [
    ("5/4", {}, "--longeff-shard: expected K/N with 1 <= K <= N (e.g. 2/4), got '5/4'"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_ID='x' is not an integer"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "1"},
     "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; use --longeff-shard auto/N"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"},
     "SLURM_ARRAY_TASK_ID=4 does not map to a shard of 4 (SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_STEP=1): "
     "K = (ID - MIN) / STEP + 1 must be in 1..SLURM_ARRAY_TASK_COUNT"),
    ("auto", {"JOB_COMPLETION_INDEX": "2"},
     "JOB_COMPLETION_INDEX is set but a Kubernetes pod does not see the completion count: use --longeff-shard auto/N "
     "with N = the Job's completions"),
    ("auto/2", {"JOB_COMPLETION_INDEX": "2"}, "JOB_COMPLETION_INDEX=2 is outside 0..1 (--longeff-shard auto/2)"),
    ("auto", {}, "--longeff-shard auto: none of LONGEFF_SHARD, SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, "
     "SLURM_ARRAY_TASK_MIN, JOB_COMPLETION_INDEX is set; set LONGEFF_SHARD=K/N or run in a SLURM job array or "
     "Kubernetes Indexed Job"),
    ("auto/3", {"LONGEFF_SHARD": "1/4"},
     "--longeff-shard auto/3 contradicts LONGEFF_SHARD: the environment says 4 shards, the option 3"),
])
def test_environment_errors_say_what_is_wrong_and_how_to_fix_it(spec: str, env: dict[str, str],
                                                                 message: str) -> None:
    with pytest.raises(ShardError) as info:
        shard_from_env(spec, env)
    assert str(info.value) == message


@pytest.mark.parametrize("env", [
    {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "4"},  # between steps
    {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_STEP": "0", "SLURM_ARRAY_TASK_COUNT": "4"},  # no step
    {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_COUNT": "4"},  # below the minimum
])
def test_slurm_task_ids_that_are_no_shard_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ShardError, match=f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']} does not map"):
        shard_from_env("auto", env)


def test_slurm_without_a_count_takes_it_from_the_option_and_the_index_is_an_integer() -> None:
    found = shard_from_env("auto/3", {"SLURM_ARRAY_TASK_ID": "2"})
    assert found == Shard(3, 3, "SLURM_ARRAY_TASK_ID=2")
    stepped = shard_from_env("auto", {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_STEP": "4",
                                      "SLURM_ARRAY_TASK_COUNT": "3"})
    assert stepped.spec == "3/3" and type(stepped.index) is int


def test_the_cost_model_is_scaled_by_measured_times_even_for_tiny_models() -> None:
    # One-token inputs: the timed base cell models as 1.0, measured 10 s; the large one is scaled alike to 30 s.
    cells = build_matrix(["led"], ["base", "large"], [1], ["t"])
    assert group_costs(cells, {"led-base-1-t": 10.0}) == {("led", "base"): 10.0, ("led", "large"): 30.0}


def test_assign_adds_each_group_to_its_shards_load() -> None:
    # 5 -> shard 1, 4 -> shard 2, 3 -> shard 2 (load 4 < 5, now 7), 3 -> shard 1 (load 5 < 7).
    costs = {("a", "x"): 5.0, ("b", "x"): 4.0, ("c", "x"): 3.0, ("d", "x"): 3.0}
    assert assign(costs, 2) == [[("a", "x"), ("d", "x")], [("b", "x"), ("c", "x")]]


def test_measured_times_decide_the_split_of_cells_and_of_the_selection(tmp_path: Path) -> None:
    cells = build_matrix(["led", "bigbird", "pegasus"], ["base"], [1024], ["qasper"])
    # The cost model ties the three groups: by name, bigbird goes to shard 1, led to shard 2, pegasus to shard 1 (equal
    # loads: the lower number).
    assert [c.family for c in shard_cells(cells, Shard(1, 2))] == ["bigbird", "pegasus"]
    # Measured: led 100 s, bigbird 1 s; pegasus is modelled at their ratio, 1024 x 101 / 2048 = 50.5 s. Led takes
    # shard 1, pegasus and bigbird share shard 2.
    times = {"led-base-1024-qasper": 100.0, "bigbird-base-1024-qasper": 1.0}
    assert [c.family for c in shard_cells(cells, Shard(1, 2), times)] == ["led"]
    report = _report(tmp_path / "times.json", times)
    chosen = select("1/2", {}, cells, report, "times.json")
    assert chosen.cells == frozenset({"led-base-1024-qasper"})
    assert chosen.balance == "cell times in times.json (2 of 3 cells timed)"


def test_durations_below_a_second_are_kept(tmp_path: Path) -> None:
    assert load_durations(_report(tmp_path / "r.json", {"a": 0.5})) == {"a": 0.5}

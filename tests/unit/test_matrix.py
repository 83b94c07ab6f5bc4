from __future__ import annotations

import pytest

from pytest_longeff.matrix import (
    DEFAULT_FAMILIES,
    DEFAULT_LENGTHS,
    DEFAULT_SIZES,
    DEFAULT_TASKS,
    Cell,
    build_matrix,
    check_id_tokens,
    parse_lengths,
    parse_name_list,
)


def _default() -> list[Cell]:
    return build_matrix(DEFAULT_FAMILIES, DEFAULT_SIZES, DEFAULT_LENGTHS, DEFAULT_TASKS)


def test_default_matrix_has_64_unique_cells_with_readable_ids() -> None:
    cells = _default()
    ids = [c.id for c in cells]
    assert len(cells) == 64 and len(set(ids)) == 64
    assert "led-base-4096-gov_report" in ids
    assert "bigbird-large-1024-summ_screen_fd" in ids


def test_cells_sharing_a_model_are_adjacent() -> None:
    keys = [c.model_key for c in _default()]
    runs = [k for n, k in enumerate(keys) if n == 0 or keys[n - 1] != k]
    assert len(runs) == len(set(runs)) == 4


@pytest.mark.parametrize(
    ("words", "expected"),
    [(["led", "4096"], 8), (["bigbird"], 32), (["base", "qasper"], 8), (["large", "qmsum", "2048"], 2)],
)
def test_token_selection_is_exact(words: list[str], expected: int) -> None:
    # `-k "a and b"` matches substrings of the id: no id token may contain another's name. ("base and qasper"
    # is 2 families x 4 lengths = 8 cells.)
    chosen = [c for c in _default() if all(w in c.id for w in words)]
    assert len(chosen) == expected
    for cell in chosen:
        tokens = cell.id.split("-")
        assert all(w in tokens for w in words)


def test_default_names_pass_the_id_token_check() -> None:
    check_id_tokens([*DEFAULT_FAMILIES, *DEFAULT_SIZES, *DEFAULT_TASKS, *map(str, DEFAULT_LENGTHS)])


@pytest.mark.parametrize("names", [["led", "scaled"], ["1024", "10240"], ["Led"], ["a-b"]])
def test_id_token_check_refuses_ambiguous_names(names: list[str]) -> None:
    with pytest.raises(ValueError):
        check_id_tokens(names)


def test_parse_lengths() -> None:
    assert parse_lengths("1024, 4096,1024") == (1024, 4096)
    for bad in ("", "x", "0", "-5", "1024,abc"):
        with pytest.raises(ValueError, match="positive integers"):
            parse_lengths(bad)


def test_parse_name_list_names_accepted_values() -> None:
    assert parse_name_list("large,base", ("base", "large"), "sizes") == ("large", "base")
    with pytest.raises(ValueError, match="accepted: base, large"):
        parse_name_list("huge", ("base", "large"), "sizes")

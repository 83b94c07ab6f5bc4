"""What the plugin does at load time runs in every pytest run of the environment: help, ini parsing, collection,
``--fixtures``, ``--markers``, ``--version``. Each must work in an unrelated suite, not only in ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_longeff.config.settings import GROUP_DESCRIPTION, OPTIONS

PINNED_HELP = Path(__file__).resolve().parents[1] / "support" / "pinned" / "help_group.txt"
UPDATE_ENV = "LONGEFF_UPDATE_PINNED"


@pytest.fixture(autouse=True)
def _fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    # argparse wraps help to the terminal's width: a fixed one makes the pinned text the same everywhere.
    monkeypatch.setenv("COLUMNS", "100")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A subprocess loads the plugin through its entry point, as an unrelated suite of the environment does.
    pytester.makepyfile(test_unrelated="def test_one():\n    assert 1 + 1 == 2\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def _group_text(lines: list[str]) -> str:
    start = lines.index(f"{GROUP_DESCRIPTION}:")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].strip())
    return "\n".join(lines[start:end]) + "\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_0_and_lists_every_option(pytester: pytest.Pytester, flag: str) -> None:
    """Guards the `%` crash: argparse %-formats help strings, so one bare `%` made --help a traceback."""
    result = _run(pytester, flag)
    assert result.ret == 0, result.stderr.str()
    lines = result.outlines
    group = _group_text(lines)
    for opt in OPTIONS:
        assert opt.flag in group, f"{opt.flag} missing from the help group"
        assert f"  {opt.dest} (" in "\n".join(lines), f"ini key {opt.dest} missing from --help"
    # The escaped percent signs print as single ones.
    assert "10%" in group and "%%" not in group


def test_help_group_text_is_pinned(pytester: pytest.Pytester) -> None:
    """A change to any option's help is a visible diff of tests/pinned/help_group.txt; regenerate it with
    LONGEFF_UPDATE_PINNED=1 and review the diff."""
    result = _run(pytester, "--help")
    assert result.ret == 0, result.stderr.str()
    text = _group_text(result.outlines)
    if os.environ.get(UPDATE_ENV):
        PINNED_HELP.write_text(text, encoding="utf-8")
    assert text == PINNED_HELP.read_text(encoding="utf-8"), f"help group changed; rerun with {UPDATE_ENV}=1"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--co", "-q"), "1 test collected"),
        (("--fixtures",), "longeff_settings"),
        (("--markers",), "@pytest.mark.skip"),
        (("--version",), "pytest"),
        (("-q",), "1 passed"),
    ],
)
def test_load_time_paths_work_in_an_unrelated_suite(pytester: pytest.Pytester, args: tuple[str, ...],
                                                    expected: str) -> None:
    result = _run(pytester, *args)
    assert result.ret == 0, result.stderr.str()
    assert expected in result.stdout.str() + result.stderr.str()
    # An unrelated suite collects no cell: the plugin says nothing and writes no report.
    assert "longeff:" not in result.stdout.str()
    assert not (pytester.path / "reports").exists()


def test_unrelated_ini_file_is_not_rejected(pytester: pytest.Pytester) -> None:
    """An unrelated suite's own ini (with keys the plugin does not know) runs as before."""
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow tests\nxfail_strict = true\n")
    result = _run(pytester, "-q")
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["*1 passed*"])


def test_bad_ini_value_is_a_usage_error_naming_the_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlongeff_repeats = zero\n")
    result = _run(pytester, "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "longeff_repeats" in result.stderr.str() and "Traceback" not in result.stderr.str()


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "-p", "no:longeff", "--help")
    assert result.ret == 0
    assert GROUP_DESCRIPTION not in result.stdout.str()

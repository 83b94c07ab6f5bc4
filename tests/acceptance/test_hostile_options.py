"""The options that read a file from elsewhere (``--longeff-baseline``, ``--longeff-resume``,
``--longeff-durations``, ``--longeff-acknowledged``) given an unusable one: a usage error (pytest's exit 4) at
configure time, one line naming the option, the file and what is wrong; never an INTERNALERROR or a traceback.

The hostile files live outside the pytester folder, which the acceptance conftest validates as reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_RUN = Path(__file__).parents[2] / "docs" / "assets" / "tiny-run.json"
BENCH = "def test_cell(longeff_cell):\n    pass\n"


def _report_with(old: str, new: str) -> str:
    text = TINY_RUN.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


#: kind -> (file text, what the message says is wrong). An acknowledged file is JSON too, so the same texts serve.
FILES = {
    "nested 1,000 deep": (_report_with('"data_dir": null', '"data_dir": ' + "[" * 1000 + "]" * 1000),
                          "nested more than 64 deep"),
    "1e999": (_report_with('"median": ', '"median": 1e999, "x": '), "the number 1e999"),
    "not a report": (json.dumps({"tests": [], "summary": {}}), "not a pytest-longeff JSON report"),
}
ACK_MESSAGES = {"not a report": "expected a list of entries under 'acknowledged'"}


def _options(option: str, path: Path, baseline: Path) -> list[str]:
    """The command line that makes pytest read ``path`` for ``option`` at configure time."""
    if option == "--longeff-durations":
        return ["--longeff-shard=1/2", f"--longeff-durations={path}"]
    if option == "--longeff-acknowledged":
        return [f"--longeff-baseline={baseline}", "--longeff-fail-on=score:10%", f"--longeff-acknowledged={path}"]
    if option == "--longeff-baseline":
        return [f"--longeff-baseline={path}", "--longeff-fail-on=score:10%"]
    return ["--longeff-device=cpu", f"--longeff-resume={path}"]


def _assert_usage_error(result: pytest.RunResult, option: str, path: Path, message: str) -> None:
    output = result.stdout.str() + "\n" + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output[-3000:]
    assert "INTERNALERROR" not in output and "Traceback" not in output
    lines = [line for line in output.splitlines() if f"{option}:" in line]
    assert len(lines) == 1, output[-3000:]
    assert str(path) in lines[0] and message in lines[0], lines[0]


@pytest.mark.parametrize("option", ["--longeff-baseline", "--longeff-resume", "--longeff-durations",
                                    "--longeff-acknowledged"])
@pytest.mark.parametrize("kind", [*FILES, "missing"])
def test_an_unusable_file_is_a_usage_error_naming_the_option_and_the_file(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, option: str, kind: str) -> None:
    if option == "--longeff-resume" and kind == "missing":
        pytest.skip("a resume file that does not exist yet carries nothing, by design (see the next test)")
    folder = tmp_path_factory.mktemp("hostile")
    path = folder / "file.json"
    if kind == "missing":
        message = "not a readable"
    else:
        text, message = FILES[kind]
        path.write_text(text, encoding="utf-8")
        if option == "--longeff-acknowledged":
            message = ACK_MESSAGES.get(kind, message)
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest("--collect-only", "-q", *_options(option, path, TINY_RUN))
    _assert_usage_error(result, option, path, message)


def test_a_resume_file_that_does_not_exist_yet_carries_nothing(pytester: pytest.Pytester,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    pytester.makepyfile(test_bench=BENCH)
    missing = tmp_path_factory.mktemp("hostile") / "not-yet.json"
    result = pytester.runpytest("--collect-only", "-q", "--longeff-device=cpu", f"--longeff-resume={missing}")
    assert result.ret == pytest.ExitCode.OK

"""Every ``pytest-longeff`` command over malformed and hostile report files: what each one answers.

    .venv/bin/python benchmarks/hostile_reports.py            # 44 kinds of file x 5 commands
    .venv/bin/python benchmarks/hostile_reports.py --show     # also each run that went wrong, with its output

Each kind of file is made from a real report (``docs/assets/tiny-run.json``, 16 cells) by one edit: nesting 1,000
and 100,000 deep, integers of 5,000 digits, ``1e400``, ``1e999``, ``NaN``/``Infinity`` literals, truncated or
non-UTF-8 text, wrong types in each section a reader walks, indexes out of range, and strings that try to start
GitHub Actions workflow commands (``\\n::add-mask::``, ``\\r::error::``) or move the terminal (ANSI escapes). Each
file goes through ``show``, ``merge`` (with a valid second shard), ``compare`` as the base and as the new report,
and ``plot`` (with matplotlib), in this process through :func:`pytest_longeff.cli.main`, as a user would call it
(no debug variable set).

A run goes wrong when: an exception escapes (a traceback), the file is unusable (``load_report`` refuses it) and
the command does not exit 2, or an output line (leading spaces stripped) starts with ``::`` - a workflow command
GitHub Actions would execute. The last line counts them; exit status 1 when any run went wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "assets" / "tiny-run.json"
PAYLOAD = "x\n::add-mask::pwned\r::error::pwned\u2028::warning::pwned\x1b[2J|<img src=x onerror=alert(1)>"

Doc = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Doc], Doc]:
    """An edit putting ``value`` at a dotted path (``records.0.train``; ``*`` for every record)."""
    def edit(doc: Doc) -> Doc:
        parts = path.split(".")
        targets = [doc]
        for part in parts[:-1]:
            nxt = []
            for t in targets:
                if part == "*":
                    nxt.extend(t)
                else:
                    nxt.append(t[int(part)] if isinstance(t, list) else t.setdefault(part, {}))
            targets = nxt
        last = parts[-1]
        for t in targets:
            if isinstance(t, list):
                t[int(last)] = copy.deepcopy(value)
            else:
                t[last] = copy.deepcopy(value)
        return doc
    return edit


def _text(make: Callable[[str], str]) -> Callable[[Doc], str]:
    """An edit of the file's text (what JSON cannot hold)."""
    return lambda doc: make(json.dumps(doc, indent=1))


def _deep(n: int) -> str:
    return "[" * n + "]" * n


KINDS: dict[str, Callable[[Doc], Doc | str | bytes]] = {
    "nested 1,000 deep in settings": _text(lambda t: t.replace('"data_dir": null', '"data_dir": ' + _deep(1000), 1)),
    "nested 100,000 deep": lambda doc: _deep(100_000),
    "5,000-digit integer batch": _text(lambda t: t.replace('"batch_size": 4', '"batch_size": ' + "9" * 5000, 1)),
    "1e400 throughput": _text(lambda t: t.replace('"samples_per_s": ', '"samples_per_s": 1e400, "x": ', 1)),
    "1e999 median": _text(lambda t: t.replace('"median": ', '"median": 1e999, "x": ')),
    "1e-320 median": _text(lambda t: t.replace('"median": ', '"median": 1e-320, "x": ')),
    "every median 0": _text(lambda t: t.replace('"median": ', '"median": 0, "x": ')),
    "NaN literal": _text(lambda t: t.replace('"median": ', '"median": NaN, "x": ')),
    "Infinity literal": _text(lambda t: t.replace('"time_s": ', '"time_s": Infinity, "x": ')),
    "-Infinity literal": _text(lambda t: t.replace('"time_s": ', '"time_s": -Infinity, "x": ')),
    "truncated text": _text(lambda t: t[: len(t) // 2]),
    "empty file": lambda doc: "",
    "not UTF-8": lambda doc: b"\xff\xfe" + json.dumps(doc).encode("utf-16-le"),
    "a list, not an object": lambda doc: [doc],
    "schema_version 99": _set("schema_version", 99),
    'schema_version "2"': _set("schema_version", "2"),
    "records an object": _set("records", {"a": 1}),
    "cell id with workflow commands": _set("records.0.id", PAYLOAD),
    "cell id starting with ::": _set("records.0.id", "::add-mask::pwned"),
    "task with /": _set("records.0.task", "gov/../../report"),
    "family with workflow commands": _set("records.0.family", PAYLOAD),
    "reason with workflow commands": _set("records.0.reason", PAYLOAD),
    "machine_index out of range": lambda doc: _set("records.*.machine_index", 7)(_set("machines", [doc["machine"]])(doc)),
    "machine_index negative": lambda doc: _set("records.*.machine_index", -3)(_set("machines", [doc["machine"]])(doc)),
    "machines a string": lambda doc: _set("records.*.machine_index", 0)(_set("machines", "cpu")(doc)),
    "shard 5 of 2": _set("shard", {"index": 5, "count": 2}),
    "shard count 0": _set("shard", {"index": 1, "count": 0}),
    "lengths as strings": _set("settings.lengths", ["1024", "2048"]),
    "families a string": _set("settings.families", "led"),
    "settings a list": _set("settings", ["profile", "tiny"]),
    "settings.repeats a string": _set("settings.repeats", "three"),
    "train a string": _set("records.*.train", "fast"),
    "train stats a list": _set("records.*.train.samples_per_s_stats", [1, 2, 3]),
    "inference null": _set("records.*.inference", None),
    "accuracy score a string": _set("records.*.accuracy.score", "high"),
    "probe log a number": _set("records.*.batch_search.probe_log", 3),
    "gate section a list": _set("records.*.gate", [1, 2]),
    "findings of numbers": _set("session.findings", [1, 2, 3]),
    "status unknown": _set("records.0.status", "weird"),
    "reason an object": _set("records.0.reason", {"why": 1}),
    "a null record": _set("records.1", None),
    "seq_len negative": _set("records.*.seq_len", -1024),
    "10 MB string": _set("records.0.model", "m" * 10_000_000),
    "merged_from of numbers": _set("merged_from", [1, 2]),
}


def _write(path: Path, content: Doc | str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=1), encoding="utf-8")


def _usable(path: Path) -> bool:
    from pytest_longeff.record.io import load_report

    try:
        load_report(path)
    except ValueError:
        return False
    except Exception:  # noqa: BLE001 - a reader that crashes has not accepted the file either
        return False
    return True


def _run(argv: list[str]) -> tuple[int | None, str, str | None]:
    """Exit code, output, and the traceback if an exception escaped."""
    from pytest_longeff.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code: int | None = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - what this script counts
            return None, out.getvalue(), traceback.format_exc()
    return code, out.getvalue(), None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", action="store_true", help="print each run that went wrong, with its output")
    parser.add_argument("--kinds", help="only the kinds whose name contains this text")
    args = parser.parse_args()
    os.environ.pop("PYTEST_LONGEFF_DEBUG", None)
    try:
        import matplotlib  # noqa: F401

        plots = True
    except ImportError:
        plots = False
    base: Doc = json.loads(SOURCE.read_text(encoding="utf-8"))
    half = len(base["records"]) // 2
    outcomes: Counter[str] = Counter()
    wrong: list[str] = []
    table: list[list[str]] = []
    runs = 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        valid, other = tmp / "valid.json", tmp / "other.json"
        _write(valid, base)
        _write(other, {**copy.deepcopy(base), "records": copy.deepcopy(base["records"][half:])})
        for n, (name, edit) in enumerate(KINDS.items()):
            if args.kinds and args.kinds not in name:
                continue
            doc = {**copy.deepcopy(base), "records": copy.deepcopy(base["records"][:half])}
            bad = tmp / f"kind{n}.json"
            _write(bad, edit(doc))
            usable = _usable(bad)
            row = [name, "yes" if usable else "no"]
            commands = {"show": ["show", str(bad)],
                        "merge": ["merge", str(bad), str(other), "-o", str(tmp / f"merged{n}.json"),
                                  "--allow-missing"],
                        "compare (base)": ["compare", str(bad), str(valid)],
                        "compare (new)": ["compare", str(valid), str(bad)]}
            if plots:
                commands["plot"] = ["plot", str(bad), "-o", str(tmp / f"plots{n}")]
            for command, argv in commands.items():
                runs += 1
                code, output, tb = _run(argv)
                problems = []
                if tb is not None:
                    problems.append("traceback")
                if not usable and code != 2:
                    problems.append(f"unusable file but exit {code}")
                if any(line.lstrip().startswith("::") for line in output.splitlines()):
                    problems.append("a line starting with ::")
                outcomes[f"exit {code}" if tb is None else "traceback"] += 1
                row.append(("traceback" if tb is not None else str(code)) + (" !" if problems else ""))
                if problems:
                    wrong.append(f"{name} | {command}: {', '.join(problems)}")
                    if args.show:
                        print(f"--- {name} | {command}: {', '.join(problems)}\n{(tb or output)[-1500:]}")
                print(f"\r{runs} runs", end="", file=sys.stderr, flush=True)
            table.append(row)
    print(file=sys.stderr)
    from tabulate import tabulate

    headers = ["file", "loads", "show", "merge", "compare (base)", "compare (new)", *(["plot"] if plots else [])]
    print(tabulate(table, headers=headers, tablefmt="github"))
    print("exit codes: 0 done, 1 regression or merge refused, 2 unusable file, 3 inconclusive; ! = went wrong")
    print(f"{runs} runs over {len([k for k in KINDS if not args.kinds or args.kinds in k])} kinds of file: "
          + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    for line in wrong:
        print(f"  wrong: {line}")
    print(f"went wrong: {len(wrong)} of {runs} runs")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

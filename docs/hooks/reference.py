"""mkdocs hook: the reference pages, written from the code on every build, and a check of the hand-written ones.

The pages under ``reference/`` are never files in the repository, so they cannot go stale: ``on_files`` adds them
to the build from the option table (:data:`pytest_longeff.config.settings.OPTIONS`), the table of figures
(:data:`pytest_longeff.record.figures.FIGURES`), the report schema shipped in the package and the command line's
own ``--help``. ``on_page_markdown`` warns about any ``--longeff-*`` option a page names that the option table
does not have, so ``mkdocs build --strict`` fails on a renamed option as it does on a broken link.
``on_config`` lists dated GPU validation results (``gpu-validation-<date>.md``, written by
``benchmarks/gpu_validation.py``) under Validation.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.reference")

FLAG = re.compile(r"--longeff-[a-z0-9]+(?:-[a-z0-9]+)*")
HELP_COLUMNS = "100"
GENERATED_NOTE = ("*Generated from the code on every build of this site ({source}); edit the code, not this "
                  "page.*")
VALIDATION = "Validation"


# -- helpers ---------------------------------------------------------------------------------------------------------
def text(value: str) -> str:
    """``value`` as literal Markdown text: HTML and emphasis characters escaped."""
    escaped = html.escape(value, quote=False)
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", escaped)


def code(value: str) -> str:
    """``value`` as a Markdown code span (it may hold backticks)."""
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of already formatted cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def fixed_columns() -> Iterator[None]:
    """Fix ``COLUMNS`` while help is printed: argparse wraps to it, and a fixed width makes pages alike everywhere."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


# -- reference/options.md --------------------------------------------------------------------------------------------
def options_page() -> str:
    """Every ``--longeff-*`` option, its ini key, value and help, in the order ``pytest --help`` lists them."""
    from pytest_longeff.config.settings import GROUP_DESCRIPTION, OPTIONS

    out = ["# Options\n", GENERATED_NOTE.format(source="`pytest_longeff.config.settings.OPTIONS`") + "\n",
           (f"`pytest --help` lists these under \"{text(GROUP_DESCRIPTION)}\". Every option has an ini key "
           "(`longeff_*`, in `pytest.ini`, `pyproject.toml`'s `[tool.pytest.ini_options]` or `setup.cfg`); the "
           "command line wins over the ini file, and the ini file over the profile's default. A wrong value is a "
           "usage error naming the option (or ini key) and the accepted values.\n")]
    rows = [[f"[{code(opt.flag)}](#{opt.name})", code(opt.metavar) if opt.metavar else "(a flag)", code(opt.dest)]
            for opt in OPTIONS]
    out.append(table(["option", "value", "ini key"], rows))
    for opt in OPTIONS:
        value = (f"value {code(opt.metavar)}" if opt.metavar else
                 f"a flag; in an ini file {code(opt.dest + ' = true')}")
        out.append(f"## {code(opt.flag)} {{#{opt.name}}}\n\n{value} · ini key {code(opt.dest)}\n\n{text(opt.help)}\n")
    return "\n".join(out)


# -- reference/figures.md --------------------------------------------------------------------------------------------
def figures_page() -> str:
    """The table of figures, the window figures' suffixes and what the gate takes by default."""
    from pytest_longeff.choices import DEFAULT_FAIL_ON
    from pytest_longeff.record.figures import FIGURES, PREFIX, WINDOW_FIGURES

    out = ["# Figures\n", GENERATED_NOTE.format(source="`pytest_longeff.record.figures`") + "\n",
           ("One name means one number everywhere: the JSON and CSV reports, the Markdown and terminal matrix, "
           "JUnit properties, CI outputs, the plots, the page and the gate all take their columns from this table. "
           "A figure that was not measured is `null` in JSON and `n/a` in the terminal, never 0. *Gated* figures "
           "may be named in `--longeff-fail-on`; \"better\" says which way is an improvement, so the gate knows "
           "which way is a regression. Energy figures carry the energy method of their record section and are "
           "never gated when the method is `estimate`, the reading is coarse or the two sides used different "
           "methods.\n"),
           "## Cell figures\n"]
    rows = [[code(f.name), text(f.unit), "higher" if f.higher_is_better else "lower", "yes" if f.gated else "no",
             code(".".join(f.path)), "yes" if f.ci_path else "", text(f.method)] for f in FIGURES]
    out.append(table(["figure", "unit", "better", "gated", "in the record", "95% CI", "how it is obtained"], rows))
    out.append("## Window figures\n")
    out.append(f"A test using the `longeff_window` fixture adds, for each window `<name>` it measures, the figures "
               f"{code(PREFIX + '<name>_<suffix>')} below (a name is lower-case letters, digits and `_`). Every "
               "window figure is lower-is-better and may be gated.\n")
    rows = [[code(suffix), text(unit), code(f"windows.<name>.{key}"), code(f"windows.<name>.{ci}.ci95") if ci else "",
             "yes" if energy else "", text(method)]
            for suffix, (key, unit, ci, energy, method) in WINDOW_FIGURES.items()]
    out.append(table(["suffix", "unit", "in the record", "95% CI", "energy method applies", "how it is obtained"],
                     rows))
    out.append("## The gate's default\n")
    out.append(f"With `--longeff-baseline` and no `--longeff-fail-on`, the gate uses {code(DEFAULT_FAIL_ON)}.\n")
    return "\n".join(out)


# -- reference/report-schema.md --------------------------------------------------------------------------------------
def _type(spec: Mapping[str, Any]) -> str:
    if "$ref" in spec:
        name = str(spec["$ref"]).rsplit("/", 1)[-1]
        return f"[{text(name)}](#{name.replace('_', '-')})"
    if "const" in spec:
        return code(json.dumps(spec["const"]))
    if "enum" in spec:
        return " or ".join(code(json.dumps(v)) for v in spec["enum"])
    kinds = spec.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "array" in kinds and isinstance(spec.get("items"), Mapping):
        kinds = [f"array of {_type(spec['items'])}" if k == "array" else k for k in kinds]
    return " or ".join(kinds)


def _constraints(spec: Mapping[str, Any]) -> str:
    parts = [f"{key} {spec[key]}" for key in ("minimum", "maximum", "minLength") if key in spec]
    if spec.get("required"):
        parts.append("requires " + ", ".join(code(k) for k in spec["required"]))
    if spec.get("description"):
        parts.append(text(str(spec["description"])))
    return "; ".join(parts)


def _object_tables(title: str, spec: Mapping[str, Any], anchor: str) -> Iterator[str]:
    """A table of ``spec``'s properties, then one per nested object that declares properties of its own."""
    props: Mapping[str, Any] = spec.get("properties") or {}
    required = set(spec.get("required") or ())
    yield f"### {code(title)} {{#{anchor}}}\n"
    if _constraints(spec):
        yield _constraints(spec) + "\n"
    yield table(["key", "type", "required", "notes"],
                [[code(k), _type(v), "yes" if k in required else "", _constraints(v)] for k, v in props.items()])
    for key, sub in props.items():
        if isinstance(sub, Mapping) and sub.get("properties"):
            yield from _object_tables(f"{title}.{key}", sub, f"{anchor}-{key}")


def schema_page() -> str:
    """The report's JSON Schema as tables, and the file itself."""
    from importlib import resources

    from pytest_longeff.record.io import SCHEMA_RESOURCE, SCHEMA_VERSION

    raw = resources.files("pytest_longeff.record").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema = json.loads(raw)
    out = ["# Report schema\n",
           GENERATED_NOTE.format(source="`pytest_longeff/record/schema/report.schema.json`") + "\n",
           (f"`reports/longeff.json` is schema version **{SCHEMA_VERSION}**: {text(schema.get('title', ''))}. "
           f"{text(schema.get('description', ''))} Every tool that reads a report (`--longeff-baseline`, "
           "`--longeff-resume`, `--longeff-durations`, `pytest-longeff merge/show/compare/plot`) validates it against "
           "this schema (with `jsonschema` where installed) and refuses an older, newer or foreign file with a "
           "message. Which figure lives where in a record is in [Figures](figures.md).\n"),
           "## The report\n"]
    # The top level's description is the paragraph above; its tables follow.
    out.extend(_object_tables("report", {k: v for k, v in schema.items() if k != "description"}, "report"))
    out.append("## Definitions\n")
    for name, spec in (schema.get("$defs") or {}).items():
        if spec.get("properties"):
            out.extend(_object_tables(name, spec, name.replace("_", "-")))
        else:
            out.append(f"### {code(name)} {{#{name.replace('_', '-')}}}\n\n{_type(spec)}\n")
    out.append("## The schema file\n")
    out.append(f"```json\n{raw.rstrip()}\n```\n")
    return "\n".join(out)


# -- reference/cli.md ------------------------------------------------------------------------------------------------
def _help(*args: str) -> str:
    from pytest_longeff.cli import main

    buffer = io.StringIO()
    with fixed_columns(), contextlib.redirect_stdout(buffer):
        code_ = main([*args, "--help"])
    if code_ != 0:
        raise RuntimeError(f"pytest-longeff {' '.join(args)} --help exited {code_}")
    return buffer.getvalue().rstrip()


def cli_page() -> str:
    """``pytest-longeff --help`` and each subcommand's."""
    import pytest_longeff.cli as cli

    out = ["# Command line\n",
           GENERATED_NOTE.format(source="`pytest_longeff.cli` and the parsers it dispatches to") + "\n",
           ("The `pytest-longeff` command works on saved JSON reports outside pytest. Exit codes: "
           f"{cli.EXIT_OK} done; {cli.EXIT_REFUSED} the reports themselves are refused (`merge`: other settings, "
           "software, code or machine kind, a cell twice, cells missing; `compare`, `ab`: a regression); "
           f"{cli.EXIT_USAGE} a usage error or an unusable file (unreadable, not a longeff report, another schema "
           "version); 3 `compare`, `ab`: inconclusive (the measurements cannot resolve the tolerance). `show` and "
           "`compare` also read an A/B report of `ab` (`compare AB.json [--fail-on SPEC]` judges its rounds "
           "again).\n"),
           f"## `{cli.PROG}`\n", f"```text\n{_help()}\n```\n"]
    commands = [*(n for n in ("merge", "show") if n not in cli.DISPATCHED), *cli.DISPATCHED]
    for name in commands:
        where = f" (`{cli.DISPATCHED[name]}`)" if name in cli.DISPATCHED else ""
        out.append(f"## `{cli.PROG} {name}` {{#{name}}}\n")
        out.append(f"Its `--help`{where}:\n\n```text\n{_help(name)}\n```\n")
    return "\n".join(out)


PAGES: dict[str, Callable[[], str]] = {
    "reference/options.md": options_page,
    "reference/figures.md": figures_page,
    "reference/report-schema.md": schema_page,
    "reference/cli.md": cli_page,
}


# -- mkdocs events ---------------------------------------------------------------------------------------------------
def on_config(config: Any) -> Any:
    """List dated GPU validation results (``gpu-validation-<date>.md``, newest first) under Validation."""
    dated = sorted(Path(config["docs_dir"]).glob("gpu-validation-*.md"), reverse=True)
    section = next((item for item in config["nav"] or () if isinstance(item, dict) and VALIDATION in item), None)
    if dated and section is not None:
        listed = {next(iter(e.values())) if isinstance(e, dict) else e for e in section[VALIDATION]}
        section[VALIDATION].extend({f"GPU run {p.stem.removeprefix('gpu-validation-')}": p.name}
                                   for p in dated if p.name not in listed)
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference pages to the build."""
    for path, render in PAGES.items():
        if files.get_file_from_path(path) is not None:
            log.warning("docs/%s is generated on every build: remove the file from docs/", path)
            files.remove(files.get_file_from_path(path))
        files.append(File.generated(config, path, content=render()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Warn about ``--longeff-*`` options the option table does not have (a strict build then fails)."""
    from pytest_longeff.config.settings import OPTIONS

    known = {opt.flag for opt in OPTIONS}
    for flag in sorted(set(FLAG.findall(markdown)) - known):
        log.warning("%s names %s, which is not an option (pytest_longeff.config.settings.OPTIONS)",
                    page.file.src_uri, flag)
    return markdown

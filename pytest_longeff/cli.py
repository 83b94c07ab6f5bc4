"""``pytest-longeff``: work on saved JSON reports outside pytest.

    pytest-longeff merge SHARD.json... -o OUT.json [--allow-missing]
    pytest-longeff show REPORT.json                                 (an A/B report too)
    pytest-longeff compare BASE.json NEW.json [--fail-on SPEC]     (pytest_longeff.ci.compare)
    pytest-longeff compare AB.json [--fail-on SPEC]                 (an A/B report judged again)
    pytest-longeff ab --base ENV --head ENV [pytest args]           (pytest_longeff.ab.run)
    pytest-longeff plot REPORT.json [-o DIR]                        (pytest_longeff.report.plots.draw)

Exit codes: 0 done; 1 the reports themselves are refused (``merge``: other settings, software, code or machine
kind, a cell twice, cells missing; ``compare``, ``ab``: a regression); 2 a usage error or an unusable file
(unreadable, not a longeff report, another schema version, beyond the reading limits of
:func:`pytest_longeff.record.io.read_json`, invalid against the schema, a subcommand this installation lacks), or
an unexpected error while a command works on a report (one line that names the file; a bug to report;
``PYTEST_LONGEFF_DEBUG=1`` shows the traceback); 3 ``compare``, ``ab``: inconclusive (the measurements cannot
resolve the tolerance). An unusable file is never exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_longeff.matrix import build_matrix
from pytest_longeff.measure.machine import mismatch
from pytest_longeff.record.io import DEBUG_ENV, ReportError, dump_report, load_report, settings_diff, software_diff
from pytest_longeff.record.sections import is_cell
from pytest_longeff.text import for_terminal, guarded_output

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
PROG = "pytest-longeff"
#: Session counters that add up over shards.
SUMMED = ("model_builds", "model_cache_hits", "model_build_s", "measured_s", "session_wall_s", "outside_windows_s",
          "wall_s", "workers")


class MergeRefused(Exception):
    """Reports that must not be merged, with every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _shard_spec(doc: dict[str, Any]) -> str | None:
    shard = doc.get("shard")
    return f"{shard['index']}/{shard['count']}" if isinstance(shard, dict) else None


def _comparability(docs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Why the reports were not measured alike (settings but the shard, software and code, machine kind)."""
    (first_name, first), problems = docs[0], []
    for name, doc in docs[1:]:
        for what, differ in (("settings", settings_diff(first.get("settings") or {}, doc.get("settings") or {})),
                             ("software or code", software_diff(first.get("software") or {},
                                                                doc.get("software") or {})),
                             ("kind of machine", mismatch(first.get("machine") or {}, doc.get("machine") or {}))):
            if differ is not None:
                problems.append(f"{name}: other {what} than {first_name} ({differ})")
    counts = {spec.split("/")[1] for _, d in docs if (spec := _shard_spec(d))}
    if len(counts) > 1:
        problems.append(f"shards of different splits ({', '.join(sorted(counts))} shards)")
    seen: dict[str, str] = {}
    for name, doc in docs:
        if (spec := _shard_spec(doc)) is not None:
            if spec in seen:
                problems.append(f"shard {spec} twice: {seen[spec]} and {name}")
            seen[spec] = name
    return problems


def _records(docs: Sequence[tuple[str, dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                   list[str]]:
    """Every record with ``machine_index`` into the machines list, the machines, and duplicate-cell problems."""
    machines: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    where: dict[str, str] = {}
    problems = []
    for name, doc in docs:
        for record in doc["records"]:
            rid = str(record["id"])
            if rid in where:
                problems.append(f"cell {rid} is in both {where[rid]} and {name}")
                continue
            where[rid] = name
            own = doc.get("machines")
            facts = own[record["machine_index"]] if own and "machine_index" in record else doc.get("machine") or {}
            if facts not in machines:
                machines.append(facts)
            records.append({**record, "machine_index": machines.index(facts)})
    return records, machines, problems


def _session(docs: Sequence[tuple[str, dict[str, Any]]], cells: list[dict[str, Any]]) -> dict[str, Any]:
    session: dict[str, Any] = {"shards": len(docs)}
    for _, doc in docs:
        for key, value in (doc.get("session") or {}).items():
            if key in SUMMED and isinstance(value, (int, float)) and not isinstance(value, bool):
                session[key] = session.get(key, 0) + value
    from pytest_longeff.report.findings import findings

    identified = [c for c in cells if all(k in c for k in ("family", "size", "seq_len", "task"))]
    session["findings"] = [f.to_dict() for f in findings(identified)]
    return session


def merge_docs(docs: Sequence[tuple[str, dict[str, Any]]], allow_missing: bool = False) -> dict[str, Any]:
    """One report from shard reports (``(name, document)`` pairs, already validated). :class:`MergeRefused` lists
    every reason they cannot be merged; missing cells are one unless ``allow_missing`` (then listed in
    ``missing``)."""
    if not docs:
        raise MergeRefused(["no reports to merge"])
    problems = _comparability(docs)
    records, machines, duplicates = _records(docs)
    settings = {**(docs[0][1].get("settings") or {}), "shard": None}
    matrix = build_matrix(settings.get("families") or (), settings.get("sizes") or (),
                          settings.get("lengths") or (), settings.get("tasks") or ())
    have = {str(r["id"]) for r in records}
    missing = [c.id for c in matrix if c.id not in have]
    if missing and not allow_missing:
        problems.append(f"{len(missing)} cell(s) of the matrix missing: {', '.join(missing)}")
    if problems or duplicates:
        raise MergeRefused(problems + duplicates)
    order = {c.id: n for n, c in enumerate(matrix)}
    records.sort(key=lambda r: (order.get(str(r["id"]), len(order)), str(r["id"])))
    cells = [r for r in records if is_cell(r)]
    first = docs[0][1]
    return {"schema_version": first["schema_version"], "machine": machines[0] if machines else first.get("machine"),
            "machines": machines, "software": first.get("software"), "settings": settings, "shard": None,
            "merged_from": [{"path": name, "shard": _shard_spec(d), "records": len(d["records"])} for name, d in docs],
            "missing": missing, "session": _session(docs, cells), "records": records}


def write_outputs(doc: dict[str, Any], out: Path) -> list[str]:
    """Write the merged report, its CSV and Markdown, and the plots and HTML page where those modules exist."""
    from pytest_longeff.record.io import atomic_write_text
    from pytest_longeff.record.sections import is_cell
    from pytest_longeff.report.outputs import render_extras
    from pytest_longeff.report.tables import render_csv, render_markdown

    atomic_write_text(out, dump_report(doc))
    written = [str(out)]
    cells = [r for r in doc["records"] if is_cell(r)]
    if cells:
        for path, text in ((out.with_suffix(".csv"), render_csv(cells)),
                           (out.with_suffix(".md"), render_markdown(cells, doc["settings"]))):
            atomic_write_text(path, text)
            written.append(str(path))
    return written + render_extras(doc, out)


def cmd_merge(args: argparse.Namespace) -> int:
    """``merge``: join shard reports into one."""
    try:
        docs = [(str(path), load_report(path)) for path in args.reports]
    except ReportError as exc:
        print(f"{PROG} merge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        doc = merge_docs(docs, args.allow_missing)
    except MergeRefused as exc:
        print(f"{PROG} merge: refused:", *(f"  {for_terminal(p)}" for p in exc.problems), sep="\n", file=sys.stderr)
        return EXIT_REFUSED
    written = write_outputs(doc, args.out)
    if doc["missing"]:
        print(f"{PROG} merge: {len(doc['missing'])} cell(s) missing: {for_terminal(', '.join(doc['missing']))}",
              file=sys.stderr)
    from pytest_longeff.report.outputs import compact_paths

    print(f"merged {len(doc['records'])} records from {len(docs)} reports: "
          f"{for_terminal(', '.join(compact_paths(written)))}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """``show``: the terminal matrix of a saved or merged report."""
    from pytest_longeff.record.sections import is_cell
    from pytest_longeff.report.tables import method_notes, render_matrix, render_windows

    try:
        doc = load_report(args.report)
    except ReportError as exc:
        print(f"{PROG} show: {exc}", file=sys.stderr)
        return EXIT_USAGE
    cells = [r for r in doc["records"] if is_cell(r)]
    windows = [r for r in doc["records"] if not is_cell(r)]
    scope = (f"shard {_shard_spec(doc)}" if doc.get("shard") else
             f"merged from {len(doc['merged_from'])} reports" if doc.get("merged_from") else "one run")
    print(f"{for_terminal(args.report)}: {len(cells)} cells, {len(windows)} window records ({for_terminal(scope)}; "
          f"schema {doc['schema_version']})")
    if cells:
        print(render_matrix(cells))  # the matrix, its notes and the windows escape the records' strings themselves
        for note in method_notes(cells, doc.get("settings") or {}):
            print(f"  {note}")
    if windows:
        print(render_windows(windows))
    return EXIT_OK


def dispatch(module: str, command: str, argv: list[str]) -> int:
    """Run ``<module>.main(argv)``: the commands that parse their own arguments."""
    main_fn = importlib.import_module(module).main
    try:
        return int(main_fn(argv) or 0)
    except SystemExit as exc:  # its argparse: 0 after --help, 2 on a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


DISPATCHED = {"compare": "pytest_longeff.ci.compare", "plot": "pytest_longeff.report.plots.draw",
              "ab": "pytest_longeff.ab.run"}


def parser() -> argparse.ArgumentParser:
    """The command line (``compare`` and ``plot`` parse their own arguments)."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None,
                                epilog="exit codes: 0 done, 1 reports refused (merge conflicts; compare, ab: "
                                       "regression), 2 usage error, unusable file or an unexpected error "
                                       "reading one (never 1), 3 compare, ab: inconclusive")
    sub = p.add_subparsers(dest="command", required=True, metavar="{merge,show,compare,plot,ab}")
    merge = sub.add_parser("merge", help="join shard reports into one",
                           description="Join shard reports (same settings but the shard, same software, code and "
                                       "machine kind) into one; refuses duplicates and lists missing cells.")
    merge.add_argument("reports", nargs="+", type=Path, metavar="SHARD.json")
    merge.add_argument("-o", "--out", type=Path, required=True, metavar="OUT.json",
                       help="the merged report (CSV, Markdown, plots and HTML are written beside it)")
    merge.add_argument("--allow-missing", action="store_true",
                       help="write the report even when cells of the matrix are missing (listed in 'missing')")
    merge.set_defaults(run=cmd_merge)
    show = sub.add_parser("show", help="print the matrix of a saved report (or an A/B report's verdicts)",
                          description="Print the accuracy-efficiency matrix of a saved or merged report, or the "
                                      "verdicts of an A/B report (pytest-longeff ab).")
    show.add_argument("report", type=Path, metavar="REPORT.json")
    show.set_defaults(run=cmd_show)
    sub.add_parser("compare", help="the regression gate on two reports (BASE.json NEW.json [--fail-on SPEC]), or "
                   "an A/B report judged again (AB.json [--fail-on SPEC])",
                   add_help=False)
    sub.add_parser("plot", help="figures of a saved report (REPORT.json [-o DIR])", add_help=False)
    sub.add_parser("ab", help="measure base and head side by side and gate the head (--base ENV --head ENV "
                   "[pytest args]; exit 3: inconclusive)", add_help=False)
    return p


def _ab_report(rest: Sequence[str]) -> Path | None:
    """The report ``show``/``compare`` was given, when it was given one and it is an A/B report (``pytest-longeff
    ab``); else None."""
    from pytest_longeff.ab.report import KIND, peek_kind

    valued = ("--fail-on", "--markdown", "--acknowledged")  # options whose value is the next argument
    files = [a for i, a in enumerate(rest) if not a.startswith("-") and (i == 0 or rest[i - 1] not in valued)]
    return Path(files[0]) if len(files) == 1 and peek_kind(Path(files[0])) == KIND else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pytest-longeff`` console script; returns the exit code. Everything a command prints
    passes :func:`text.safe_lines` on its way out (:func:`text.guarded_output`): reports come from other
    machines, and no line printed may become a GitHub workflow command (``compare``'s annotations, made escaped,
    are the one exception, written through :func:`text.print_command`)."""
    with guarded_output():
        return _main(argv)


def _guarded(command: str, files: Sequence[str], run: Callable[[], int]) -> int:
    """``run()``: the last resort for a report the checks let through but a command cannot work on. An unexpected
    exception becomes one line (its type, its message, the files) and exit 2, never a traceback and never exit 1
    (CI would read a regression); ``PYTEST_LONGEFF_DEBUG=1`` re-raises it, so tests see every such bug."""
    try:
        return run()
    except Exception as exc:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        if isinstance(exc, OSError):  # an output the command cannot write (a read-only folder, a full disk): no bug
            where = exc.filename if exc.filename is not None else "an output file"
            print(for_terminal(f"{PROG} {command}: cannot write {where} ({exc.strerror or exc}); choose a writable "
                               "path (-o/--out, --markdown) or free space"), file=sys.stderr)
            return EXIT_USAGE
        print(for_terminal(f"{PROG} {command}: {type(exc).__name__}: {exc}; this is a bug in pytest-longeff; please "
                           f"report it, with the file ({', '.join(files) or 'no file'}); {DEBUG_ENV}=1 shows the "
                           "traceback"), file=sys.stderr)
        return EXIT_USAGE


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command, files = (args_list or [""])[0], [a for a in args_list[1:] if not a.startswith("-")]
    if command == "ab":  # measures, rather than reading reports: its own errors are its own
        return dispatch(DISPATCHED[command], command, args_list[1:])
    return _guarded(command, files, lambda: _run(args_list))


def _run(args_list: list[str]) -> int:
    if len(args_list) > 1 and args_list[0] in ("show", "compare") and (found := _ab_report(args_list[1:])):
        from pytest_longeff.ab import report as ab_report

        return ab_report.show(found) if args_list[0] == "show" else ab_report.compare(args_list[1:])
    if args_list and args_list[0] in DISPATCHED:
        return dispatch(DISPATCHED[args_list[0]], args_list[0], args_list[1:])
    try:
        args = parser().parse_args(args_list)
    except SystemExit as exc:  # argparse: 0 after --help, 2 on a usage error
        return int(exc.code or 0)
    run: Any = args.run
    return int(run(args))


if __name__ == "__main__":
    sys.exit(main())

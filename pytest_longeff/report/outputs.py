"""What a finished report is rendered into besides its JSON: CI outputs, figures and the page; where the outputs
go and whether they can be written there; and how the files written, or not written, are listed on the terminal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_longeff.config.settings import Settings


def output_folders(settings: Settings, root: Path) -> list[tuple[str, str, str, Path]]:
    """Every folder the settings name for an output, as (option, value given, metavar, folder): the JSON report's
    (CSV, Markdown, the page, the figures and the predictions go beside it by default), then the page's, the
    figures' and the benchmark files' where given. Relative values are relative to ``root``."""
    s = settings
    folders = [("--longeff-json", s.json_path, "PATH", (root / s.json_path).parent)]
    if s.html:
        folders.append(("--longeff-html", s.html, "PATH", (root / s.html).parent))
    if s.plots and s.plots != "none":
        folders.append(("--longeff-plots", s.plots, "DIR", root / s.plots))
    if s.benchmark_json:
        folders.append(("--longeff-benchmark-json", s.benchmark_json, "DIR", root / s.benchmark_json))
    return folders


def unwritable_outputs(settings: Settings, root: Path) -> list[str]:
    """One message for each output folder nothing can be written in, naming the option, its value, the folder
    tried and the reason (a file is created there and removed: ``os.access`` says yes to root on a read-only
    mount)."""
    from pytest_longeff.record.lock import unwritable

    messages = []
    for flag, value, metavar, folder in output_folders(settings, root):
        problem = unwritable(folder)
        if problem is not None:
            where, reason = problem
            messages.append(f"{flag} {value}: cannot write in {shown(where, root)} ({reason}); choose a writable "
                            f"folder with {flag} {metavar}")
    return messages


def shown(path: Path, root: Path) -> str:
    """``path`` as the user wrote it: relative to ``root`` where it lies under it."""
    try:
        return str(path.relative_to(root)) if path != root else "."
    except ValueError:
        return str(path)


def not_written(what: str, exc: OSError, where: Path | str | None = None) -> str:
    """The terminal line for an output that could not be written: what, where and the OSError's reason."""
    place = exc.filename if exc.filename is not None else where
    at = f": {os.fspath(place)}" if place is not None else ""
    return f"{what} not written{at} ({exc.strerror or exc})"


def _attempt(what: str, explicit: bool, render: Any, missing: tuple[type[BaseException], ...] = (),
             failed: list[str] | None = None) -> list[str]:
    """Run one renderer; a failure is a warning (the JSON is already written), a missing optional dependency
    (``missing``, or ImportError) is one only when the user asked for that output. With ``failed``, a file that
    could not be written (an OSError: a full disk, a read-only folder) is one line there instead of a warning."""
    import warnings

    from pytest_longeff.errors import LongeffWarning

    caught: tuple[type[BaseException], ...] = (ImportError, *missing)
    try:
        out = render()
    except caught as exc:
        if explicit:
            warnings.warn(f"pytest-longeff: {what} not written: {exc}", LongeffWarning, stacklevel=2)
        return []
    except OSError as exc:
        if failed is None:
            warnings.warn(f"pytest-longeff: {not_written(what, exc)}", LongeffWarning, stacklevel=2)
        else:
            failed.append(not_written(what, exc))
        return []
    except Exception as exc:  # noqa: BLE001 - any renderer failure must leave the JSON report intact
        warnings.warn(f"pytest-longeff: {what} not written: {type(exc).__name__}: {exc}", LongeffWarning,
                      stacklevel=2)
        return []
    if out is None:
        return []
    return [str(p) for p in (out if isinstance(out, (list, tuple)) else [out])]


def render_extras(doc: dict[str, Any], json_path: Path, *, plots_dir: Path | None = None,
                  html_path: Path | None = None, settings: Any = None, root: Path | None = None,
                  draw_plots: bool = True, failed: list[str] | None = None) -> list[str]:
    """Plots (``report.plots.draw.render_all``), the HTML page (``report.page.write_html``) and, given the session's
    settings, CI outputs (``report.github.write_ci_outputs``; ``root``: what its relative paths are relative to).
    Plots default to ``plots/`` beside the report,
    the page to the report's path with ``.html``; ``draw_plots=False`` (``--longeff-plots none``) skips the figures.
    Returns the files written; with ``failed``, each output that could not be written adds one line there."""
    from pytest_longeff.report import github
    from pytest_longeff.report import page as html
    from pytest_longeff.report.plots import draw as plots

    written: list[str] = []
    if settings is not None:
        written += _attempt("CI outputs", True, lambda: github.write_ci_outputs(doc, settings, root),
                            failed=failed)
    out_dir = plots_dir or json_path.parent / "plots"
    plotted = False
    if draw_plots:
        figures = _attempt("plots", plots_dir is not None, lambda: plots.render_all(doc, out_dir),
                           (plots.MissingMatplotlib,), failed)
        written, plotted = written + figures, bool(figures)
    page = html_path or json_path.with_suffix(".html")
    written += _attempt("HTML report", html_path is not None,
                        lambda: html.write_html(doc, page, out_dir if plotted else None, draw_plots), failed=failed)
    return written


def compact_paths(paths: list[str]) -> list[str]:
    """Files for the "reports:" line: a folder holding several (the figures) is said once, with its count."""
    by_dir: dict[str, list[str]] = {}
    for path in paths:
        by_dir.setdefault(str(Path(path).parent), []).append(path)
    out: list[str] = []
    for path in paths:
        folder = by_dir[str(Path(path).parent)]
        if len(folder) <= 3:
            out.append(path)
        elif path == folder[0]:
            out.append(f"{len(folder)} files in {Path(path).parent}")
    return out

"""What a finished report is rendered into besides its JSON: CI outputs, figures and the page; and how the files
written are listed on the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _attempt(what: str, explicit: bool, render: Any, missing: tuple[type[BaseException], ...] = ()) -> list[str]:
    """Run one renderer; a failure is a warning (the JSON is already written), a missing optional dependency
    (``missing``, or ImportError) is one only when the user asked for that output."""
    import warnings

    from pytest_longeff.errors import LongeffWarning

    caught: tuple[type[BaseException], ...] = (ImportError, *missing)
    try:
        out = render()
    except caught as exc:
        if explicit:
            warnings.warn(f"pytest-longeff: {what} not written: {exc}", LongeffWarning, stacklevel=2)
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
                  draw_plots: bool = True) -> list[str]:
    """Plots (``report.plots.draw.render_all``), the HTML page (``report.page.write_html``) and, given the session's
    settings, CI outputs (``report.github.write_ci_outputs``; ``root``: what its relative paths are relative to).
    Plots default to ``plots/`` beside the report,
    the page to the report's path with ``.html``; ``draw_plots=False`` (``--longeff-plots none``) skips the figures.
    Returns the files written."""
    from pytest_longeff.report import github
    from pytest_longeff.report import page as html
    from pytest_longeff.report.plots import draw as plots

    written: list[str] = []
    if settings is not None:
        written += _attempt("CI outputs", True, lambda: github.write_ci_outputs(doc, settings, root))
    out_dir = plots_dir or json_path.parent / "plots"
    plotted = False
    if draw_plots:
        figures = _attempt("plots", plots_dir is not None, lambda: plots.render_all(doc, out_dir),
                           (plots.MissingMatplotlib,))
        written, plotted = written + figures, bool(figures)
    page = html_path or json_path.with_suffix(".html")
    written += _attempt("HTML report", html_path is not None,
                        lambda: html.write_html(doc, page, out_dir if plotted else None, draw_plots))
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

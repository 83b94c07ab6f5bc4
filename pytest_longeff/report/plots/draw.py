"""Figures of a saved report: the accuracy-cost trade-off per task with its Pareto front, the length curves, the
chosen batch under the memory budget and the gate's changes, as PNG and SVG.

matplotlib (the ``plots`` extra) is imported only inside functions, never when the plugin loads; figures are
``matplotlib.figure.Figure`` objects on the Agg canvas (no pyplot, no GUI backend, no global state changed). Every
axis states its unit and method (from :data:`record.FIGURES`), every title the profile; where energy was not
measured the cost axis is wall time and says so. Training and inference energy are never summed.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_longeff.record.figures import FIGURES_BY_NAME
from pytest_longeff.record.sections import lookup
from pytest_longeff.report.pareto import cells as _cells
from pytest_longeff.report.pareto import machine_label, merged, one_front
from pytest_longeff.report.plots import pool as plot_helpers
from pytest_longeff.report.plots.quantities import Metric, cost_metric, metric

FORMATS = ("png", "svg")
INSTALL_HINT = "pip install pytest-longeff[plots]"
FAMILY_COLOURS = {"led": "#1f77b4", "bigbird": "#d62728"}
PALETTE = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
SIZE_MARKERS = {"base": "o", "large": "s"}
MARKERS = ("^", "D", "v", "P", "X")
STATUS_COLOURS = {"failed": "#d62728", "inconclusive": "#ff7f0e", "passed": "#2ca02c"}
LENGTH_AXIS = "input length (tokens); inputs truncated and padded to the cell's length"
DPI = 100
MIN_FIGURES_TO_SHARE = 6  # below this, starting a second interpreter (about 0.6 s) does not pay


class MissingMatplotlib(RuntimeError):
    """matplotlib (the ``plots`` extra) is not installed."""


# -- helpers --------------------------------------------------------------------------------------------------------
def _require() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingMatplotlib(f"plots need matplotlib: {INSTALL_HINT}") from None


def _new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1, left: float = 1.0,
                bottom: float = 0.95, gap: float = 1.3) -> tuple[Any, list[Any]]:
    """A headless figure of ``nrows`` x ``ncols`` axes with fixed margins in inches (``gap`` between axes): a layout
    engine would re-measure every text on every save and take most of the rendering time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:  # fewer ticks: each tick's label is a text to lay out and rasterise
        ax.locator_params(nbins=5)
    axes_w = (width - left - 0.25 - gap * (ncols - 1)) / ncols
    axes_h = (height - bottom - 0.7 - gap * (nrows - 1)) / nrows
    fig.subplots_adjust(left=left / width, right=1 - 0.25 / width, bottom=bottom / height, top=1 - 0.7 / height,
                        wspace=gap / axes_w, hspace=gap / axes_h)
    return fig, [ax for row in axes for ax in row]


def _colour(family: str) -> str:
    return FAMILY_COLOURS.get(family) or PALETTE[sum(map(ord, family)) % len(PALETTE)]


def _marker(size: str) -> str:
    return SIZE_MARKERS.get(size) or MARKERS[sum(map(ord, size)) % len(MARKERS)]


def _title(fig: Any, what: str, profile: str, accuracy: Sequence[Mapping[str, Any]] | None = None) -> None:
    """The figure's title; a figure of ``accuracy`` (its records) says what the score means as the records say it
    (their weights: the shipped pretrained checkpoints, random init, published checkpoints)."""
    from pytest_longeff.report.findings import accuracy_words

    words = accuracy_words(accuracy, profile) if accuracy else ""
    note = "\n" + textwrap.fill(words, 110, break_on_hyphens=False) if words else ""
    fig.suptitle(f"{what} (profile {profile}){note}", fontsize=9)


def _legend(ax: Any, records: Sequence[Mapping[str, Any]], extra: Sequence[Any] = ()) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_colour(f), marker="o", ls="", label=f)
               for f in sorted({str(r.get("family")) for r in records})]
    handles += [Line2D([], [], color="grey", marker=_marker(s), ls="", label=s)
                for s in sorted({str(r.get("size")) for r in records})]
    ax.legend(handles=[*handles, *extra], fontsize=7, loc="best")


def _whiskers(ax: Any, xs: Sequence[float], ys: Sequence[float], cis: Sequence[tuple[float, float] | None],
              colour: str, axis: str) -> None:
    """95 % CI whiskers, in one call, for the points that have an interval."""
    pts = [(x, y, ci) for x, y, ci in zip(xs, ys, cis, strict=True) if ci is not None]
    if not pts:
        return
    v = [p[0] if axis == "x" else p[1] for p in pts]
    err = [[max(a - ci[0], 0.0) for a, (_, _, ci) in zip(v, pts, strict=True)],
           [max(ci[1] - a, 0.0) for a, (_, _, ci) in zip(v, pts, strict=True)]]
    ax.errorbar([p[0] for p in pts], [p[1] for p in pts], fmt="none", ecolor=colour, capsize=2, lw=0.8,
                **{f"{axis}err": err})


def _by_model(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    models = sorted({(str(r.get("family")), str(r.get("size"))) for r in records})
    return {m: [r for r in records if (str(r.get("family")), str(r.get("size"))) == m] for m in models}


def _log_if_wide(ax: Any, values: Sequence[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) > 30:
        ax.set_xscale("log")


def _machines(records: Sequence[Mapping[str, Any]]) -> list[str | None]:
    return sorted({machine_label(r) for r in records}, key=lambda m: m or "") if merged(records) else [None]


def _profile(records: Sequence[Mapping[str, Any]], doc: Mapping[str, Any]) -> str:
    profiles = sorted({str(r.get("profile")) for r in records if r.get("profile")})
    return "/".join(profiles) or str(lookup(doc, "settings", "profile") or "?")


# -- figures ----------------------------------------------------------------------------------------------------------
def tradeoff(records: Sequence[Mapping[str, Any]], task: str, window: str, profile: str) -> Any:
    """Score against the window's cost for one task: one marker per cell (colour: family, shape: size), the input
    length beside it, whiskers where the cost has a 95 % CI, the Pareto front per machine."""
    from matplotlib.lines import Line2D

    cost, fallback = cost_metric(window, records)
    score = metric("score", "score")
    fig, (ax,) = _new_figure(7.5, 5.4, left=1.2, bottom=1.1)
    machines = _machines(records)
    shown = [r for r in records if score.value(r) is not None and cost.value(r) is not None]
    for (family, size), rs in _by_model(shown).items():
        xs, ys = [cost.value(r) or 0.0 for r in rs], [score.value(r) or 0.0 for r in rs]
        ax.plot(xs, ys, ls="", marker=_marker(size), color=_colour(family), ms=6)
        _whiskers(ax, xs, ys, [cost.ci(r) for r in rs], _colour(family), "x")
        for r, x, y in zip(rs, xs, ys, strict=True):
            where = f" @{machine_label(r)}" if len(machines) > 1 else ""
            ax.annotate(f"{r.get('seq_len')}{where}", (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    fronts = []
    for i, machine in enumerate(machines):
        members = {str(r.get("id")): r for r in shown if machine is None or machine_label(r) == machine}
        ids = one_front(list(members.values()), FIGURES_BY_NAME[cost.figure])["front"]
        pts = [(cost.value(members[k]) or 0.0, score.value(members[k]) or 0.0) for k in ids]
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="black", lw=1,
                ls=("--", ":", "-.")[i % 3], zorder=0)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ls="", marker="o", ms=12, mfc="none", mec="black", mew=0.8)
        fronts.append(Line2D([], [], color="black", lw=1, ls=("--", ":", "-.")[i % 3],
                             marker="o", mfc="none", label="Pareto front" + (f" @{machine}" if machine else "")))
    _log_if_wide(ax, [cost.value(r) or 0.0 for r in shown])
    left_out = len(records) - len(shown)
    ax.set_xlabel(cost.axis(" — energy not measured: wall time instead" if fallback else ""), fontsize=7)
    ax.set_ylabel(score.axis(), fontsize=7)
    if left_out:
        ax.text(0.01, 0.01, f"{left_out} cell(s) without a score or this cost left out", transform=ax.transAxes,
                fontsize=7, color="grey")
    _legend(ax, records, fronts)
    _title(fig, f"{task}: accuracy vs {window} cost (higher score, lower cost is better)", profile, records)
    return fig


def length_curves(records: Sequence[Mapping[str, Any]], task: str, profile: str) -> Any:
    """Throughput and cost per sample against input length, one line per model (and machine)."""
    panels = [metric("train_samples_per_s", "training throughput", records),
              metric("inference_samples_per_s", "inference throughput", records),
              cost_metric("train", records, per_sample=True), cost_metric("inference", records)]
    fig, axes = _new_figure(12.0, 9.0, ncols=2, nrows=2, left=1.2, bottom=0.9, gap=1.5)
    for ax, panel in zip(axes, panels, strict=True):
        m, fallback = panel if isinstance(panel, tuple) else (panel, False)
        _curves(ax, records, m)
        ax.set_xlabel(LENGTH_AXIS, fontsize=7)
        ax.set_ylabel(m.axis(" — energy not measured: time instead" if fallback else ""), fontsize=6)
    _legend(axes[0], records)
    _title(fig, f"{task}: throughput and cost per sample against input length", profile)
    return fig


def phase_curves(records: Sequence[Mapping[str, Any]], task: str, profile: str) -> Any:
    """Prefill and decode apart against input length, one line per model: prefill and decode throughput, time to
    first token and the inter-token latency."""
    panels = [metric("prefill_tokens_per_s", "prefill throughput", records),
              metric("decode_tokens_per_s", "decode throughput", records),
              metric("ttft_p50_s", "time to first token", records),
              metric("inter_token_latency_p50_s", "inter-token latency", records)]
    fig, axes = _new_figure(12.0, 9.0, ncols=2, nrows=2, left=1.2, bottom=0.9, gap=1.5)
    for ax, m in zip(axes, panels, strict=True):
        _curves(ax, records, m)
        ax.set_xlabel(LENGTH_AXIS, fontsize=7)
        ax.set_ylabel(m.axis(""), fontsize=6)
    _legend(axes[0], records)
    _title(fig, f"{task}: prefill and decode against input length", profile)
    return fig


def _has_phases(cells: Sequence[Mapping[str, Any]]) -> bool:
    return any(isinstance(r.get("phases"), Mapping) for r in cells)


def _curves(ax: Any, records: Sequence[Mapping[str, Any]], m: Metric) -> None:
    groups: dict[tuple[str, str, str | None], list[Mapping[str, Any]]] = {}
    several = merged(records)
    for r in records:
        if m.value(r) is not None:
            groups.setdefault((str(r.get("family")), str(r.get("size")), machine_label(r) if several else None),
                              []).append(r)
    for (family, size, machine), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rs = sorted(rs, key=lambda r: int(r.get("seq_len") or 0))
        xs, ys = [int(r.get("seq_len") or 0) for r in rs], [m.value(r) or 0.0 for r in rs]
        ax.plot(xs, ys, color=_colour(family), marker=_marker(size), ms=5, ls="-" if size == "base" else "--",
                label=f"{family}-{size}" + (f" @{machine}" if machine else ""))
        _whiskers(ax, xs, ys, [m.ci(r) for r in rs], _colour(family), "y")
    if not groups:
        ax.text(0.5, 0.5, "not measured in any cell", ha="center", transform=ax.transAxes, color="grey")


def batch_sizes(records: Sequence[Mapping[str, Any]], budget_bytes: Any, profile: str) -> Any:
    """The chosen training batch against input length per model and task; cells that did not fit are marked."""
    tasks = sorted({str(r.get("task")) for r in records})
    ncols = min(len(tasks), 4)
    nrows = -(-len(tasks) // ncols)
    fig, axes = _new_figure(4.2 * ncols + 1.5, 3.8 * nrows + 0.6, ncols, nrows, gap=1.4)
    batch = metric("batch_size", "chosen training batch")
    for ax, task in zip(axes, tasks, strict=False):
        rs = [r for r in records if r.get("task") == task]
        _curves(ax, rs, batch)
        misses = [r for r in rs if batch.value(r) is None]
        ax.scatter([int(r.get("seq_len") or 0) for r in misses], [0] * len(misses), marker="x", color="black",
                   label="did not run (skipped / failed)" if misses else None)
        ax.set_title(task, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel(textwrap.fill(LENGTH_AXIS, 45), fontsize=7)
        ax.set_ylabel(batch.axis(), fontsize=7)
        ax.legend(fontsize=6)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    gib = f"{budget_bytes / 2**30:.2f} GiB" if isinstance(budget_bytes, (int, float)) else "the"
    _title(fig, f"chosen training batch under the {gib} memory budget", profile)
    return fig


def gate_changes(records: Sequence[Mapping[str, Any]], profile: str) -> Any | None:
    """The gate's relative change per metric and cell against the baseline (bars coloured by verdict, the
    tolerated change dashed); None when no record has a compared check."""
    checks: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for r in records:
        for c in lookup(r, "gate", "checks") or []:
            if isinstance(c, Mapping) and isinstance(c.get("change"), (int, float)):
                checks.setdefault(str(c.get("metric")), []).append((str(r.get("id")), c))
    if not checks:
        return None
    height = 2.4 + 0.16 * max(len(v) for v in checks.values())
    fig, axes = _new_figure(4.6 * len(checks) + 2.2, height, ncols=len(checks), left=2.2, bottom=1.4, gap=2.4)
    for ax, (name, rows) in zip(axes, sorted(checks.items()), strict=True):
        ax.barh([cell for cell, _ in rows], [100 * float(c["change"]) for _, c in rows],
                color=[STATUS_COLOURS.get(str(c.get("status")), "grey") for _, c in rows])
        fig_def = FIGURES_BY_NAME.get(name)
        worse = -1 if fig_def is not None and fig_def.higher_is_better else 1
        for tol in {float(c.get("tolerance") or 0.0) for _, c in rows}:
            ax.axvline(100 * worse * tol, color="black", ls="--", lw=1)
        ax.axvline(0, color="grey", lw=0.5)
        unit = f"{fig_def.unit}: {fig_def.method}" if fig_def is not None else "see the record"
        ax.set_xlabel(textwrap.fill(f"change vs baseline (%), (current - baseline) / baseline; {name} in {unit}; "
                                    f"dashed: tolerated change for the worse", 50), fontsize=7)
        ax.set_title(name, fontsize=8)
        ax.tick_params(axis="y", labelsize=6)
    _title(fig, "the gate's changes against the baseline (red: failed, orange: inconclusive, green: passed)",
           profile)
    return fig


# -- entry points -----------------------------------------------------------------------------------------------------
def _has_gate(cells: Sequence[Mapping[str, Any]]) -> bool:
    return any(isinstance(c, Mapping) and isinstance(c.get("change"), (int, float))
               for r in cells for c in lookup(r, "gate", "checks") or [])


def _plan(doc: Mapping[str, Any]) -> list[tuple[str, Callable[[], Any]]]:
    """Every figure of ``doc`` as (file stem, builder), in page order; building needs matplotlib, planning not."""
    cells = _cells(doc)
    profile = _profile(cells, doc)
    tasks = sorted({str(r["task"]) for r in cells})
    of = {task: [r for r in cells if r["task"] == task] for task in tasks}
    plan: list[tuple[str, Callable[[], Any]]] = []
    for window in ("inference", "train"):
        plan += [(f"tradeoff-{window}-{t}", functools.partial(tradeoff, of[t], t, window, profile)) for t in tasks]
    plan += [(f"length-{t}", functools.partial(length_curves, of[t], t, profile)) for t in tasks]
    plan += [(f"phases-{t}", functools.partial(phase_curves, of[t], t, profile)) for t in tasks if _has_phases(of[t])]
    if cells:
        budget = lookup(doc, "settings", "memory_budget_bytes")
        plan.append(("batch-size", lambda: batch_sizes(cells, budget, profile)))
    if _has_gate(cells):
        plan.append(("gate-changes", lambda: gate_changes(cells, profile)))
    return plan


def captions(doc: Mapping[str, Any]) -> dict[str, str]:
    """Each figure's caption for the page, by file stem (needs no matplotlib): what it shows and, for the figures of
    accuracy, what the score means as the records say it."""
    from pytest_longeff.report.findings import accuracy_words

    cells = _cells(doc)
    profile = _profile(cells, doc)
    out: dict[str, str] = {}
    for name in figure_names(doc):
        kind, _, rest = name.partition("-")
        if kind == "tradeoff":
            window, _, task = rest.partition("-")
            of = [r for r in cells if str(r.get("task")) == task]
            out[name] = f"{task}: score against {window} cost. {accuracy_words(of, profile)}."
        elif kind == "length":
            out[name] = f"{rest}: throughput and cost per sample against input length (no scores)."
        elif kind == "phases":
            out[name] = (f"{rest}: prefill and decode apart against input length: throughput of each, time to first "
                         f"token and inter-token latency (no scores).")
        elif name == "batch-size":
            out[name] = "The chosen training batch under the memory budget, per task and input length (no scores)."
        else:
            out[name] = "The gate's changes against the baseline, per metric and cell."
    return out


def figure_names(doc: Mapping[str, Any]) -> list[str]:
    """The file stems :func:`render_all` writes for ``doc``, in page order (needs no matplotlib)."""
    return [name for name, _ in _plan(doc)]


def figures(doc: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every figure of the report as ``(file stem, matplotlib Figure)``, built one at a time."""
    _require()
    for name, build in _plan(doc):
        yield name, build()


def _save(fig: Any, name: str, target: Any, fmt: str) -> None:
    import matplotlib

    # Text stays text in SVG (small, searchable); a per-figure salt keeps ids unique when SVGs share one page.
    # text.parse_math off: names from a report are text, never a mathtext formula ("$^{$" would not parse).
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name, "text.hinting": "no_hinting",
                                "text.parse_math": False}):
        if fmt == "png":  # fast zlib level: PNG encoding was a tenth of the rendering time
            fig.savefig(target, format=fmt, dpi=DPI, pil_kwargs={"compress_level": 1})
        else:
            fig.savefig(target, format=fmt, dpi=DPI, metadata={"Date": None})


def render_all(doc: dict[str, Any], out_dir: Path, jobs: int | None = None) -> list[Path]:
    """Write every figure of ``doc`` as PNG and SVG under ``out_dir``; the paths written, in page order.

    Drawing is CPU-bound Python (text layout, Agg), so with ``jobs`` > 1 (default: 2 where there are two cores and
    enough figures to pay for a second interpreter) every other figure is drawn by a helper process; if the helper
    fails, its figures are drawn here, so nothing is lost.

    Raises :class:`MissingMatplotlib` when the ``plots`` extra is not installed."""
    _require()
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(_plan(doc))
    if jobs is None:
        jobs = 2 if n >= MIN_FIGURES_TO_SHARE and (os.cpu_count() or 1) >= 2 else 1
    helpers = [plot_helpers.start_part(doc, out_dir, k, jobs) for k in range(1, jobs)]
    try:
        render_part(doc, out_dir, 0, jobs)
        for k, helper in enumerate(helpers, 1):
            if helper is None or helper.finished() != 0:
                render_part(doc, out_dir, k, jobs)
    finally:
        for helper in helpers:
            if helper is not None:
                helper.close()
    return [out_dir / f"{name}.{fmt}" for name in figure_names(doc) for fmt in FORMATS]


def render_part(doc: Mapping[str, Any], out_dir: Path, k: int, n: int) -> None:
    """Draw figures ``k``, ``k + n``, ``k + 2n``, ... of the page order."""
    for i, (name, build) in enumerate(_plan(doc)):
        if i % n == k:
            fig = build()
            for fmt in FORMATS:
                _save(fig, name, out_dir / f"{name}.{fmt}", fmt)


def svg_figures(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every figure as ``(name, <svg> markup)`` to inline in a page (raises :class:`MissingMatplotlib`)."""
    out = []
    for name, fig in figures(doc):
        buf = io.StringIO()
        _save(fig, name, buf, "svg")
        text = buf.getvalue()
        out.append((name, text[text.find("<svg"):]))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``pytest-longeff plot REPORT.json [-o DIR]``: 0 written, 2 unusable report or no matplotlib."""
    parser = argparse.ArgumentParser(prog="pytest-longeff plot", description="Figures of a saved longeff report.")
    parser.add_argument("report", type=Path, help="a JSON report (e.g. reports/longeff.json)")
    parser.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: plots/ beside it)")
    args = parser.parse_args(argv)
    from pytest_longeff.record.io import load_report

    try:
        doc = load_report(args.report)
        paths = render_all(doc, args.out or args.report.parent / "plots")
    except (MissingMatplotlib, ValueError) as exc:  # no extra; unreadable or invalid report
        print(f"pytest-longeff plot: {exc}", file=sys.stderr)
        return 2
    if not paths:
        print(f"pytest-longeff plot: {args.report} has no matrix cells: nothing to plot", file=sys.stderr)
    print(*paths, sep="\n")
    return 0

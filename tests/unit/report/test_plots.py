"""Figures from saved reports: every variant renders, every axis states unit and method, the CLI entry point."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.report_variants import gated, matrix, merged, single_cell, skipped_and_failed, small, with_energy

pytest.importorskip("matplotlib", reason="plots need the 'plots' extra (matplotlib)")

from pytest_longeff.report.plots import draw as plots
from pytest_longeff.report.plots import pool as plot_helpers

VARIANTS: dict[str, Callable[[], dict[str, Any]]] = {"missing_energy": small, "single_cell": single_cell,
            "skipped_and_failed": skipped_and_failed,
            "merged_machines": merged, "gated": lambda: gated(small()),
            "partial_energy": lambda: with_energy(matrix(16), every=3)}


def _texts(fig: Any) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_renders_with_units_methods_and_profile(variant: str) -> None:
    doc = VARIANTS[variant]()
    names = plots.figure_names(doc)
    assert {"batch-size", "tradeoff-inference-gov_report", "tradeoff-train-gov_report",
            "length-gov_report"} <= set(names)
    assert ("gate-changes" in names) == (variant == "gated")
    built = []
    for name, fig in plots.figures(doc):
        built.append(name)
        svg = io.StringIO()
        plots._save(fig, name, svg, "svg")  # drawing, not only building, must work for every variant
        assert svg.getvalue().rstrip().endswith("</svg>")
        assert "profile tiny" in fig.get_suptitle(), name
        for ax in (a for a in fig.axes if a.get_visible()):
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                if name == "gate-changes" and label == "":
                    continue  # the bars' axis is the cell ids
                assert "(" in label and ";" in label, (name, label)  # "(unit); method"
        if name.startswith("tradeoff"):
            assert "tiny profile: accuracy measures the pipeline, not the study's models" in fig.get_suptitle()
    assert built == names


def test_energy_axis_where_measured_time_where_not() -> None:
    figs = dict(plots.figures(small()))
    xlabel = figs["tradeoff-inference-gov_report"].axes[0].get_xlabel().replace("\n", " ")
    assert "energy not measured: wall time instead" in xlabel and "(s)" in xlabel
    figs = dict(plots.figures(with_energy(small())))
    for name, unit in (("tradeoff-inference-gov_report", "(J/sample)"), ("tradeoff-train-gov_report", "(J)")):
        label = figs[name].axes[0].get_xlabel().replace("\n", " ")
        assert unit in label and "rapl meter" in label and "not measured" not in label


def test_pareto_front_and_length_labels_are_drawn() -> None:
    doc = with_energy(matrix(8))
    fig = dict(plots.figures(doc))["tradeoff-inference-gov_report"]
    texts = _texts(fig)
    assert {"1024", "2048"} <= set(texts)
    assert "Pareto front" in texts  # the legend entry of the drawn front


def test_merged_points_name_their_machine() -> None:
    fig = dict(plots.figures(merged()))["tradeoff-train-qasper"]
    assert {"2048 @m1", "2048 @m2"} <= set(_texts(fig))


def test_render_all_writes_png_and_svg(tmp_path: Path) -> None:
    paths = plots.render_all(gated(single_cell()), tmp_path / "out")
    names = {p.name for p in paths}
    assert names == {f"{n}.{ext}" for n in ("tradeoff-inference-gov_report", "tradeoff-train-gov_report",
                                            "length-gov_report", "batch-size", "gate-changes")
                     for ext in ("png", "svg")}
    assert all(p.stat().st_size > 1000 for p in paths)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths if p.suffix == ".png")


def _leftovers() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("longeff-plot-*.json"))


def test_a_helper_process_draws_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shared with a helper process that succeeds, the figures are the same files, byte for byte in SVG, as drawn
    alone, and no copy of the report is left behind."""
    doc, before = matrix(16), _leftovers()
    alone = plots.render_all(doc, tmp_path / "alone", jobs=1)
    started: list[plot_helpers.Helper | None] = []
    real = plot_helpers.start_part
    monkeypatch.setattr(plot_helpers, "start_part", lambda *a: started.append(real(*a)) or started[-1])
    shared = plots.render_all(doc, tmp_path / "shared", jobs=2)
    assert len(started) == 1 and started[0] is not None and started[0].process.returncode == 0  # it drew its part
    assert [p.name for p in alone] == [p.name for p in shared] and len(alone) >= 2 * plots.MIN_FIGURES_TO_SHARE
    for a, b in zip(alone, shared, strict=True):
        assert b.is_file() and b.stat().st_size > 1000
        if a.suffix == ".svg":
            assert a.read_bytes() == b.read_bytes(), a.name
    assert _leftovers() <= before


def _fake_helper(tmp_path: Path, code: str) -> plot_helpers.Helper:
    copy = tmp_path / "copy.json"
    copy.write_text("{}")
    return plot_helpers.Helper(subprocess.Popen([sys.executable, "-c", code]), copy)


@pytest.mark.parametrize("code", ["raise SystemExit(3)", "import time; time.sleep(60)", None],
                         ids=["fails", "hangs", "cannot-start"])
def test_a_helper_that_fails_loses_no_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             code: str | None) -> None:
    helpers: list[plot_helpers.Helper] = []
    monkeypatch.setattr(plot_helpers, "TIMEOUT_S", 1.0)
    monkeypatch.setattr(plot_helpers, "start_part", lambda *a: None if code is None else helpers.append(
        _fake_helper(tmp_path, code)) or helpers[-1])
    paths = plots.render_all(matrix(16), tmp_path / "out", jobs=2)
    assert len(paths) >= 2 * plots.MIN_FIGURES_TO_SHARE and all(p.is_file() for p in paths)
    for helper in helpers:  # stopped, its copy of the report removed
        assert helper.process.returncode is not None and not helper.report.exists()


def test_a_report_that_is_not_plain_json_is_drawn_without_a_helper(tmp_path: Path) -> None:
    doc: dict[str, Any] = {**matrix(16), "extra": {1, 2}}  # a set: not JSON
    assert plot_helpers.start_part(doc, tmp_path, 1, 2) is None
    assert all(p.is_file() for p in plots.render_all(doc, tmp_path / "out", jobs=2))


def test_main_writes_beside_the_report_and_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "longeff.json"
    report.write_text(json.dumps(single_cell()))
    assert plots.main([str(report), "-o", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "batch-size.png").is_file()
    assert str(tmp_path / "figs" / "batch-size.png") in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{")
    assert plots.main([str(tmp_path / "bad.json")]) == 2
    assert "bad.json: not a readable" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    assert plots.main([str(report)]) == 2
    assert "pip install pytest-longeff[plots]" in capsys.readouterr().err


def test_plugin_import_does_not_import_matplotlib() -> None:
    code = ("import sys, pytest_longeff.plugin, pytest_longeff.report.plots.draw, pytest_longeff.report.page, "
            "pytest_longeff.report.pareto, pytest_longeff.report.tables; print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_accuracy_titles_say_what_the_records_say_about_weights() -> None:
    from pytest_longeff.profiles import PROFILES, TINY_PRETRAINED_MEANING

    records = matrix(4)["records"]
    shipped = [{**r, "accuracy_meaning": TINY_PRETRAINED_MEANING, "accuracy_meaningful": True} for r in records]
    title = plots.tradeoff(shipped, "gov_report", "train", "tiny").get_suptitle().replace("\n", " ")
    assert "pretrained offline (the checkpoints shipped in the package)" in title and "random" not in title
    random = [{**r, "accuracy_meaning": PROFILES["tiny"].accuracy_meaning, "accuracy_meaningful": False}
              for r in records]
    title = plots.tradeoff(random, "gov_report", "train", "tiny").get_suptitle().replace("\n", " ")
    assert "random-init" in title and "pretrained" not in title
    title = plots.tradeoff(shipped[:2] + random[2:], "gov_report", "train", "tiny").get_suptitle().replace("\n", " ")
    assert "checkpoints shipped" in title and "random-init" in title and "2 of 4 cells" in title

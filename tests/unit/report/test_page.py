"""The report page: self-contained, escaped, n/a for unmeasured; driven in headless Chromium where one exists."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.report_variants import gated, matrix, merged, skipped_and_failed

from pytest_longeff.report import page as html_report
from pytest_longeff.report.plots import draw as plots


def _no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(doc: Any) -> Any:
        raise plots.MissingMatplotlib("no matplotlib")
    monkeypatch.setattr(plots, "svg_figures", missing)


def test_page_is_self_contained_escaped_and_says_na(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_plots(monkeypatch)
    doc = gated(skipped_and_failed())
    doc["records"][0]["id"] = "<script>alert(1)</script>"
    doc["settings"]["profile"] = 'tiny"><b>'
    text = html_report.write_html(doc, tmp_path / "r.html").read_text()
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'tiny"><b>' not in text
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<link" not in text
    assert text.count("<script>") == 1 and "pip install pytest-longeff[plots]" in text
    row = re.search(r'<tr data-family="led"[^>]*>(.*?)</tr>', text.split('id="matrix"')[1])
    assert row is not None and "<td>n/a</td>" in row.group(1)  # train J: no energy meter; never 0
    for part in ("The seed study", "intervals apart", "not measured on one side", "process_vmhwm", "SCROLLS metric",
                 "percentile-bootstrap", 'id="env-machine"', 'id="env-settings"', 'id="figure-methods"'):
        assert part in text, part
    assert "Pareto fronts" in text and "bigbird-large-2048-qasper" in text.split('id="pareto"')[1]


def test_plots_inline_from_a_plots_dir_and_merged_machines(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plots need the 'plots' extra (matplotlib)")
    doc = merged()
    plots.render_all(doc, tmp_path / "plots")
    text = html_report.render_html(doc, tmp_path / "plots")
    assert text.count("<svg") == len(plots.figure_names(doc))
    assert "<th scope=\"col\">machine</th>" in text and 'id="env-machine-m2"' in text
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # several inline SVGs, no id collides


def _weights(doc: dict[str, Any], pretrained: set[str]) -> dict[str, Any]:
    """``doc`` with each record saying what a tiny run writes: the shipped pretrained checkpoint for the families
    in ``pretrained``, random init for the rest."""
    from pytest_longeff.profiles import PROFILES, TINY_PRETRAINED_MEANING

    doc = copy.deepcopy(doc)
    for r in doc["records"]:
        shipped = r["family"] in pretrained
        r.update(accuracy_meaning=TINY_PRETRAINED_MEANING if shipped else PROFILES["tiny"].accuracy_meaning,
                 accuracy_meaningful=shipped)
    return doc


def _banner(text: str) -> str:
    match = re.search(r'<p class="(\w+)" id="accuracy-meaning">(.*?)</p>', text)
    assert match is not None
    return f"{match.group(1)}: {match.group(2)}"


def _fake_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "svg_figures", lambda doc: [(n, "<svg></svg>") for n in plots.figure_names(doc)])


def test_banner_and_captions_say_what_the_records_say_about_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug: a default run, which fine-tunes the shipped pretrained checkpoints, was labelled random-init."""
    _fake_plots(monkeypatch)
    pretrained = html_report.render_html(_weights(matrix(8), {"led", "bigbird"}))
    banner = _banner(pretrained)
    assert banner.startswith("note: ") and "pretrained offline (the checkpoints shipped in the package)" in banner
    assert "random" not in banner and "pipeline" not in banner
    caption = re.search(r'id="fig-tradeoff-inference-gov_report">.*?<figcaption>(.*?)</figcaption>', pretrained)
    assert caption is not None and "checkpoints shipped in the package" in caption.group(1)
    assert "random" not in caption.group(1)
    random = html_report.render_html(_weights(matrix(8), set()))
    banner = _banner(random)
    assert banner.startswith("warn: ") and "random-init" in banner and "pretrained" not in banner
    assert "accuracy measures the pipeline, not the study&#x27;s models" in banner
    caption = re.search(r'id="fig-tradeoff-train-gov_report">.*?<figcaption>(.*?)</figcaption>', random)
    assert caption is not None and "random-init" in caption.group(1) and "pretrained" not in caption.group(1)
    mixed = _banner(html_report.render_html(_weights(matrix(8), {"led"})))
    assert mixed.startswith("warn: ") and "[led-base, led-large: 4 of 8 cells]" in mixed and "random-init" in mixed
    for name, words in plots.captions(_weights(matrix(8), set())).items():  # no score: no claim about it
        assert ("random-init" in words) == name.startswith("tradeoff"), name


def test_an_older_report_without_the_weights_fields_is_read_by_its_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_plots(monkeypatch)
    banner = _banner(html_report.render_html(skipped_and_failed()))
    assert banner.startswith("warn: What the scores mean: tiny profile: accuracy measures the pipeline")
    assert "random-init" in banner
    paper = skipped_and_failed()
    for r in paper["records"]:
        r["profile"] = "paper"
    paper["settings"]["profile"] = "paper"
    assert _banner(html_report.render_html(paper)).startswith("note: What the scores mean: paper profile: the study")


def test_the_page_holds_the_findings_detail_the_terminal_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_longeff.report.findings import findings

    _no_plots(monkeypatch)
    doc = _weights(matrix(16), {"led", "bigbird"})
    found = [f.to_dict() for f in findings(doc["records"])]
    doc["session"] = {**doc.get("session", {}), "findings": found}
    section = html_report.render_html(doc).split('id="findings-table"')[1].split("</table>")[0]
    for f in found:
        for key in ("claim", "evidence", "scope", "cost"):
            assert html_report.esc(f[key]) in section, (f["claim"], key)
    assert "within noise" in section and "minimum effects" in section


# -- in a real browser ----------------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Any:
    """Headless Chromium driven through its chromedriver (Debian: chromium, chromium-driver; pip: selenium)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no browser: install chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="no selenium: pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    try:  # the explicit driver path keeps selenium-manager from downloading anything
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as exc:  # noqa: BLE001 (any failure to start means: no usable browser here)
        pytest.skip(f"chromium could not be started: {exc}")
    yield driver
    driver.quit()


def _column(driver: Any, header: str) -> list[str]:
    heads = [th.text.strip(" ▲▼") for th in driver.find_elements("css selector", "#matrix thead th")]
    i = heads.index(header)
    return [tr.find_elements("css selector", "td")[i].text for tr in
            driver.find_elements("css selector", "#matrix tbody tr") if tr.is_displayed()]


def _numbers(values: list[str]) -> list[float]:
    return [float(v.split()[0]) for v in values if v != "n/a"]


def test_page_sorts_filters_and_renders_every_plot(browser: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plots need the 'plots' extra (matplotlib)")
    from selenium.webdriver.support.ui import Select

    doc = matrix(8)
    doc["records"].append(copy.deepcopy(skipped_and_failed()["records"][2]))  # a skipped cell: n/a everywhere
    page = html_report.write_html(doc, tmp_path / "report.html")
    browser.get(page.as_uri())
    header = browser.find_element("xpath", "//table[@id='matrix']//th[normalize-space()='train samp/s (median)']")
    header.click()
    ascending = _column(browser, "train samp/s (median)")
    assert _numbers(ascending) == sorted(_numbers(ascending)) and ascending[-1] == "n/a"
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    descending = _column(browser, "train samp/s (median)")
    assert _numbers(descending) == sorted(_numbers(descending), reverse=True) and descending[-1] == "n/a"
    Select(browser.find_element("id", "filter-family")).select_by_value("led")
    Select(browser.find_element("id", "filter-length")).select_by_value("2048")
    cells = _column(browser, "cell")
    assert cells and all(c.startswith("led-") and "-2048-" in c for c in cells)
    assert browser.find_element("id", "shown-count").text == f"{len(cells)} of 9 cells shown"
    Select(browser.find_element("id", "filter-family")).select_by_value("")
    assert len(_column(browser, "cell")) == len([c for c in doc["records"] if c["seq_len"] == 2048])
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#plots svg')).map(s => s.getBoundingClientRect())"
        ".map(r => [r.width, r.height]);")
    assert len(sizes) == len(plots.figure_names(doc)) and all(w > 100 and h > 100 for w, h in sizes)
    browser.execute_script("document.getElementById('filter-length').value=''; "
                           "document.getElementById('filter-length').dispatchEvent(new Event('change'));")
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

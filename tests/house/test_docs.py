"""The documentation: the site builds strictly (a broken link or anchor, or an option the code does not have, fails
it), its generated options page lists every option ``pytest --help`` does, and the README stays a first screen
whose benchmark file, options, links and matrix excerpt are real."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_longeff.config.settings import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BENCHMARK = ROOT / "benchmarks" / "test_cells.py"
UPDATE_ENV = "LONGEFF_UPDATE_PINNED"
MAX_README_LINES = 120
FLAG = re.compile(r"--longeff-[a-z0-9]+(?:-[a-z0-9]+)*")
#: The lines of the benchmark file a user copies: the README shows them, the benchmark file has them.
BENCHMARK_LINES = ("from pytest_longeff import check_record", "def test_cell(longeff_record",
                   "check_record(longeff_record)")


def _quiet_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    # mkdocs-material prints a banner about its successor on every build; it says nothing about this site.
    return {**env, "NO_MKDOCS_2_WARNING": "1", **extra}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once with ``mkdocs build --strict`` into a temporary folder."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]' (scripts/setup.sh does)")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                            cwd=ROOT, capture_output=True, text=True, env=_quiet_env(), timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def _page_text(site: Path, page: str) -> str:
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def test_the_site_builds_strictly(site: Path) -> None:
    for page in ("index.html", "reference/options/index.html", "reference/figures/index.html",
                 "reference/report-schema/index.html", "reference/cli/index.html", "changelog/index.html"):
        assert (site / page).is_file(), f"{page} missing from the built site"


def test_the_generated_pages_come_from_the_code(site: Path) -> None:
    from pytest_longeff.record.figures import FIGURES

    figures = _page_text(site, "reference/figures")
    assert all(f.name in figures for f in FIGURES)
    cli = _page_text(site, "reference/cli")
    assert all(f"usage: pytest-longeff {name}" in cli for name in ("merge", "show", "compare", "plot"))
    assert '"schema_version"' in _page_text(site, "reference/report-schema")


def test_the_options_page_lists_every_option_pytest_help_lists(site: Path, tmp_path: Path) -> None:
    # An empty folder: no ini file or conftest of this project; the plugin loads through its entry point.
    result = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"], cwd=tmp_path,
                            capture_output=True, text=True, env=_quiet_env(COLUMNS="1000"), timeout=120)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^\s*(--longeff-[a-z0-9]+(?:-[a-z0-9]+)*)", result.stdout, re.MULTILINE))
    assert listed >= {opt.flag for opt in OPTIONS}
    on_page = set(FLAG.findall(_page_text(site, "reference/options")))
    assert not listed - on_page, f"options missing from the options page: {sorted(listed - on_page)}"
    assert not on_page - listed, f"options on the page that pytest --help does not list: {sorted(on_page - listed)}"


def test_the_readme_is_a_first_screen() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"


def test_the_readme_shows_the_real_benchmark_file() -> None:
    readme, benchmark = README.read_text(encoding="utf-8"), BENCHMARK.read_text(encoding="utf-8")
    for line in BENCHMARK_LINES:
        assert line in benchmark, f"{BENCHMARK.name} no longer has {line!r}: update it and the README"
        assert line in readme, f"README.md does not show {line!r}"
    for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL):
        compile(block, "README.md", "exec")


def test_the_readme_names_only_real_options_and_files() -> None:
    readme = README.read_text(encoding="utf-8")
    unknown = set(FLAG.findall(readme)) - {opt.flag for opt in OPTIONS}
    assert not unknown, f"README.md names options the code does not have: {sorted(unknown)}"
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in t]
    missing = [t for t in targets if t and not (ROOT / t).exists()]
    assert targets and not missing, f"README.md links to files that do not exist: {missing}"


def _excerpt_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_excerpt", ROOT / "scripts" / "readme_excerpt.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_matrix_excerpt_is_a_fresh_render() -> None:
    """The excerpt is the terminal matrix of a saved run, rendered by today's code; after a change to the matrix,
    regenerate it with LONGEFF_UPDATE_PINNED=1 (or scripts/readme_excerpt.py --write) and review the diff."""
    script = _excerpt_script()
    if os.environ.get(UPDATE_ENV):
        script.write_readme()
    fresh = script.block(script.excerpt())
    assert "led-base-4096-gov_report" in fresh
    assert script.readme_block(README.read_text(encoding="utf-8")) == fresh, (
        f"the README's matrix excerpt is stale; rerun with {UPDATE_ENV}=1 or run "
        "python scripts/readme_excerpt.py --write")

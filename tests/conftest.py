from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def heavy_modules() -> None:
    """Import torch and the model code once in this process before any in-process pytester run.

    pytester removes modules first imported during an inner run; importing torch's C extensions a second time in
    one process corrupts memory. Imported here first, they belong to the outer process and are kept."""
    import rouge_score.rouge_scorer  # noqa: F401
    import transformers.models.bigbird_pegasus.modeling_bigbird_pegasus
    import transformers.models.led.modeling_led  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401
    import transformers.models.longt5.modeling_longt5  # noqa: F401
    import transformers.models.mistral.modeling_mistral  # noqa: F401
    import transformers.models.pegasus_x.modeling_pegasus_x  # noqa: F401

    import pytest_longeff.cell.resources  # noqa: F401

    try:  # matplotlib too (the plots extra): an inner run that draws figures must not be the first to import it
        from pytest_longeff.report.plots.draw import svg_figures

        svg_figures(json.loads((Path(__file__).parent / "support" / "data" / "report_small.json").read_text()))
    except ImportError:
        pass


BENCH = """
from pytest_longeff import check_record

def test_cell(longeff_record):
    check_record(longeff_record)
"""


@pytest.fixture
def bench(pytester: pytest.Pytester, heavy_modules: None) -> pytest.Pytester:
    """A pytester directory holding a benchmark module shaped like ``benchmarks/test_cells.py``. Figures are off
    (about 4 s a run); the tests of figures and the page ask for them with ``--longeff-plots DIR``."""
    pytester.makepyfile(test_bench=BENCH)
    pytester.makeini("[pytest]\nlongeff_plots = none\n")
    return pytester

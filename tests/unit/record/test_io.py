"""Report files: written atomically, with the usual permissions (they are shared as CI artifacts)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_longeff.record.io import atomic_write_text


def test_reports_are_readable_by_others_as_the_umask_allows(tmp_path: Path) -> None:
    """Guards mkstemp's 0600 leaking into reports (an HTML page nobody else could open)."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert (tmp_path / "r.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_a_setting_newer_than_a_report_reads_as_the_value_it_was_measured_with() -> None:
    from pytest_longeff.record.io import settings_diff

    assert settings_diff({}, {"gradient_checkpointing": False, "attn_implementation": "auto"}) is None
    assert settings_diff({}, {"gradient_checkpointing": True}) == "gradient_checkpointing False vs True"
    assert settings_diff({"attn_implementation": "sdpa"}, {}) == "attn_implementation 'sdpa' vs 'auto'"

"""Every JSON report an acceptance test makes is checked against the shipped schema (``load_report``), whatever the
test itself checks: the schema is the contract with every reader of a saved report (resume, merge, the gate's
baseline), so a field the plugin writes in a shape the schema refuses fails the test that wrote it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_longeff.ab.report import KIND as AB_KIND
from pytest_longeff.record.io import SCHEMA_VERSION, ReportError, load_report


def is_longeff_report(doc: Any) -> bool:
    """Whether a JSON document is a longeff report of the current version, the kind ``load_report`` reads.

    Left out: predictions files (an object of example ids to texts), A/B reports (their own ``kind`` and checks),
    pytest-benchmark JSON and other foreign files (no ``records``), and reports of an older schema version, which
    only a test writes (to check that they are refused): the plugin writes the current version."""
    if not isinstance(doc, dict) or doc.get("kind") == AB_KIND:
        return False
    if "records" not in doc and "schema_version" not in doc:
        return False
    version = doc.get("schema_version")
    return not (isinstance(version, int) and not isinstance(version, bool) and version < SCHEMA_VERSION)


def report_problems(root: Path) -> list[str]:
    """Why each longeff report under ``root`` fails validation, one line per report (empty when all are valid)."""
    problems = []
    for path in sorted(root.rglob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # not JSON a report reader would be given (a half-written temporary file, a test's own junk)
        if not is_longeff_report(doc):
            continue
        try:
            load_report(path)
        except ReportError as exc:
            problems.append(str(exc))
    return problems


@pytest.fixture(autouse=True)
def reports_follow_the_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``pytester``, validate every longeff report in its directory and fail the test with
    the errors of those that do not follow the shipped schema."""
    if "pytester" not in request.fixturenames:
        yield
        return
    pytester: pytest.Pytester = request.getfixturevalue("pytester")
    yield
    problems = report_problems(pytester.path)
    if problems:
        pytest.fail("a report written in this test does not follow the shipped schema "
                    "(pytest_longeff/record/schema/report.schema.json):\n" + "\n".join(problems), pytrace=False)

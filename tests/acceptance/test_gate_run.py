"""The gate, end to end: a baseline from a first run, then regressions, noise and other machines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

ONE_CELL = [
    "--longeff-families=led", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
    "--longeff-eval-samples=2", "--longeff-idle-s=0", "--longeff-batch-size=2", "--longeff-train-budget=steps=4",
    "--longeff-device=cpu", "--longeff-energy=none", "-p", "no:randomly",
]


@pytest.fixture
def baseline(bench: pytest.Pytester) -> Path:
    pytester = bench
    pytester.runpytest(*ONE_CELL, "--longeff-json=base.json").assert_outcomes(passed=1)
    return pytester.path / "base.json"


def _edit(path: Path, fn: object) -> Path:
    doc = json.loads(path.read_text())
    fn(doc)  # type: ignore[operator]
    out = path.with_name("edited.json")
    out.write_text(json.dumps(doc))
    return out


def test_a_generous_tolerance_passes_and_records_the_checks(pytester: pytest.Pytester, baseline: Path) -> None:
    result = pytester.runpytest(*ONE_CELL, f"--longeff-baseline={baseline}",
                                "--longeff-fail-on=train_samples_per_s:1000%,score:100%")
    result.assert_outcomes(passed=1)
    (record,) = json.loads((pytester.path / "reports" / "longeff.json").read_text())["records"]
    assert [c["metric"] for c in record["gate"]["checks"]] == ["train_samples_per_s", "score"]
    assert "gate against" in result.stdout.str()


def test_a_regression_fails_the_cell_with_baseline_current_change_and_tolerance(pytester: pytest.Pytester,
                                                                               baseline: Path) -> None:
    edited = _edit(baseline, _faster_baseline)
    result = pytester.runpytest(*ONE_CELL, f"--longeff-baseline={edited}",
                                "--longeff-fail-on=train_samples_per_s:10%")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "regression against the baseline" in out
    # A 1000x faster baseline: the change is about -99.9 % (printed -100.0% when the machine is very busy).
    assert "train_samples_per_s: baseline" in out and "change -" in out and "tolerance 10%" in out


def test_a_baseline_from_another_machine_is_refused(pytester: pytest.Pytester, baseline: Path) -> None:
    def other_machine(doc: dict) -> None:  # type: ignore[type-arg]
        doc["machine"]["cpu"] = "Some Other CPU"

    result = pytester.runpytest(*ONE_CELL, f"--longeff-baseline={_edit(baseline, other_machine)}")
    result.assert_outcomes(failed=1)
    assert "gate refused: the baseline comes from another machine" in result.stdout.str()


def test_gate_option_errors(pytester: pytest.Pytester, baseline: Path) -> None:
    result = pytester.runpytest("--collect-only", "--longeff-fail-on=score:5%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "needs --longeff-baseline" in result.stderr.str()
    (pytester.path / "bad.json").write_text("{}")
    result = pytester.runpytest("--collect-only", "--longeff-baseline=bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "--longeff-baseline" in result.stderr.str()


def test_a_cell_that_passed_in_the_baseline_and_is_skipped_now_fails(bench: pytest.Pytester) -> None:
    """Guards against a regression hiding as a skip (e.g. a cell that no longer fits the memory budget)."""
    from pytest_longeff.record.io import SCHEMA_VERSION

    skipping = ["--longeff-profile=paper", "--longeff-families=bigbird", "--longeff-sizes=base",
                "--longeff-lengths=256", "--longeff-tasks=qasper", "--longeff-device=cpu", "--longeff-energy=none",
                "--longeff-idle-s=0"]
    bench.runpytest(*skipping).assert_outcomes(skipped=1)  # no pretrained Big Bird base: a plain skip
    (bench.path / "base.json").write_text(json.dumps({
        "schema_version": SCHEMA_VERSION, "machine": {}, "settings": {},
        "records": [{"id": "bigbird-base-256-qasper", "status": "passed"}]}))
    result = bench.runpytest(*skipping, "--longeff-baseline=base.json", "--longeff-fail-on=score:5%")
    result.assert_outcomes(errors=1)
    assert "regression against the baseline: it passed there, but now no pretrained Big Bird base" in \
        result.stdout.str()
    (record,) = json.loads((bench.path / "reports" / "longeff.json").read_text())["records"]
    assert record["status"] == "error" and "it passed there" in record["reason"]


# -- the run-level gate (FDR, suite rule) and acknowledged regressions ------------------------------------------------


def _faster_baseline(doc: dict, factor: float = 1000.0) -> None:  # type: ignore[type-arg]
    # 1000 times: far beyond what the 95 % intervals of 3 steps (Student t, 2 degrees of freedom) can span even on a
    # loaded machine, so the regression is told apart from noise in every run.
    stats = doc["records"][0]["train"]["samples_per_s_stats"]
    stats["median"] *= factor
    stats["ci95"] = [v * factor for v in stats["ci95"]]


#: A baseline a million times faster, for the drift-corrected, re-measured comparison. There the current interval is
#: widened by the cell's own interval (one step 20 times slower among 3 widens a Student-t interval on 2
#: degrees of freedom about 75-fold each way) and by the machine-speed reference's (the same again when a burst hits
#: the reference), and the drift factor scales it too (20 when the reference alone was slowed 20-fold). Together that
#: can exceed 1000 on a loaded machine, which made the check inconclusive; 75 x 75 x 20 is about 10^5, well below
#: 10^6.
UNHIDEABLE = 1e6


def test_the_run_level_gate_fails_the_session_and_acknowledgements_pass_it(pytester: pytest.Pytester,
                                                                          baseline: Path) -> None:
    edited = _edit(baseline, _faster_baseline)
    result = pytester.runpytest(*ONE_CELL, f"--longeff-baseline={edited}", "--longeff-fail-on=train_samples_per_s:10%")
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*longeff gate over the run: FAILED*",
                                 # -99.9 %, or -100.0 % when the machine is very busy
                                 "*suite train_samples_per_s: failed, geometric mean change -*",
                                 "*regression led-base-256-qasper train_samples_per_s*"])
    (pytester.path / "ack.toml").write_text('[[acknowledged]]\ncell = "led-*"\nmetric = "train_samples_per_s"\n'
                                            'reason = "accepted on purpose"\n\n[[acknowledged]]\ncell = "suite"\n'
                                            'metric = "train_samples_per_s"\nreason = "same change"\n')
    result = pytester.runpytest(*ONE_CELL, f"--longeff-baseline={edited}", "--longeff-fail-on=train_samples_per_s:10%",
                                "--longeff-acknowledged=ack.toml")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*longeff gate over the run: passed*",
                                 "*acknowledged led-base-256-qasper train_samples_per_s*accepted on purpose*"])
    (record,) = json.loads((pytester.path / "reports" / "longeff.json").read_text())["records"]
    assert record["gate"]["checks"][0]["status"] == "acknowledged"


def test_an_acknowledged_file_without_a_reason_is_a_usage_error(pytester: pytest.Pytester, baseline: Path) -> None:
    (pytester.path / "ack.json").write_text('[{"metric": "score"}]')
    result = pytester.runpytest("--collect-only", f"--longeff-baseline={baseline}", "--longeff-acknowledged=ack.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "needs a reason" in result.stderr.str()


@pytest.mark.parametrize(("args", "message"), [
    (["--longeff-acknowledged=ack.toml"], "--longeff-acknowledged needs --longeff-baseline"),
    (["--longeff-durations=old.json"], "--longeff-durations needs --longeff-shard"),
    (["--longeff-remeasure=2"], "--longeff-remeasure needs --longeff-baseline"),
    (["--longeff-early-stop-metric=study", "--longeff-train-budget=steps=4"],
     "--longeff-early-stop-metric needs an epochs=N,patience=K budget"),
])
def test_options_that_would_do_nothing_are_usage_errors(pytester: pytest.Pytester, args: list[str],
                                                        message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and message in result.stderr.str()


# -- a suspect cell is measured again before the gate judges it --------------------------------------------------------


def test_a_suspect_cell_is_measured_again_and_a_persisting_regression_still_fails(pytester: pytest.Pytester,
                                                                                baseline: Path) -> None:
    """With a much faster baseline every measurement is suspect: --longeff-remeasure 2 measures the cell twice more
    (each a complete measurement with its own reference), keeps the first in the record and the other two in
    ``remeasured``, judges the figures pooled over all three, and still fails; 0 measures once. The baseline is a
    million times faster (:data:`UNHIDEABLE`), so no burst of load on the machine can make the pooled, drift-corrected
    check inconclusive."""
    edited = _edit(baseline, lambda doc: _faster_baseline(doc, UNHIDEABLE))
    result = pytester.runpytest(*ONE_CELL, f"--longeff-baseline={edited}", "--longeff-fail-on=train_samples_per_s:10%",
                                "--longeff-remeasure=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*note: 1 cell was measured again after a suspect measurement*pooled over every measurement*"])
    (record,) = json.loads((pytester.path / "reports" / "longeff.json").read_text())["records"]
    section = record["remeasured"]
    others = section["others"]
    assert section["measurements"] == 3 and len(others) == 2
    assert sorted([section["kept"], *(o["measurement"] for o in others)]) == [1, 2, 3]
    assert all(o["why"][0].startswith("train_samples_per_s -") for o in others)
    windows = [(w["train"]["time_s"], w["train"]["samples_per_s_stats"]["mean"]) for w in [*others, record]]
    assert len(set(windows)) == 3  # three distinct measurements, not copies
    assert all(o["reference"]["ops_per_s"] > 0 for o in others) and record["reference"]["ops_per_s"] > 0
    # Nothing is selected: the first measurement stands, and the pooled figure is the geometric mean of all three.
    assert section["kept"] == 1 and [o["measurement"] for o in others] == [2, 3]
    pooled = section["pooled"]["train_samples_per_s"]
    medians = [w["train"]["samples_per_s_stats"]["median"] for w in [record, *others]]
    assert pooled["values"] == medians
    assert pooled["geometric_mean"] == pytest.approx(math.prod(medians) ** (1 / 3))
    assert all(o["batch_size"] == record["batch_size"] for o in others)  # one batch choice, not three searches
    assert all(w["cell_wall_s"] > 0 for w in [*others, record])  # each measurement's own time
    assert record["gate"]["checks"][0]["status"] == "failed" and record["status"] == "failed"

    result = pytester.runpytest(*ONE_CELL, f"--longeff-baseline={edited}", "--longeff-fail-on=train_samples_per_s:10%",
                                "--longeff-remeasure=0")
    result.assert_outcomes(failed=1)
    (record,) = json.loads((pytester.path / "reports" / "longeff.json").read_text())["records"]
    assert "remeasured" not in record and "measured again" not in result.stdout.str()


def test_a_cell_within_tolerance_is_measured_once(pytester: pytest.Pytester, baseline: Path) -> None:
    result = pytester.runpytest(*ONE_CELL, f"--longeff-baseline={baseline}",
                                "--longeff-fail-on=train_samples_per_s:1000%", "--longeff-remeasure=3")
    result.assert_outcomes(passed=1)
    (record,) = json.loads((pytester.path / "reports" / "longeff.json").read_text())["records"]
    assert "remeasured" not in record

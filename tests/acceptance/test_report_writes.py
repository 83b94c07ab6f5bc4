"""Report writes that fail, and two runs on one report: a usage error before any test runs when the report cannot
be written or is another run's; a full disk mid-run is one line per output and a failed run, never an INTERNALERROR,
with every record written before it still in the report."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.filesystems import full_filesystem, read_only_dir

from pytest_longeff.record import io
from pytest_longeff.record.io import load_report

# Window tests are the cheapest tests that write records (no model is built).
WINDOWS = '''
import os
from pathlib import Path

def test_first(longeff_window):
    with longeff_window("spin"):
        sum(range(10_000))

def test_fill_the_disk():
    if os.environ.get("FILL"):
        from support.filesystems import fill

        fill(Path(os.environ["FILL"]))

def test_second(longeff_window):
    with longeff_window("spin"):
        sum(range(10_000))
'''
# A record-writing run that holds the report until the test says "go" (a file), so a second run meets its lock.
HELD = '''
import time
from pathlib import Path

def test_held(longeff_window):
    Path("started").touch()
    deadline = time.monotonic() + 120
    while not Path("go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with longeff_window("spin"):
        sum(range(10_000))
'''
PINNED = ["--longeff-device=cpu", "--longeff-idle-s=0", "--longeff-energy=none", "--longeff-plots=none",
          "-p", "no:randomly", "-p", "no:cacheprovider"]
SUPPORT = str(Path(__file__).resolve().parents[1])  # so the child imports support.filesystems


def _pytest(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args, *PINNED]


def _child_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [SUPPORT, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def _run_in(cwd: Path, argv: list[str], **env: str) -> pytest.RunResult:
    """``argv`` run in ``cwd`` with ``env`` added, its output as pytester gives it."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                          env=_child_env(**env))
    return pytest.RunResult(done.returncode, done.stdout.splitlines(), done.stderr.splitlines(), 0.0)


def _no_traceback(text: str) -> None:
    assert "INTERNALERROR" not in text and "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize(("option", "value"), [("--longeff-json", "ro/run.json"),
                                               ("--longeff-benchmark-json", "ro/bench")])
def test_a_read_only_folder_is_a_usage_error_before_any_test(pytester: pytest.Pytester, option: str,
                                                              value: str) -> None:
    pytester.makepyfile(test_windows=WINDOWS)
    with read_only_dir(pytester.path / "ro") as ro:
        result = _run_in(pytester.path, ro.wrap(_pytest("test_windows.py", f"{option}={value}")))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    reason = "Read-only file system" if ro.kind != "chmod" else "Permission denied"
    metavar = "PATH" if option == "--longeff-json" else "DIR"
    expected = f"ERROR: {option} {value}: cannot write in ro ({reason}); choose a writable folder with {option}"
    assert errors == [f"{expected} {metavar}"]
    assert not any("passed" in line or "failed" in line for line in result.outlines)  # no test ran
    _no_traceback(result.stdout.str() + result.stderr.str())


def test_a_disk_full_mid_run_is_one_line_per_output_and_a_failed_run(pytester: pytest.Pytester) -> None:
    """The disk fills between the first and the second record: both tests still run, the report holds the first."""
    pytester.makepyfile(test_windows=WINDOWS)
    keep = pytester.path / "kept"
    with full_filesystem(pytester.path / "full", "256k") as full:
        result = _run_in(pytester.path, full.wrap(_pytest("test_windows.py", "--longeff-json=full/run.json"), keep),
                         FILL=str(full.path))
        report = load_report(full.left_in(keep) / "run.json")
    out = result.stdout.str()
    _no_traceback(out + result.stderr.str())
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert [r["id"] for r in report["records"]] == ["test_windows.py::test_first"]
    json_line = next(line for line in result.outlines if "JSON report not written" in line)
    assert json_line.strip() == (f"longeff: JSON report not written: {full.path / 'run.json'} (No space left on "
                                 "device); the file as last written holds 1 of the 2 records; all 2 are shown above")
    assert "test_windows.py::test_second" in out  # the terminal table shows the record the file lacks
    others = [line.strip() for line in result.outlines if "not written:" in line and line is not json_line]
    assert sorted(line.split(":")[1] for line in others) == [" CI outputs not written", " HTML report not written"]
    assert all(line.endswith("(No space left on device)") for line in others)
    assert "reports:" not in out


def test_a_write_that_fails_after_the_first_record_loses_no_record_in_memory(
        windows_in_process: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, with the report's folder full after its first write (the full-disk test above needs a mount)."""
    folder = windows_in_process.path / "reports"
    writes: list[Path] = []
    real = io.atomic_write_text

    def filling(path: Path, text: str) -> None:
        if path.parent == folder and writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, text)
        writes.append(path)

    monkeypatch.setattr(io, "atomic_write_text", filling)
    result = windows_in_process.runpytest("--longeff-json=reports/run.json", *PINNED)
    _no_traceback(result.stdout.str())
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert [r["id"] for r in load_report(folder / "run.json")["records"]] == ["test_windows.py::test_first"]
    result.stdout.fnmatch_lines([("*longeff: JSON report not written: *run.json (No space left on device); the "
                                  "file as last written holds 1 of the 2 records; all 2 are shown above"),
                                 "*longeff: CI outputs not written: *run-comment.md (No space left on device)",
                                 "*longeff: HTML report not written: *run.html (No space left on device)"])


@pytest.fixture
def windows_in_process(pytester: pytest.Pytester, heavy_modules: None) -> pytest.Pytester:
    pytester.makepyfile(test_windows=WINDOWS)
    return pytester


def test_a_second_run_on_the_same_report_is_refused_and_the_first_keeps_its_records(
        pytester: pytest.Pytester, heavy_modules: None) -> None:
    pytester.makepyfile(test_held=HELD)
    first = subprocess.Popen(_pytest("test_held.py", "--longeff-json=reports/run.json"), cwd=pytester.path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_child_env())
    try:
        deadline = time.monotonic() + 120
        while not (pytester.path / "started").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (pytester.path / "started").exists(), "the first run did not start its test"
        for extra in ([], ["-p", "xdist", "-n", "2"]):  # an xdist controller is refused before it starts workers
            second = pytester.runpytest("test_held.py", "--longeff-json=reports/run.json", *extra, *PINNED)
            assert second.ret == pytest.ExitCode.USAGE_ERROR
            errors = [line for line in second.errlines if line.startswith("ERROR:")]
            assert len(errors) == 1 and errors[0].startswith(f"ERROR: another pytest-longeff run (pid {first.pid}, "
                                                             "started at ")
            assert errors[0].endswith(") is writing reports/run.json; wait for it to finish or pass another "
                                      "--longeff-json")
        (pytester.path / "go").touch()
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out[-3000:]
    assert [r["id"] for r in load_report(pytester.path / "reports" / "run.json")["records"]] == [
        "test_held.py::test_held"]
    third = pytester.runpytest("test_held.py", "--longeff-json=reports/run.json", *PINNED)  # the lock was released
    assert third.ret == pytest.ExitCode.OK
    assert not (pytester.path / "reports" / "run.json.lock").exists()


def test_a_suite_without_records_neither_checks_nor_locks_the_report(pytester: pytest.Pytester) -> None:
    """The plugin loads in every pytest run of the environment: unrelated suites in one folder never wait for each
    other, and leave no reports folder."""
    from pytest_longeff.record.lock import ReportLock

    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    held = ReportLock.acquire(pytester.path / "reports" / "longeff.json")
    try:
        pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    finally:
        held.release()
    assert not (pytester.path / "reports").exists()

"""The checkpoints the package ships are checked, never silently replaced: under ``--longeff-tiny-weights auto`` a
missing or damaged checkpoint of a family and size the package ships fails the cell with a message naming the file
and the way out, while ``random`` still runs. Each test works on a copy of the shipped folder in ``tmp_path`` (the
module's ``CHECKPOINTS`` pointed at it); the package's own files are never touched."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_longeff.cell.resources import LongeffSession
from pytest_longeff.data.tokenizer import lexicon_tokenizer
from pytest_longeff.errors import CellSkip, CheckpointError
from pytest_longeff.matrix import Cell
from pytest_longeff.models import checkpoints
from pytest_longeff.models.checkpoints import check_tiny_checkpoint, load_tiny, shipped
from pytest_longeff.models.families import LEDFamily, build_model

PACKAGE_CHECKPOINTS = checkpoints.CHECKPOINTS
RANDOM = "--longeff-tiny-weights random"


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped checkpoints, which the package then loads from."""
    root = tmp_path / "checkpoints"
    shutil.copytree(PACKAGE_CHECKPOINTS, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(checkpoints, "CHECKPOINTS", root)
    return root


def _vocab() -> int:
    return len(lexicon_tokenizer())


def test_the_copy_is_what_loads(copy: Path) -> None:
    assert shipped("led", "base") == copy / "led-base"
    check_tiny_checkpoint("led", "base", 1024)
    assert load_tiny(LEDFamily(), "base", _vocab()).config.model_type == "led"


def _delete(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _set_config(change: Callable[[dict[str, object]], object]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        config = json.loads(path.read_text())
        path.write_text(json.dumps(change(config)))

    return apply


DAMAGE: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # name: (the path damaged, relative to the led-base folder; how; what the message says about it)
    "weights deleted": ("model.safetensors", _delete, "is missing"),
    "config deleted": ("config.json", _delete, "is missing"),
    "folder deleted": (".", _delete, "is missing"),  # a wheel built without its package data
    "weights cut to half": ("model.safetensors", _halve, "not a readable safetensors file"),
    "config '{'": ("config.json", lambda p: p.write_text("{"), "not a readable JSON config"),
    "config a list": ("config.json", _set_config(lambda c: [c]), "expected a JSON object"),
    "config of another family": ("config.json", _set_config(lambda c: {**c, "model_type": "bigbird_pegasus"}),
                                 "model_type is 'bigbird_pegasus', but the checkpoint of led base must be 'led'"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_an_error_naming_its_path_and_the_fix(copy: Path, damage: str) -> None:
    relative, how, what = DAMAGE[damage]
    target = copy / "led-base" / relative
    how(target)
    # The file the message names: a deleted folder is reported by the first file missing from it.
    named = target / "config.json" if relative == "." else target
    for check in (lambda: check_tiny_checkpoint("led", "base", 1024), lambda: load_tiny(LEDFamily(), "base", _vocab())):
        with pytest.raises(CheckpointError) as raised:
            check()
        message = str(raised.value)
        assert str(named.resolve()) in message or str(named) in message, message
        assert what in message and "reinstall pytest-longeff" in message and RANDOM in message
        assert "\n" not in message
    # The other checkpoints are untouched and still serve their cells.
    check_tiny_checkpoint("bigbird", "base", 1024)


def _weights_for(cell: Cell, tiny_weights: str) -> bool:
    """Whether a session under ``--longeff-tiny-weights tiny_weights`` loads the shipped checkpoint for ``cell``."""
    fake = SimpleNamespace(settings=SimpleNamespace(tiny_weights=tiny_weights))
    return LongeffSession.tiny_pretrained(fake, cell)  # type: ignore[arg-type]


def test_auto_does_not_turn_a_missing_checkpoint_into_a_random_init(copy: Path) -> None:
    shutil.rmtree(copy / "led-base")
    led = Cell("led", "base", 1024, "qasper")
    assert _weights_for(led, "auto") is True  # so the cell is checked, and fails, instead of running random weights
    with pytest.raises(CheckpointError, match="led-base"):
        check_tiny_checkpoint("led", "base", 1024)
    # A family the package ships no checkpoint for by design keeps its random init under auto, and is skipped with
    # the way out under pretrained.
    other = Cell("mistral", "base", 1024, "qasper")
    assert _weights_for(other, "auto") is False
    with pytest.raises(CellSkip, match=RANDOM):
        check_tiny_checkpoint("mistral", "base", 1024)


def test_random_still_runs_without_the_checkpoint(copy: Path) -> None:
    shutil.rmtree(copy / "led-base")
    led = Cell("led", "base", 1024, "qasper")
    assert _weights_for(led, "random") is False
    built = build_model(LEDFamily(), "base", "tiny", _vocab(), 1024, None, seed=0, tiny_pretrained=False)
    assert built.params > 0 and not built.tiny_pretrained


def test_a_run_fails_the_cell_of_a_missing_checkpoint_in_one_line_and_runs_the_others(
        bench: pytest.Pytester, copy: Path) -> None:
    _delete(copy / "led-base" / "model.safetensors")
    result = bench.runpytest(
        "--longeff-families=led,bigbird", "--longeff-sizes=base", "--longeff-lengths=256", "--longeff-tasks=qasper",
        "--longeff-eval-samples=1", "--longeff-repeats=1", "--longeff-idle-s=0", "--longeff-device=cpu",
        "--longeff-energy=none", "--longeff-batch-size=1", "--longeff-train-budget=steps=1", "-p", "no:randomly")
    # The cell's fixture fails (as for missing data): pytest reports an error at setup.
    result.assert_outcomes(passed=1, errors=1)
    doc = json.loads((bench.path / "reports" / "longeff.json").read_text())
    records = {r["id"]: r for r in doc["records"]}
    failed = records["led-base-256-qasper"]
    assert failed["status"] == "error" and "\n" not in failed["reason"]
    assert str(copy / "led-base" / "model.safetensors") in failed["reason"] and RANDOM in failed["reason"]
    assert records["bigbird-base-256-qasper"]["status"] == "passed"
    assert "Traceback" not in result.stdout.str() and "CheckpointError" not in result.stdout.str()

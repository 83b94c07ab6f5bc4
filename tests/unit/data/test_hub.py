"""Users' own data through the ``datasets`` library (``--longeff-dataset`` / ``--longeff-columns``), on local files
written by the tests: parquet, JSON, ``save_to_disk`` folders. Nothing here touches the network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_longeff.cell.prepare import Inputs
from pytest_longeff.data.hub import load_user_dataset, parse_spec, split_files
from pytest_longeff.data.scrolls import read_jsonl
from pytest_longeff.errors import DataError
from pytest_longeff.profiles import PROFILES

datasets = pytest.importorskip("datasets")

COLUMNS = {"input": "document", "output": "summary", "id": "doc_id"}
TABLE: dict[str, list[Any]] = {
    "doc_id": ["a", "a", "b"],
    "document": ["doc one", "doc one", "doc two"],
    "summary": ["ref one", "ref two", "ref three"],
    "extra": [1, 2, 3],
}


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The datasets cache under tmp_path, and the hub off, for every test here."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # datasets read the variable at its import


def _write(folder: Path, splits: dict[str, dict[str, list[Any]]], fmt: str = "parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in splits.items():
        ds = datasets.Dataset.from_dict(table)
        if fmt == "parquet":
            ds.to_parquet(str(folder / f"{name}.parquet"))
        else:
            ds.to_json(str(folder / f"{name}.jsonl"))
    return folder


def test_parquet_folder_with_dev_split_and_several_references(tmp_path: Path) -> None:
    folder = _write(tmp_path / "mine", {"train": TABLE, "dev": TABLE})
    splits = load_user_dataset(str(folder), COLUMNS, "qasper", tmp_path / "cache")
    assert set(splits) == {"train", "validation"}
    val = splits["validation"]
    assert val.task == "qasper" and val.name == "validation"
    assert [r.id for r in val.examples()] == ["a", "b"]
    assert val.references() == {"a": ["ref one", "ref two"], "b": ["ref three"]}
    # The split's path is SCROLLS JSONL of the same rows (caches key on it).
    assert read_jsonl(Path(val.path), "qasper", "validation").rows == val.rows
    assert Path(val.path).is_relative_to(tmp_path / "cache" / "datasets")
    assert (tmp_path / "hf-datasets").is_dir()  # datasets cached where HF_DATASETS_CACHE says


def test_json_file_with_sibling_split_and_no_id_column(tmp_path: Path) -> None:
    folder = _write(tmp_path / "j", {"train": TABLE, "validation": TABLE}, fmt="json")
    splits = load_user_dataset(str(folder / "train.jsonl"), {"input": "document", "output": "summary"}, "gov_report",
                               tmp_path / "cache")
    assert [r.id for r in splits["validation"].rows] == ["0", "1", "2"]
    assert splits["train"].rows[2].output == "ref three"


def test_save_to_disk_folder(tmp_path: Path) -> None:
    dd = datasets.DatasetDict({n: datasets.Dataset.from_dict(TABLE) for n in ("train", "validation", "test")})
    dd.save_to_disk(str(tmp_path / "saved"))
    splits = load_user_dataset(str(tmp_path / "saved"), COLUMNS, "qmsum", tmp_path / "cache")
    assert len(splits["train"].examples()) == 2


def test_list_outputs_are_several_references(tmp_path: Path) -> None:
    table: dict[str, list[Any]] = {"q": ["x", "y"], "answers": [["a1", "a2"], ["b1"]]}
    folder = _write(tmp_path / "l", {"train": table, "validation": table})
    val = load_user_dataset(str(folder), {"input": "q", "output": "answers"}, "qasper", tmp_path / "c")["validation"]
    assert val.references() == {"0": ["a1", "a2"], "1": ["b1"]}


def test_missing_column_names_dataset_split_and_available_columns(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", {"train": TABLE, "validation": TABLE})
    with pytest.raises(DataError) as info:
        load_user_dataset(str(folder), {"input": "text", "output": "summary"}, "gov_report", tmp_path / "c")
    message = str(info.value)
    assert f"--longeff-dataset {str(folder)!r}, split 'train'" in message
    assert "no column 'text' (for input)" in message
    assert "available columns: 'doc_id', 'document', 'summary', 'extra'" in message


def test_only_a_test_split_is_said_clearly(tmp_path: Path) -> None:
    folder = _write(tmp_path / "t", {"train": TABLE, "test": TABLE})
    with pytest.raises(DataError, match=r"no validation split \(splits: 'train', 'test'\);.*only a 'test' split"):
        load_user_dataset(str(folder), COLUMNS, "gov_report", tmp_path / "c")


def test_wrong_types_name_the_row(tmp_path: Path) -> None:
    folder = _write(tmp_path / "w", {"train": TABLE, "validation": TABLE})
    with pytest.raises(DataError, match=r"split 'train', row 0: column 'extra' holds int, expected a string"):
        load_user_dataset(str(folder), {"input": "extra", "output": "summary"}, "gov_report", tmp_path / "c")


def test_changed_data_gets_a_new_file(tmp_path: Path) -> None:
    folder = _write(tmp_path / "v", {"train": TABLE, "validation": TABLE})
    first = load_user_dataset(str(folder), COLUMNS, "qasper", tmp_path / "c")["train"].path
    _write(folder, {"train": {**TABLE, "summary": ["new", "ref two", "ref three"]}})
    second = load_user_dataset(str(folder), COLUMNS, "qasper", tmp_path / "c")["train"].path
    assert first != second and Path(first).is_file() and Path(second).is_file()


def test_single_saved_dataset_and_unreachable_hub_name(tmp_path: Path) -> None:
    datasets.Dataset.from_dict(TABLE).save_to_disk(str(tmp_path / "one"))
    with pytest.raises(DataError, match="one Dataset, without splits"):
        load_user_dataset(str(tmp_path / "one"), COLUMNS, "qasper", tmp_path / "c")
    with pytest.raises(DataError, match=r"'someone/absent:cfg': could not load it as a hub dataset.*network"):
        load_user_dataset("someone/absent:cfg", COLUMNS, "qasper", tmp_path / "c")


def test_spec_parsing_and_split_siblings(tmp_path: Path) -> None:
    assert parse_spec("org/name:config") == ("org/name", "config")
    assert parse_spec("org/name") == ("org/name", None)
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert parse_spec(str(odd)) == (str(odd), None)
    for name in ("train.json", "dev.json", "other.json"):
        (tmp_path / name).write_text("{}\n")
    assert split_files(tmp_path / "train.json") == {"train": str(tmp_path / "train.json"),
                                                    "validation": str(tmp_path / "dev.json")}
    assert split_files(tmp_path / "other.json") == {"train": str(tmp_path / "other.json")}


def test_inputs_use_the_dataset_for_every_task(tmp_path: Path) -> None:
    folder = _write(tmp_path / "mine", {"train": TABLE, "validation": TABLE})
    settings: Any = SimpleNamespace(dataset=str(folder), columns=tuple(COLUMNS.items()), data_dir=None,
                                    tasks=("gov_report", "qasper"))
    inputs = Inputs(settings, PROFILES["tiny"], tmp_path / "cache", {})
    for task in settings.tasks:
        split = inputs.splits(task)["validation"]
        assert split.task == task and split.references()["a"] == ["ref one", "ref two"]
    assert not list((tmp_path / "cache").glob("generated-*"))  # the generated data is not used


def test_importing_the_data_modules_does_not_import_datasets() -> None:
    code = "import sys, pytest_longeff.data.scrolls, pytest_longeff.data.hub; assert 'datasets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

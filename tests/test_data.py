from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from pytest_longeff.data import (
    DOC_WORDS,
    extract_scrolls_zip,
    fetch_scrolls,
    generate_task,
    load_task,
    read_jsonl,
    write_generated,
)
from pytest_longeff.errors import DataError


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"id": "a", "pid": "a_0", "input": "q?\n\ndoc one", "output": "ref one"},
    {"id": "a", "pid": "a_1", "input": "q?\n\ndoc one", "output": "ref two"},
    {"id": "b", "pid": "b_0", "input": "doc two", "output": "ref three"},
]


def test_several_references_share_an_id(tmp_path: Path) -> None:
    split = read_jsonl(_write(tmp_path / "t" / "validation.jsonl", ROWS), "t", "validation")
    assert [r.id for r in split.examples()] == ["a", "b"]
    assert split.references() == {"a": ["ref one", "ref two"], "b": ["ref three"]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "pid": "x", "input": "i"}', r"bad\.jsonl:2: missing field\(s\) output"),
        ("{not json", r"bad\.jsonl:2: not valid JSON"),
        ('["a"]', r"bad\.jsonl:2: expected a JSON object"),
        ('{"id": 3, "pid": "x", "input": "i", "output": "o"}', r"bad\.jsonl:2: field\(s\) id must be strings"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_jsonl(path, "t", "train")


def test_missing_task_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no folder for task 'qasper'.*--longeff-tasks"):
        load_task(tmp_path, "qasper")


def test_missing_split_file(tmp_path: Path) -> None:
    _write(tmp_path / "qasper" / "train.jsonl", ROWS)
    with pytest.raises(DataError, match=r"validation\.jsonl: file not found"):
        load_task(tmp_path, "qasper")


def test_generated_data_is_deterministic_long_and_spread() -> None:
    a, b = generate_task("gov_report", seed=0), generate_task("gov_report", seed=0)
    assert a == b
    row = a["train"][0]
    words = row.input.split()
    assert len(words) > 4096
    # Every fact of the target appears in the document, and the last fact lies beyond the first 4096 tokens.
    facts = [f.strip() for f in row.output.split(".") if f.strip()]
    positions = [row.input.find(f) for f in facts]
    assert all(p >= 0 for p in positions)
    assert len(row.input[: positions[-1]].split()) > DOC_WORDS // 2


def test_query_tasks_put_the_query_first_with_a_blank_line() -> None:
    for task in ("qmsum", "qasper"):
        row = generate_task(task)["validation"][0]
        query, _, document = row.input.partition("\n\n")
        assert query.startswith("what") and query.endswith("?") and len(document.split()) > 4096


def test_qasper_has_several_references_per_id(tmp_path: Path) -> None:
    write_generated(tmp_path, ["qasper"])
    split = load_task(tmp_path, "qasper")["validation"]
    assert all(len(refs) == 2 for refs in split.references().values())


def test_scrolls_zip_layout_is_unpacked(tmp_path: Path) -> None:
    zpath = tmp_path / "qasper.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for split in ("train", "validation", "test"):
            zf.writestr(f"qasper/{split}.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS))
    folder = extract_scrolls_zip(zpath, tmp_path / "out", "qasper")
    assert load_task(folder.parent, "qasper")["train"].references()["a"] == ["ref one", "ref two"]


def test_fetch_scrolls_prefers_a_local_mirror_and_explains_offline_failure(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "qmsum.zip", "w") as zf:
        for split in ("train", "validation"):
            zf.writestr(f"{split}.jsonl", json.dumps(ROWS[2]) + "\n")
    assert (fetch_scrolls("qmsum", tmp_path / "cache", mirror) / "train.jsonl").is_file()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"could not download SCROLLS gov_report\.zip.*--longeff-data-dir"):
        fetch_scrolls("gov_report", tmp_path / "cache", None)


def test_bad_zip_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "gov_report.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a zip file"):
        extract_scrolls_zip(bad, tmp_path / "out", "gov_report")

"""SCROLLS for the paper profile: the order of sources (data dir, earlier download, the hub's parquet conversion,
the hub's zips) and the message when none has the task. The hub is never reached: the parquet conversion is a
local folder laid out like ``refs/convert/parquet``, and the one test of the hub call serves it from that folder."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_longeff.cell.prepare import Inputs
from pytest_longeff.data import hub as hubdata
from pytest_longeff.data.hub import PARQUET_REVISION, SCROLLS_REPO, load_scrolls
from pytest_longeff.errors import DataError
from pytest_longeff.profiles import PROFILES

datasets = pytest.importorskip("datasets")

ROWS = [
    {"id": "a", "pid": "a_0", "input": "q?\n\ndoc one", "output": "ref one"},
    {"id": "a", "pid": "a_1", "input": "q?\n\ndoc one", "output": "ref two"},
    {"id": "b", "pid": "b_0", "input": "doc two", "output": "ref three"},
]


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # a slip to the real hub fails at once


def _parquet_layout(root: Path, task: str) -> Path:
    """``root/<task>/<split>/0000.parquet``, as on the hub's ``refs/convert/parquet`` branch."""
    table = {key: [r[key] for r in ROWS] for key in ROWS[0]}
    for split in ("train", "validation", "test"):
        (root / task / split).mkdir(parents=True)
        datasets.Dataset.from_dict(table).to_parquet(str(root / task / split / "0000.parquet"))
    return root


def test_data_dir_in_the_hub_parquet_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    splits = load_scrolls("gov_report", _parquet_layout(tmp_path / "dd", "gov_report"), tmp_path / "cache")
    val = splits["validation"]
    assert (val.task, val.name) == ("gov_report", "validation")
    assert [r.pid for r in val.rows] == ["a_0", "a_1", "b_0"]
    assert val.references() == {"a": ["ref one", "ref two"], "b": ["ref three"]}
    assert Path(val.path).is_file()


def test_data_dir_jsonl_errors_are_final_and_zips_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "dd" / "qasper").mkdir(parents=True)
    (tmp_path / "dd" / "qasper" / "train.jsonl").write_text(json.dumps(ROWS[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"train\.jsonl:2: not valid JSON"):
        load_scrolls("qasper", tmp_path / "dd", tmp_path / "cache")
    with zipfile.ZipFile(tmp_path / "dd" / "qmsum.zip", "w") as zf:
        for split in ("train", "validation"):
            zf.writestr(f"qmsum/{split}.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS))
    assert load_scrolls("qmsum", tmp_path / "dd", tmp_path / "cache")["train"].references()["b"] == ["ref three"]


def test_offline_without_data_lists_every_try_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_scrolls("gov_report", tmp_path / "empty", tmp_path / "cache")
    lines = str(info.value).splitlines()
    assert lines[0] == "SCROLLS task 'gov_report': no source has it; tried, in order:"
    assert lines[1].startswith("  1. --longeff-data-dir: ") and "has no gov_report/*.jsonl" in lines[1]
    assert lines[2].startswith("  2. an earlier download: none in ")
    assert lines[3] == (f"  3. the hub's parquet conversion ({SCROLLS_REPO}@{PARQUET_REVISION}): "
                        "skipped: HF_HUB_OFFLINE is set")
    assert lines[4] == f"  4. the hub's zip ({SCROLLS_REPO}/gov_report.zip): skipped: HF_HUB_OFFLINE is set"
    assert lines[5].startswith("fix: HF_HUB_OFFLINE is set (unset it to download), or: pass --longeff-data-dir DIR")


def test_hub_parquet_is_tried_then_the_zip_and_failures_are_reported(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls: list[tuple[str, dict[str, Any]]] = []

    def unreachable(path: str, **kwargs: Any) -> Any:
        calls.append((path, kwargs))
        raise ConnectionError("Couldn't reach 'tau/scrolls' on the Hub")

    def no_download(**kwargs: Any) -> str:
        raise OSError("no network")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    with pytest.raises(DataError) as info:
        load_scrolls("qmsum", None, tmp_path / "cache")
    message = str(info.value)
    assert calls[0][0] == SCROLLS_REPO and calls[0][1]["revision"] == PARQUET_REVISION
    assert calls[0][1]["data_files"] == {"train": "qmsum/train/*.parquet", "validation": "qmsum/validation/*.parquet"}
    assert "1. --longeff-data-dir: not given" in message
    assert "failed (ConnectionError: Couldn't reach 'tau/scrolls' on the Hub)" in message
    assert "4. the hub's zip (tau/scrolls/qmsum.zip): failed (could not download SCROLLS qmsum.zip" in message
    assert "fix: without network: pass --longeff-data-dir DIR holding qmsum/train.jsonl" in message


def test_hub_parquet_download_is_kept_for_offline_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = _parquet_layout(tmp_path / "hub", "qasper")
    real = datasets.load_dataset

    def from_local_copy(path: str, *, data_files: dict[str, str], revision: str | None, **kw: Any) -> Any:
        # The boundary: the hub repo at the parquet revision, served from a local folder with the same layout.
        assert (path, revision) == (SCROLLS_REPO, PARQUET_REVISION)
        return real("parquet", data_files={s: str(hub / f) for s, f in data_files.items()}, **kw)

    monkeypatch.setattr(datasets, "load_dataset", from_local_copy)
    first = load_scrolls("qasper", None, tmp_path / "cache")
    assert first["validation"].references()["a"] == ["ref one", "ref two"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = load_scrolls("qasper", None, tmp_path / "cache")  # the earlier download, read as SCROLLS JSONL
    assert again["validation"].rows == first["validation"].rows and again["train"].path == first["train"].path


def test_inputs_choose_scrolls_for_the_paper_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data_dir = _parquet_layout(tmp_path / "dd", "gov_report")
    settings: Any = SimpleNamespace(dataset=None, columns=None, data_dir=str(data_dir), tasks=("gov_report",))
    seen: list[str] = []

    def counted(task: str, data_dir: Path | None, cache_dir: Path) -> Any:
        seen.append(task)
        return load_scrolls(task, data_dir, cache_dir)

    monkeypatch.setattr(hubdata, "load_scrolls", counted)
    inputs = Inputs(settings, PROFILES["paper"], tmp_path / "cache", {})
    assert inputs.splits("gov_report")["train"].references()["b"] == ["ref three"]
    assert inputs.splits("gov_report") is inputs.splits("gov_report") and seen == ["gov_report"]

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from pytest_longeff.data.scrolls import (
    DOC_WORDS,
    N_SLOTS,
    ORDINALS,
    POOL_SIZE,
    extract_scrolls_zip,
    fetch_scrolls,
    generate_examples,
    generate_task,
    lexicon,
    load_task,
    read_jsonl,
    write_generated,
)
from pytest_longeff.data.tokenizer import lexicon_tokenizer
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


def test_generated_data_is_deterministic_and_fits_the_longest_input() -> None:
    a, b = generate_task("gov_report", seed=0), generate_task("gov_report", seed=0)
    assert a == b
    assert generate_task("gov_report", seed=1) != a
    tok = lexicon_tokenizer()
    for row in a["train"][:5]:
        ids = tok(row.input)["input_ids"]
        assert DOC_WORDS <= len(ids) <= 4096  # every fact is within the longest default input
        assert tok.unk_token_id not in ids and tok.unk_token_id not in tok(row.output)["input_ids"]


def _fact_positions(row_input: str, values: list[str]) -> list[int]:
    tokens = row_input.split()
    out, start = [], 0
    for v in values:
        start = tokens.index(v, start)  # in document order
        out.append(start)
    return out


@pytest.mark.parametrize("task", ["gov_report", "summ_screen_fd"])
def test_facts_are_spread_so_reading_more_finds_more(task: str) -> None:
    """The target's values appear in the document in order, one per slot, spread evenly: the first 1024 tokens
    hold about a quarter of them, the first 2048 about half, and 4096 all of them."""
    rows = generate_task(task, seed=0, n_train=40, n_validation=1)["train"]
    seen = {1024: 0, 2048: 0, 4096: 0}
    for row in rows:
        values = row.output.split()
        assert len(values) == N_SLOTS
        assert all(v in pool for v, pool in zip(values, lexicon().pools, strict=True))
        positions = _fact_positions(row.input, values)
        for n in seen:
            seen[n] += sum(p < n for p in positions)
    total = N_SLOTS * len(rows)
    assert 0.18 < seen[1024] / total < 0.32 and 0.42 < seen[2048] / total < 0.58 and seen[4096] == total


def test_values_are_drawn_fresh_so_they_cannot_be_guessed() -> None:
    """Every slot's value is uniform over its pool: no value is much more frequent than 1 in POOL_SIZE."""
    rows = generate_task("gov_report", seed=0, n_train=400, n_validation=1)["train"]
    counts = Counter(row.output.split()[0] for row in rows)
    assert len(counts) > POOL_SIZE * 0.9 and max(counts.values()) < 400 * 3 / POOL_SIZE


def test_pretraining_streams_never_repeat_the_benchmark_rows() -> None:
    bench = {r.input for task in ("gov_report", "qasper") for split in generate_task(task, seed=0).values()
             for r in split}
    pre = {text for task in ("gov_report", "qasper") for text, _ in generate_examples(task, "0-0-0", 64, DOC_WORDS)}
    assert not bench & pre


def test_query_tasks_put_the_query_first_with_a_blank_line() -> None:
    for task in ("qmsum", "qasper"):
        row = generate_task(task)["validation"][0]
        query, _, document = row.input.partition("\n\n")
        assert query.split()[0] in ORDINALS and query.endswith("?") and len(document.split()) >= DOC_WORDS


def test_qmsum_targets_name_the_slot_then_its_values_onwards() -> None:
    pools = lexicon().pools
    for row in generate_task("qmsum", n_train=10)["train"]:
        slot = ORDINALS.index(row.input.split()[0])
        first, *values = row.output.split()
        assert first == ORDINALS[slot] and len(values) == N_SLOTS - slot
        later = {v for pool in pools[slot:] for v in pool}
        assert values == [v for v in row.input.split() if v in later]


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

"""Data through the ``datasets`` library: users' own datasets (``--longeff-dataset`` with ``--longeff-columns``) and
the hub's parquet conversion of SCROLLS. Either becomes the same :class:`~pytest_longeff.data.scrolls.Split` objects
as the JSONL files, each also written as SCROLLS JSONL (its ``path``: caches key on that file).

``datasets`` is imported inside the functions: the plugin loads in every pytest run of the environment.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_longeff.data.scrolls import (
    SPLITS,
    Row,
    Split,
    extract_scrolls_zip,
    fetch_scrolls,
    hub_offline,
    load_task,
    write_rows,
)
from pytest_longeff.errors import DataError

VALIDATION_NAMES: tuple[str, ...] = ("validation", "valid", "dev", "val")
FILE_BUILDERS: dict[str, str] = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
# File stems that name a split, for a file given as the dataset: its siblings hold the other splits.
SPLIT_STEMS: dict[str, str] = {"train": "train", "training": "train", "validation": "validation",
                               "valid": "validation", "dev": "validation", "val": "validation", "test": "test"}
COLUMNS_FIX = "map them with --longeff-columns input=COL,output=COL[,id=COL]"
SCROLLS_REPO = "tau/scrolls"
PARQUET_REVISION = "refs/convert/parquet"  # the hub's automatic parquet conversion of every config and split
SCROLLS_COLUMNS: dict[str, str] = {"id": "id", "pid": "pid", "input": "input", "output": "output"}


def datasets_cache() -> str | None:
    """``datasets``' cache folder, read now: ``HF_DATASETS_CACHE``, else ``HF_HOME/datasets``, else its default."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "datasets")
    return None


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME[:CONFIG]`` as (name or path, config); an existing path is never split at a colon."""
    if Path(spec).expanduser().exists():
        return str(Path(spec).expanduser()), None
    name, sep, config = spec.rpartition(":")
    return (name, config) if sep and name and config else (spec, None)


def split_files(path: Path) -> dict[str, str]:
    """Data files for a file given as the dataset: the file alone is ``train``; a file named after a split
    (``train.parquet``, ``dev.jsonl``...) brings its siblings of the same format named after the other splits."""
    suffix = "".join(path.suffixes)
    if path.name[: -len(suffix) or None] not in SPLIT_STEMS:
        return {"train": str(path)}
    found: dict[str, str] = {}
    for stem, split in SPLIT_STEMS.items():
        sibling = path.with_name(stem + suffix)
        if sibling.is_file():
            found.setdefault(split, str(sibling))
    return found


def open_dataset(spec: str) -> Any:
    """Load ``spec`` as a ``DatasetDict``: a ``save_to_disk`` folder, a folder of data files, one parquet / JSON /
    CSV file (with its split-named siblings), or a hub dataset ``NAME[:CONFIG]``."""
    import datasets

    name, config = parse_spec(spec)
    path = Path(name)
    if (path / "state.json").is_file():
        raise DataError(f"--longeff-dataset {spec!r}: a save_to_disk folder of one Dataset, without splits; save a "
                        f"DatasetDict with 'train' and 'validation' splits instead")
    cache = datasets_cache()
    try:
        if (path / "dataset_dict.json").is_file():
            how = "a save_to_disk folder (load_from_disk)"
            return datasets.load_from_disk(str(path))
        if path.is_dir():
            how = "a folder of data files (load_dataset)"
            return datasets.load_dataset(str(path), config, cache_dir=cache)
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DataError(f"--longeff-dataset {spec!r}: unknown file type {path.suffix!r}; accepted: "
                                f"{', '.join(FILE_BUILDERS)}, a folder, or a hub dataset name")
            how = f"a {builder} file (load_dataset({builder!r}, data_files=...))"
            return datasets.load_dataset(builder, data_files=split_files(path), cache_dir=cache)
        how = "a hub dataset (no such local path)"
        return datasets.load_dataset(name, config, cache_dir=cache)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many types (hub, files, formats): "cannot load it"
        raise DataError(
            f"--longeff-dataset {spec!r}: could not load it as {how} ({type(exc).__name__}: {exc}); give an "
            f"existing local path (folder, save_to_disk folder, parquet/JSON/CSV file) or a hub name reachable from "
            f"here (network, HF_TOKEN for gated datasets; offline, the dataset must be in datasets' cache)"
        ) from None


def choose_splits(dataset: Mapping[str, Any], where: str) -> dict[str, tuple[str, Any]]:
    """``train`` and ``validation``, each as (its name in the dataset, the split); validation may be named
    ``validation``, ``valid``, ``dev`` or ``val``."""
    available = list(dataset)
    shown = ", ".join(map(repr, available)) or "none"
    if "train" not in available:
        raise DataError(f"{where}: no 'train' split (splits: {shown}); the benchmark fine-tunes on 'train'")
    validation = next((n for n in VALIDATION_NAMES if n in available), None)
    if validation is None:
        hint = (" it has only a 'test' split besides: test references are often hidden, so the benchmark scores "
                "on validation;" if "test" in available else "")
        raise DataError(f"{where}: no validation split (splits: {shown});{hint} add one named 'validation' (or "
                        f"'dev'/'val')")
    return {"train": ("train", dataset["train"]), "validation": (validation, dataset[validation])}


def _text(value: Any, where: str, index: int, column: str) -> str:
    if isinstance(value, str):
        return value
    raise DataError(f"{where}, row {index}: column {column!r} holds {type(value).__name__}, expected a string")


def _references(value: Any, where: str, index: int, column: str) -> list[str]:
    """A row's references: a string, or a list of strings (several references in one row)."""
    if isinstance(value, list) and value:
        return [_text(v, where, index, column) for v in value]
    return [_text(value, where, index, column)]


def _identifier(value: Any, where: str, index: int, column: str) -> str:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"{where}, row {index}: id column {column!r} holds {type(value).__name__}, expected a string "
                    f"or an integer")


def rows_from_dataset(dataset: Any, columns: Mapping[str, str], where: str) -> tuple[Row, ...]:
    """Rows of one split through the column mapping (keys ``input``, ``output``, optional ``id`` and ``pid``).
    Without an id column the id is the row index; rows sharing an id are several references of one example."""
    available = list(dataset.column_names)
    missing = [f"{col!r} (for {key})" for key, col in columns.items() if col not in available]
    if missing:
        raise DataError(f"{where}: no column {', '.join(missing)}; available columns: "
                        f"{', '.join(map(repr, available)) or 'none'}; {COLUMNS_FIX}")
    table = dataset.select_columns(list(dict.fromkeys(columns.values()))).to_dict()
    rows: list[Row] = []
    for i in range(dataset.num_rows):
        ex_id = _identifier(table[columns["id"]][i], where, i, columns["id"]) if "id" in columns else str(i)
        pid = _identifier(table[columns["pid"]][i], where, i, columns["pid"]) if "pid" in columns else None
        text = _text(table[columns["input"]][i], where, i, columns["input"])
        refs = _references(table[columns["output"]][i], where, i, columns["output"])
        rows.extend(Row(ex_id, pid or f"{ex_id}_{k}", text, ref) for k, ref in enumerate(refs))
    if not rows:
        raise DataError(f"{where}: no rows (an empty split cannot be trained or scored)")
    return tuple(rows)


def splits_from_rows(task: str, rows: Mapping[str, tuple[Row, ...]], folder: Path) -> dict[str, Split]:
    """Splits over ``rows``, each written to ``folder/<split>.jsonl`` (kept when already there)."""
    out: dict[str, Split] = {}
    for name, split_rows in rows.items():
        path = folder / f"{name}.jsonl"
        if not path.is_file():
            write_rows(path, split_rows)
        out[name] = Split(task, name, split_rows, str(path))
    return out


def content_folder(root: Path, rows: Mapping[str, tuple[Row, ...]]) -> Path:
    """``root/<digest of the rows>``: changed data gets a new file, so caches keyed on the file see the change."""
    digest = hashlib.sha256()
    for name, split_rows in rows.items():
        digest.update(name.encode())
        for row in split_rows:
            for field in (row.id, row.pid, row.input, row.output):
                digest.update(len(field).to_bytes(8, "little"))
                digest.update(field.encode())
    return root / digest.hexdigest()[:24]


def load_user_dataset(spec: str, columns: Mapping[str, str], task: str, cache_dir: Path) -> dict[str, Split]:
    """``--longeff-dataset`` as the ``train`` and ``validation`` splits of ``task`` (which decides the metric);
    their JSONL copies go under ``cache_dir/datasets``."""
    chosen = choose_splits(open_dataset(spec), f"--longeff-dataset {spec!r}")
    rows = {name: rows_from_dataset(ds, columns, f"--longeff-dataset {spec!r}, split {original!r}")
            for name, (original, ds) in chosen.items()}
    return splits_from_rows(task, rows, content_folder(cache_dir / "datasets", rows))


# ---------------------------------------------------------------------------------------------------------------
# SCROLLS for the paper profile: --longeff-data-dir, an earlier download, the hub's parquet, the hub's zips
# ---------------------------------------------------------------------------------------------------------------


class _Unavailable(Exception):
    """A source that does not hold the task here; its message says why, and the next source is tried."""


def scrolls_parquet_files(root: Path, task: str) -> dict[str, str] | None:
    """``root/<task>/<split>/*.parquet`` (the hub conversion's layout) as data files, when both splits have some."""
    folders = {split: root / task / split for split in SPLITS}
    if all(folder.is_dir() and any(folder.glob("*.parquet")) for folder in folders.values()):
        return {split: str(folder / "*.parquet") for split, folder in folders.items()}
    return None


def read_scrolls_parquet(path: str, data_files: Mapping[str, str], where: str,
                         revision: str | None = None) -> dict[str, tuple[Row, ...]]:
    """SCROLLS rows (columns ``id``, ``pid``, ``input``, ``output``) of parquet files through ``load_dataset``."""
    import datasets

    loaded = datasets.load_dataset(path, data_files=dict(data_files), revision=revision, cache_dir=datasets_cache())
    return {split: rows_from_dataset(loaded[split], SCROLLS_COLUMNS, f"{where}, split {split!r}") for split in SPLITS}


def _zip_folder(zip_path: Path, cache_dir: Path, task: str) -> Path:
    """A local zip unpacked under a folder named after its version (path, size, mtime): a changed zip is re-read."""
    st = zip_path.stat()
    key = hashlib.sha256(f"{zip_path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:24]
    dest = cache_dir / "scrolls-zips" / key
    if not all((dest / task / f"{s}.jsonl").is_file() for s in SPLITS):
        extract_scrolls_zip(zip_path, dest, task)
    return dest


def _from_data_dir(task: str, data_dir: Path | None, cache_dir: Path) -> dict[str, Split]:
    if data_dir is None:
        raise _Unavailable("not given")
    if any((data_dir / task).glob("*.jsonl")):
        return load_task(data_dir, task)  # the user's own files: their errors (file:line) are final
    if (data_dir / f"{task}.zip").is_file():
        return load_task(_zip_folder(data_dir / f"{task}.zip", cache_dir, task), task)
    files = scrolls_parquet_files(data_dir, task)
    if files is None:
        raise _Unavailable(f"{data_dir} has no {task}/*.jsonl, {task}.zip or {task}/{{train,validation}}/*.parquet")
    where = f"SCROLLS parquet {data_dir / task}"
    try:
        rows = read_scrolls_parquet("parquet", files, where)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow and datasets raise many types for unreadable files
        raise DataError(f"{where}: could not read it ({type(exc).__name__}: {exc}); are they the hub's SCROLLS "
                        f"parquet files?") from None
    return splits_from_rows(task, rows, content_folder(cache_dir / "scrolls-parquet", rows))


def _from_earlier_download(task: str, cache_dir: Path) -> dict[str, Split]:
    root = cache_dir / "scrolls"
    if not all((root / task / f"{s}.jsonl").is_file() for s in SPLITS):
        raise _Unavailable(f"none in {root / task}")
    return load_task(root, task)


def _from_hub_parquet(task: str, cache_dir: Path) -> dict[str, Split]:
    offline = hub_offline()
    if offline:
        raise _Unavailable(f"skipped: {offline} is set")
    files = {split: f"{task}/{split}/*.parquet" for split in SPLITS}
    try:
        rows = read_scrolls_parquet(SCROLLS_REPO, files, f"SCROLLS {task} hub parquet", PARQUET_REVISION)
    except Exception as exc:  # noqa: BLE001 - the hub client and datasets raise many types: "not from here"
        raise _Unavailable(f"failed ({type(exc).__name__}: {exc})") from None
    return splits_from_rows(task, rows, cache_dir / "scrolls" / task)


def _from_hub_zip(task: str, cache_dir: Path) -> dict[str, Split]:
    offline = hub_offline()
    if offline:
        raise _Unavailable(f"skipped: {offline} is set")
    try:
        fetch_scrolls(task, cache_dir / "scrolls")
    except DataError as exc:
        raise _Unavailable(f"failed ({exc})") from None
    return load_task(cache_dir / "scrolls", task)


def load_scrolls(task: str, data_dir: Path | None, cache_dir: Path) -> dict[str, Split]:
    """The SCROLLS task's splits from the first source that has them: ``--longeff-data-dir`` (JSONL folders, zips
    or the hub's parquet layout), an earlier download under ``cache_dir/scrolls``, the hub's parquet conversion
    (``datasets``), the hub's zips (``huggingface_hub``). When none has them, the error lists every try."""
    sources: tuple[tuple[str, Callable[[], dict[str, Split]]], ...] = (
        ("--longeff-data-dir", lambda: _from_data_dir(task, data_dir, cache_dir)),
        ("an earlier download", lambda: _from_earlier_download(task, cache_dir)),
        (f"the hub's parquet conversion ({SCROLLS_REPO}@{PARQUET_REVISION})",
         lambda: _from_hub_parquet(task, cache_dir)),
        (f"the hub's zip ({SCROLLS_REPO}/{task}.zip)", lambda: _from_hub_zip(task, cache_dir)),
    )
    tried: list[str] = []
    for label, load in sources:
        try:
            return load()
        except _Unavailable as exc:
            tried.append(f"  {len(tried) + 1}. {label}: {exc}")
    offline = hub_offline()
    raise DataError(
        f"SCROLLS task {task!r}: no source has it; tried, in order:\n" + "\n".join(tried) + "\n"
        f"fix: {'without network' if offline is None else f'{offline} is set (unset it to download), or'}: pass "
        f"--longeff-data-dir DIR holding {task}/train.jsonl and {task}/validation.jsonl, {task}.zip (SCROLLS' zip) "
        f"or {task}/train/*.parquet and {task}/validation/*.parquet (the hub's conversion), copied from a machine "
        f"with network"
    )

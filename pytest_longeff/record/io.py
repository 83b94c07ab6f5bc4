"""Reading, writing and validating JSON reports: the one place that knows the file format and its version.

Every reader of a saved report (``--longeff-resume``, ``--longeff-durations``, the gate's baseline,
``pytest-longeff merge/show/compare``) goes through :func:`load_report`, which validates the file against the JSON
Schema shipped in the package (``pytest_longeff/schema/report.schema.json``, draft 2020-12). ``jsonschema`` is used
when installed; otherwise a small validator for the keywords that schema uses (:func:`schema_errors`). An old,
newer or foreign file is a :class:`ReportError` naming the file and what is wrong, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

#: Version 2: window records (``kind: "window"``), optimizer and energy fields in records, ``software.code_digest``,
#: ``shard``, ``session.resumed_from``, ``carried_over`` records, and merged reports' ``machines`` / ``merged_from``.
SCHEMA_VERSION = 2
SCHEMA_RESOURCE = "schema/report.schema.json"
#: Settings that say where a run's files go or which part of the matrix it ran, not how it measured: two reports
#: that differ only in these are comparable (merge, resume).
OUTPUT_SETTINGS: tuple[str, ...] = ("shard", "durations", "resume", "json_path", "benchmark_json", "plots", "html")
#: Software facts that must match for records to be merged or carried over.
SOFTWARE_KEYS: tuple[str, ...] = ("pytest_longeff", "code_digest", "torch", "transformers")


class ReportError(ValueError):
    """A report that cannot be used: unreadable, not a longeff report, another schema version, or invalid."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        # mkstemp creates the file 0600; reports are shared (CI artifacts), so give them the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as null: an unmeasurable figure is null, never a made-up number."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def dump_report(doc: Mapping[str, Any]) -> str:
    """The report's file text (one serialisation for every writer)."""
    return json.dumps(jsonable(dict(doc)), indent=1) + "\n"


class JsonReport:
    """The JSON report of one session, rewritten atomically after every record."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.records: list[dict[str, Any]] = []
        self.session: dict[str, Any] = {}
        self.started = time.perf_counter()

    @property
    def predictions_dir(self) -> Path:
        """Where each cell's predictions go (``<id>.json`` beside the report)."""
        return self.path.parent / "predictions"

    def add(self, record: Mapping[str, Any], predictions: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Add one finished record, writing its predictions (which travel beside it, if any) to their own file, and
        rewrite the report; returns the record as written."""
        written = dict(record)
        if predictions is not None:
            pred_path = self.predictions_dir / f"{written['id']}.json"
            atomic_write_text(pred_path, json.dumps(predictions, indent=1, ensure_ascii=False) + "\n")
            written["predictions_path"] = os.path.relpath(pred_path)
        else:
            written.setdefault("predictions_path", None)
        written = dict(jsonable(written))
        self.records = [r for r in self.records if r.get("id") != written["id"]] + [written]
        self.write()
        return written

    def carry(self, records: list[dict[str, Any]]) -> None:
        """Records taken unchanged from an earlier report (``--longeff-resume``); written with the first write."""
        ids = {r["id"] for r in records}
        self.records = [r for r in self.records if r.get("id") not in ids] + records

    def document(self) -> dict[str, Any]:
        """The report as a dict, as it is written."""
        return {"schema_version": SCHEMA_VERSION, **self.header, "session": self.session, "records": self.records}

    def write(self) -> None:
        """Rewrite the file atomically."""
        atomic_write_text(self.path, dump_report(self.document()))


# -- validation -----------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    """The JSON Schema of a report, as shipped in the package."""
    text = resources.files("pytest_longeff.record").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
                          "integer": int, "number": (int, float)}


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the document"


def _subset_errors(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any],
                   path: tuple[str | int, ...]) -> Iterator[str]:
    """Errors of ``value`` against the keywords our schema uses: $ref, type, const, enum, required, properties,
    items, minimum, minLength."""
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        yield from _subset_errors(value, target, root, path)
        return
    where = _where(path)
    types = schema.get("type")
    if types is not None and not any(_is(value, t) for t in ([types] if isinstance(types, str) else types)):
        yield f"{where}: expected {' or '.join([types] if isinstance(types, str) else types)}, got {value!r:.60}"
        return
    if "const" in schema and value != schema["const"]:
        yield f"{where}: expected {schema['const']!r}, got {value!r:.60}"
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r:.60} is not one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < schema.get("minimum", -math.inf):
        yield f"{where}: {value} is below {schema['minimum']}"
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        yield f"{where}: empty string"
    if isinstance(value, dict):
        yield from (f"{where}: missing required key {key!r}" for key in schema.get("required", ())
                    if key not in value)
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                yield from _subset_errors(value[key], sub, root, (*path, key))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _subset_errors(item, schema["items"], root, (*path, i))


def schema_errors(doc: Any, schema: Mapping[str, Any] | None = None) -> list[str]:
    """Every way ``doc`` breaks the report schema (with ``jsonschema`` when installed), as readable lines."""
    schema = report_schema() if schema is None else schema
    try:
        from jsonschema import Draft202012Validator
    except ImportError:
        return list(_subset_errors(doc, schema, schema, ()))
    errors = sorted(Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_where(tuple(e.absolute_path))}: {e.message}" for e in errors]


def check_document(doc: Any, source: str) -> dict[str, Any]:
    """``doc`` if it is a valid report of this schema version; else a :class:`ReportError` naming ``source``."""
    if not isinstance(doc, dict) or "schema_version" not in doc or "records" not in doc:
        raise ReportError(f"{source}: not a pytest-longeff JSON report (expected an object with schema_version "
                          "and records)")
    version = doc["schema_version"]
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise ReportError(
            f"{source}: schema_version {version!r} is not {SCHEMA_VERSION}: " +
            ("written by a newer pytest-longeff; upgrade to read it" if newer else
             "written by an older pytest-longeff (records changed in version 2); run the benchmarks again to "
             "make a report of this version"))
    errors = schema_errors(doc)
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ReportError(f"{source}: not a valid pytest-longeff report: " + "; ".join(errors[:5]) + more)
    return doc


def load_report(path: Path | str) -> dict[str, Any]:
    """Read and validate a JSON report; :class:`ReportError` (a ValueError) names the file and what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a readable pytest-longeff JSON report ({exc})") from None
    return check_document(doc, str(path))


# -- what makes two reports comparable --------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def code_digest() -> str:
    """A short digest of this package's source files (Python and the schema) and the tiny profile's shipped
    checkpoints (weights and configs, about 4 MB), so records of edited code or retrained checkpoints are not mixed
    with older ones. Read once per process."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    shipped = [*root.glob("models/checkpoints/*/model.safetensors"), *root.glob("models/checkpoints/*/config.json")]
    for file in sorted([*root.rglob("*.py"), *root.glob("record/schema/*.json"), *shipped]):
        h.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def measured_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide the figures (output paths and the shard left out), as JSON has them (tuples are
    lists), so a run's settings compare equal to a saved report's."""
    kept = {k: v for k, v in settings.items() if k not in OUTPUT_SETTINGS}
    normal: dict[str, Any] = json.loads(json.dumps(jsonable(kept)))
    return normal


def settings_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """How two reports' measuring settings differ, or None."""
    a, b = measured_settings(a), measured_settings(b)
    diffs = [f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in sorted({*a, *b}) if a.get(k) != b.get(k)]
    return "; ".join(diffs) or None


def software_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """How two reports' software (pytest-longeff version and code digest, torch, transformers) differs, or None."""
    diffs = [f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in SOFTWARE_KEYS if a.get(k) != b.get(k)]
    return "; ".join(diffs) or None

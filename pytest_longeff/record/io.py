"""Reading, writing and validating JSON reports: the one place that knows the file format and its version.

Every reader of a saved report (``--longeff-resume``, ``--longeff-durations``, the gate's baseline,
``pytest-longeff merge/show/compare``) goes through :func:`load_report`, which validates the file against the JSON
Schema shipped in the package (``pytest_longeff/schema/report.schema.json``, draft 2020-12). ``jsonschema`` is used
when installed; otherwise a small validator for the keywords that schema uses (:func:`schema_errors`). An old,
newer or foreign file is a :class:`ReportError` naming the file and what is wrong, never a traceback.

Reports travel between machines, so every file from elsewhere (reports, A/B reports, acknowledged files) is read by
:func:`read_json`: at most :data:`MAX_BYTES`, UTF-8, nested at most :data:`MAX_DEPTH` deep, integers of at most
:data:`MAX_INT_DIGITS` digits and finite numbers of magnitude below :data:`MAX_MAGNITUDE` only (a magnitude of
:data:`MIN_MAGNITUDE` or less reads as 0). After the schema,
:func:`cross_reference_errors` checks what a schema cannot (indexes into other sections).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
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
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half of one.

    A failure (a read-only folder, a full disk) removes the temporary file, leaves any previous file whole and
    raises an OSError naming ``path`` (not the temporary file, which no longer exists)."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            # mkstemp creates the file 0600; reports are shared (CI artifacts), so give them the usual mode.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fh.fileno(), 0o666 & ~umask)
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename != str(path):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
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
        #: Records in the file as last written: a failed write leaves the previous file whole.
        self.on_disk = 0
        #: Why the last write of the file failed (a full disk, a read-only folder); None once a write succeeded.
        self.write_error: OSError | None = None
        #: Cells whose predictions file could not be written, and why (their records say ``predictions_path: null``).
        self.predictions_errors: dict[str, OSError] = {}

    @property
    def predictions_dir(self) -> Path:
        """Where each cell's predictions go (``<id>.json`` beside the report)."""
        return self.path.parent / "predictions"

    def add(self, record: Mapping[str, Any], predictions: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Add one finished record, writing its predictions (which travel beside it, if any) to their own file, and
        rewrite the report; returns the record as written. A failed write is kept (:attr:`write_error`,
        :attr:`predictions_errors`), never raised: the record stays in memory and the run goes on."""
        written = dict(record)
        written.setdefault("predictions_path", None)
        if predictions is not None:
            pred_path = self.predictions_dir / f"{written['id']}.json"
            try:
                atomic_write_text(pred_path, json.dumps(predictions, indent=1, ensure_ascii=False) + "\n")
                written["predictions_path"] = os.path.relpath(pred_path)
            except OSError as exc:
                written["predictions_path"] = None
                self.predictions_errors[str(written["id"])] = exc
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

    def write(self) -> bool:
        """Rewrite the file atomically; whether it was written. A failure is kept in :attr:`write_error`: the
        records stay in memory, and the next write (every record rewrites the whole file) may still succeed."""
        try:
            atomic_write_text(self.path, dump_report(self.document()))
        except OSError as exc:
            self.write_error = exc
            return False
        self.write_error, self.on_disk = None, len(self.records)
        return True


# -- reading a file from elsewhere ------------------------------------------------------------------------------------
#: Limits on a JSON file read from elsewhere (a shard artifact, a baseline, a resumed report, an A/B report, an
#: acknowledged file): each is far beyond what pytest-longeff writes, and each keeps a hostile file from exhausting
#: the stack (nesting), the CPU (Python's int parsing) or memory (size), or from turning into inf or NaN in a sum.
MAX_BYTES = 256 * 2**20
MAX_DEPTH = 64
#: Integers of up to 30 digits and numbers of magnitude below 1e30: a report's largest figures (FLOPs, bytes) are
#: near 1e16; anything beyond is absurd. A magnitude of 1e-30 or less reads as 0: the suite writes such numbers
#: (a p-value of 1e-45 for a large regression), so they are not refused, and as 0 no quotient of two figures the
#: readers form can overflow (1 / 1e-320 is inf), while 0 is a value every reader already handles.
MAX_INT_DIGITS = 30
#: What a string failing the schema's name patterns holds (said instead of the regular expression).
PATTERN_MEANING = ("holds a control character or a line break, or (in a name used in file names) a path separator "
                   "or is '.' or '..'")
#: The largest matrix a report's settings may name (``merge`` lists the cells of the whole matrix).
MAX_MATRIX_CELLS = 100_000
MAX_MAGNITUDE = 1e30
MIN_MAGNITUDE = 1e-30
#: Set to 1, the commands that read reports (``pytest-longeff show/merge/compare/plot``, the A/B ones) raise an
#: unexpected exception (a traceback) instead of turning it into one line and exit 2: for tests and bug reports.
DEBUG_ENV = "PYTEST_LONGEFF_DEBUG"
_FIX = ("use the file as pytest-longeff wrote it (a damaged or edited copy cannot be read), or for a file you "
        "write (an acknowledged file) fix the place named")
# One token outside strings: a whole string (skipped), a bracket, or a number's text.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]|-?Infinity|NaN|-?[0-9][0-9.eE+-]*')


class _Refused(ValueError):
    """A value the decoder hooks refuse: ``what`` is wrong with it; ``token`` is its text, to find its place."""

    def __init__(self, what: str, token: str) -> None:
        super().__init__(what)
        self.what, self.token = what, token


def _place(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"line {line}, column {pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


def _too_deep(text: str) -> int | None:
    """Where the brackets outside strings first nest deeper than :data:`MAX_DEPTH`, or None (no recursion, so a
    file nested 100,000 deep costs one pass)."""
    depth = 0
    for match in _TOKENS.finditer(text):
        char = match.group()[0]
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif char in "]}":
            depth -= 1
    return None


def _int(token: str) -> int:
    if len(token.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(token.lstrip('-'))} digits (at most {MAX_INT_DIGITS} are read)", token)
    return int(token)


def _float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value) or abs(value) >= MAX_MAGNITUDE:
        raise _Refused(f"the number {token[:40]} (finite numbers of magnitude below {MAX_MAGNITUDE:.0e} only)",
                       token)
    return 0.0 if abs(value) <= MIN_MAGNITUDE else value


def _constant(token: str) -> Any:
    raise _Refused(f"{token} (not JSON: a figure that was not measured is null)", token)


def parse_json(text: str, source: str, what: str = "JSON document") -> Any:
    """``text`` decoded as JSON within the limits above (nesting, integer size, finite numbers within
    :data:`MAX_MAGNITUDE`, those of :data:`MIN_MAGNITUDE` or less read as 0); :class:`ReportError` names
    ``source``, the place (line and column) and what is wrong: ``source`` is not a readable ``what``."""
    unreadable = f"{source}: not a readable {what}"
    deep = _too_deep(text)
    if deep is not None:
        raise ReportError(f"{unreadable}: nested more than {MAX_DEPTH} deep at {_place(text, deep)}; {_FIX}")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as exc:
        at = next((m.start() for m in _TOKENS.finditer(text) if m.group() == exc.token), None)
        where = "" if at is None else f" at {_place(text, at)}"
        raise ReportError(f"{unreadable}: {exc.what}{where}; {_FIX}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{unreadable}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                          f"{_FIX}") from None
    except RecursionError:  # not reached after the depth check; kept so no input can escape as a traceback
        raise ReportError(f"{unreadable}: nested too deep to read; {_FIX}") from None


def read_text(path: Path | str, what: str) -> str:
    """The text of the ``what`` at ``path`` (at most :data:`MAX_BYTES`, UTF-8); :class:`ReportError` names the file
    and what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ReportError(f"{path}: not a readable {what} ({exc.strerror or exc}); check the path") from None
    if len(data) > MAX_BYTES:
        raise ReportError(f"{path}: not a readable {what}: larger than {MAX_BYTES // 2**20} MiB, more than "
                          f"pytest-longeff writes; {_FIX}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not a readable {what}: not UTF-8 text (byte {exc.start}); {_FIX}") from None


def read_json(path: Path | str, what: str = "JSON report") -> Any:
    """The JSON document at ``path`` (the one parser for every file from elsewhere: :func:`read_text`, then
    :func:`parse_json`); :class:`ReportError` names the file, the place and what is wrong."""
    return parse_json(read_text(path, what), str(path), what)


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
    additionalProperties, propertyNames, items, minItems, maxItems, minimum, maximum, minLength, maxLength,
    pattern, if/then/else (one error per broken keyword, as ``jsonschema`` gives them)."""
    if "$ref" in schema:  # the target's errors, then those of the keywords beside the reference
        target: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        yield from _subset_errors(value, target, root, path)
        schema = {k: v for k, v in schema.items() if k != "$ref"}
    where = _where(path)
    types = schema.get("type")
    if types is not None and not any(_is(value, t) for t in ([types] if isinstance(types, str) else types)):
        yield f"{where}: expected {' or '.join([types] if isinstance(types, str) else types)}, got {value!r:.60}"
        return
    if "const" in schema and value != schema["const"]:
        yield f"{where}: expected {schema['const']!r}, got {value!r:.60}"
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r:.60} is not one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", -math.inf):
            yield f"{where}: {value} is below {schema['minimum']}"
        if value > schema.get("maximum", math.inf):
            yield f"{where}: {value} is above {schema['maximum']}"
    if "if" in schema:  # if/then/else: the branch the value's match of "if" chooses
        branch = schema.get("then" if next(_subset_errors(value, schema["if"], root, path), None) is None else "else")
        if branch is not None:
            yield from _subset_errors(value, branch, root, path)
    if isinstance(value, str):
        yield from _string_errors(value, schema, where)
    if isinstance(value, dict):
        yield from _object_errors(value, schema, root, path)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            yield f"{where}: {len(value)} items, expected at least {schema['minItems']}"
        if len(value) > schema.get("maxItems", math.inf):
            yield f"{where}: {len(value)} items, expected at most {schema['maxItems']}"
        if "items" in schema:
            for i, item in enumerate(value):
                yield from _subset_errors(item, schema["items"], root, (*path, i))


def _string_errors(value: str, schema: Mapping[str, Any], where: str) -> Iterator[str]:
    if len(value) < schema.get("minLength", 0):
        yield f"{where}: {value!r:.60} is shorter than {schema['minLength']}"
    if len(value) > schema.get("maxLength", math.inf):
        yield f"{where}: a string of {len(value)} characters, longer than {schema['maxLength']}"
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        yield f"{where}: {value!r:.60} {PATTERN_MEANING}"


def _object_errors(value: dict[str, Any], schema: Mapping[str, Any], root: Mapping[str, Any],
                   path: tuple[str | int, ...]) -> Iterator[str]:
    where = _where(path)
    yield from (f"{where}: missing required key {key!r}" for key in schema.get("required", ()) if key not in value)
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if key in value:
            yield from _subset_errors(value[key], sub, root, (*path, key))
    if "propertyNames" in schema:
        for key in value:
            yield from _subset_errors(key, schema["propertyNames"], root, path)
    if isinstance(schema.get("additionalProperties"), Mapping):
        for key in value:
            if key not in properties:
                yield from _subset_errors(value[key], schema["additionalProperties"], root, (*path, key))


@lru_cache(maxsize=2)
def _validator_class(jsonschema: Any) -> Any:
    """``jsonschema``'s draft 2020-12 validator with "integer" meaning a JSON integer only (``4.0`` is not one, as
    in the fallback): readers index lists and count with these values. Cached per module object, so whether
    ``jsonschema`` can be imported is decided at each call."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(base, type_checker=checker)


def schema_errors(doc: Any, schema: Mapping[str, Any] | None = None) -> list[str]:
    """Every way ``doc`` breaks the report schema (with ``jsonschema`` when installed), as readable lines."""
    schema = report_schema() if schema is None else schema
    try:
        import jsonschema
    except ImportError:
        return list(_subset_errors(doc, schema, schema, ()))
    validator = _validator_class(jsonschema)
    errors = sorted(validator(schema).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_where(tuple(e.absolute_path))}: " +
            (f"{e.instance!r:.60} {PATTERN_MEANING}" if e.validator == "pattern" else f"{e.message:.200}")
            for e in errors]


def cross_reference_errors(doc: Mapping[str, Any]) -> list[str]:
    """What the schema cannot say, in a document that meets it: every record's ``machine_index`` names an entry of
    ``machines``, ``shard.index`` is at most ``shard.count``, record ids are unique and a cell's id is its
    family-size-seq_len-task, and the settings name a matrix of at most :data:`MAX_MATRIX_CELLS` cells."""
    errors = []
    machines = doc.get("machines") or []
    for i, record in enumerate(doc["records"]):
        index = record.get("machine_index")
        if index is not None and index >= len(machines):
            errors.append(f"records[{i}].machine_index: {index}, but machines has {len(machines)} entries")
    shard = doc.get("shard")
    if isinstance(shard, Mapping) and shard["index"] > shard["count"]:
        errors.append(f"shard: index {shard['index']} is above count {shard['count']}")
    seen: dict[str, int] = {}
    for i, record in enumerate(doc["records"]):
        if record["id"] in seen:
            errors.append(f"records[{i}].id: {record['id']!r:.80} is also records[{seen[record['id']]}] (a cell or "
                          "window is in a report once)")
        seen.setdefault(record["id"], i)
        parts = [record.get(k) for k in ("family", "size", "seq_len", "task")]
        if record.get("kind", "cell") == "cell" and all(p is not None for p in parts) and \
                record["id"] != "-".join(map(str, parts)):
            errors.append(f"records[{i}].id: {record['id']!r:.80} is not family-size-seq_len-task "
                          f"({'-'.join(map(str, parts))!r:.80})")
    settings = doc.get("settings") or {}
    grid = 1
    for key in ("families", "sizes", "lengths", "tasks"):
        grid *= len(settings.get(key) or ()) or 1
    if grid > MAX_MATRIX_CELLS:
        errors.append(f"settings: a matrix of {grid} cells (families x sizes x lengths x tasks; at most "
                      f"{MAX_MATRIX_CELLS} are read)")
    return errors


def check_document(doc: Any, source: str) -> dict[str, Any]:
    """``doc`` if it is a valid report of this schema version; else a :class:`ReportError` naming ``source``."""
    if not isinstance(doc, dict) or "schema_version" not in doc or "records" not in doc:
        raise ReportError(f"{source}: not a pytest-longeff JSON report (expected an object with schema_version "
                          "and records)")
    version = doc["schema_version"]
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        raise ReportError(
            f"{source}: schema_version {version!r:.40} is not {SCHEMA_VERSION}: " +
            ("written by a newer pytest-longeff; upgrade to read it" if newer else
             "written by an older pytest-longeff (records changed in version 2); run the benchmarks again to "
             "make a report of this version"))
    errors = schema_errors(doc)
    if not errors:
        errors = cross_reference_errors(doc)
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ReportError(f"{source}: not a valid pytest-longeff report: " + "; ".join(errors[:5]) + more +
                          f"; {_FIX}")
    return doc


def load_report(path: Path | str) -> dict[str, Any]:
    """Read and validate a JSON report (:func:`read_json`, then :func:`check_document`); :class:`ReportError` (a
    ValueError) names the file and what is wrong."""
    return check_document(read_json(path, "pytest-longeff JSON report"), str(path))


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


#: Settings added after reports were first written, and the value a report that lacks one was measured with.
ABSENT_MEANS: dict[str, Any] = {"gradient_checkpointing": False, "attn_implementation": "auto"}


def measured_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide the figures (output paths and the shard left out), as JSON has them (tuples are
    lists), so a run's settings compare equal to a saved report's; a setting newer than the report reads as the
    value it was measured with (:data:`ABSENT_MEANS`)."""
    kept = {k: v for k, v in settings.items() if k not in OUTPUT_SETTINGS}
    for key, value in ABSENT_MEANS.items():
        kept.setdefault(key, value)
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

"""Read a local Delta table without Spark: for commands that must answer without starting a JVM. And append a few
rows to a small local one without a Spark job (`append`: goldsmith's own `ops.*` records).

The table's state is its log replayed as the Delta protocol describes it: the checkpoint named by
`_delta_log/_last_checkpoint` (else the newest checkpoint listed), then every later `NNNNNNNNNNNNNNNNNNNN.json`
commit in order, each `add` making a data file live and each `remove` taking it away. The live parquet files,
read with pyarrow and cast to the schema of the last `metaData` action, are the table's rows.

An append is a parquet file and a commit that adds it, as a Spark writer's blind append would make them: the
commit file is created only if absent (a hard link, atomic on a local disk), so a concurrent writer of the same
version, Spark or another process, makes one of the two try again with the next version. Tables whose writers
must do more than that are left to Spark (`DeltaLogUnsupported`): a writer version above 2 or table features,
invariants, change data feed, in-commit timestamps, a version at which a checkpoint is due, or rows whose columns
are not the table's (Spark's `mergeSchema` adds them).

Only what the small `ops.*` tables use is read. Anything else raises `DeltaLogUnsupported` so that the caller
reads the table with Spark instead: a root that is not a local folder, deletion vectors, column mapping, partition
columns, a reader feature not known here, a v2 checkpoint (it may list its files in sidecars), or a log with a
gap in its commits.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from goldsmith.errors import DeltaLogUnsupported
from goldsmith.io.paths import local_folder

LOG_FOLDER = "_delta_log"
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CLASSIC_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.parquet$")
_PART_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$")
# Reader features that change nothing for this reader, or whose use is checked file by file (deletion vectors).
_KNOWN_READER_FEATURES = frozenset({"timestampNtz", "deletionVectors", "vacuumProtocolCheck"})
# Writer features under which a commit is first written outside `_delta_log/` (a commit coordinator's).
_COMMITS_ELSEWHERE = frozenset({"coordinatedCommits-preview", "catalogOwned-preview", "catalogManaged"})
_ACTIONS = ("add", "remove", "metaData", "protocol")
_PRIMITIVES: dict[str, pa.DataType] = {
    "string": pa.string(), "long": pa.int64(), "integer": pa.int32(), "short": pa.int16(), "byte": pa.int8(),
    "double": pa.float64(), "float": pa.float32(), "boolean": pa.bool_(), "binary": pa.binary(),
    "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"), "timestamp_ntz": pa.timestamp("us"),
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


@dataclass(frozen=True)
class DeltaSnapshot:
    """A table at one version: its arrow schema and the live parquet files."""

    path: Path
    version: int
    schema: pa.Schema
    files: tuple[Path, ...]


def _unsupported(path: Path, what: str) -> DeltaLogUnsupported:
    return DeltaLogUnsupported(f"Delta table {path}: {what}; the pure-Python reader does not read it, "
                               "read the table with Spark instead")


_Refuse = Callable[[Path, str], DeltaLogUnsupported]  # `_unsupported` (reading) or `_unwritable` (appending)


def table_folder(uri: str) -> Path:
    """The local folder of a table URI (a plain path or `file:`); DeltaLogUnsupported for any other scheme."""
    folder = local_folder(uri)
    if folder is None:
        raise DeltaLogUnsupported(f"{uri} is not a local folder; the pure-Python Delta reader reads only plain "
                                  "paths and file: URIs, read the table with Spark instead")
    return Path(folder)


def snapshot(uri: str) -> DeltaSnapshot | None:
    """The latest state of the Delta table at `uri`, or None when there is no table (no commit) there."""
    replayed = _replay(uri)
    if replayed is None:
        return None
    path, version, files, state = replayed
    schema = _check_state(path, state, files.values())
    return DeltaSnapshot(path, version, schema, tuple(_data_file(path, name) for name, _ in files))


def row_count(uri: str) -> int | None:
    """The rows of the Delta table at `uri` from its log alone (each live file's `numRecords` statistic, less
    the rows its deletion vector deletes), None when there is no table. A file without statistics is counted
    from its parquet footer. DeltaLogUnsupported where the log cannot say (not a local folder, a reader feature
    not known here, commits kept elsewhere)."""
    replayed = _replay(uri)
    if replayed is None:
        return None
    path, _, files, state = replayed
    _check_protocol(path, state)
    total = 0
    for (name, _), add in files.items():
        stats = json.loads(add.get("stats") or "{}")
        rows = stats.get("numRecords")
        if rows is None:
            rows = pq.ParquetFile(_data_file(path, name)).metadata.num_rows
        vector = add.get("deletionVector") or {}
        total += int(rows) - int(vector.get("cardinality") or 0)
    return total


_Files = dict[tuple[str, str | None], dict[str, Any]]


def _replay(uri: str) -> tuple[Path, int, _Files, dict[str, dict[str, Any]]] | None:
    """(folder, version, live `add` actions by file, latest metaData and protocol) of the table at `uri`, or None
    when it has no commit."""
    path = table_folder(uri)
    log_dir = path / LOG_FOLDER
    names = [p.name for p in log_dir.iterdir()] if log_dir.is_dir() else []
    commits = {int(m.group(1)): m.group(0) for m in map(_COMMIT.match, names) if m}
    checkpoint = _checkpoint(path, log_dir, names)
    if not commits and checkpoint is None:
        return None
    start = -1 if checkpoint is None else checkpoint[0]
    later = sorted(v for v in commits if v > start)
    if later != list(range(start + 1, start + 1 + len(later))):
        raise _unsupported(path, f"its log has a gap: after version {start} it lists commits {later[:10]}")
    files: dict[tuple[str, str | None], dict[str, Any]] = {}
    state: dict[str, dict[str, Any]] = {}
    if checkpoint is not None:
        for action, value in _checkpoint_actions(path, log_dir, checkpoint[1]):
            _apply(action, value, files, state)
    for version in later:
        for line in (log_dir / commits[version]).read_text("utf-8").splitlines():
            if line.strip():
                action, value = next(iter(json.loads(line).items()))
                _apply(action, value, files, state)
    return path, later[-1] if later else start, files, state


def read_table(uri: str, columns: Sequence[str] | None = None) -> pa.Table | None:
    """The rows of the Delta table at `uri` (only `columns`, if given) as one arrow table, None when there is no
    table. A column that a file lacks (it was added later) reads as null, as Spark reads it; so does a requested
    column that the table lacks."""
    try:
        state = snapshot(uri)
        if state is None:
            return None
        schema = state.schema
        if columns is not None:
            # A column the table does not have (written by an older goldsmith) reads as null, as in `OpsLog`.
            schema = pa.schema([schema.field(c) if c in schema.names else pa.field(c, pa.null()) for c in columns])
        parts = [_read_file(state.path, file, schema) for file in state.files]
    except FileNotFoundError as exc:
        # A cleanup (log retention, VACUUM) removed a file between the listing and the read.
        raise _unsupported(table_folder(uri), f"{exc.filename} went away while the table was read") from None
    return pa.concat_tables(parts) if parts else schema.empty_table()


def commit_infos(uri: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(version, commitInfo) of the table's commit files, newest first, read lazily (`lakehouse.log_commits`
    without a JVM); nothing when there is no log. DeltaLogUnsupported for a URI that is not a local folder."""
    log_dir = table_folder(uri) / LOG_FOLDER
    names = [p.name for p in log_dir.iterdir()] if log_dir.is_dir() else []
    for version in sorted((int(m.group(1)) for m in map(_COMMIT.match, names) if m), reverse=True):
        try:
            lines = (log_dir / f"{version:020d}.json").read_text("utf-8").splitlines()
        except FileNotFoundError:  # cleaned up by log retention while listed
            continue
        info: dict[str, Any] = next(
            (json.loads(line)["commitInfo"] for line in lines if line.startswith('{"commitInfo"')), {})
        yield version, info


def read_rows(uri: str, columns: Sequence[str] | None = None) -> list[dict[str, Any]] | None:
    """`read_table` as a list of dicts (maps as dicts, timestamps as UTC datetimes), None when there is no table."""
    table = read_table(uri, columns)
    return None if table is None else table.to_pylist(maps_as_pydicts="strict")


def _checkpoint(path: Path, log_dir: Path, names: list[str]) -> tuple[int, list[Path]] | None:
    """(version, parquet files) of the checkpoint to start from, or None to replay every commit."""
    listed = set(names)
    last = _last_checkpoint(log_dir)
    if last is not None:
        version, parts = int(last["version"]), last.get("parts")
        if "v2Checkpoint" in last:
            raise _unsupported(path, f"its checkpoint at version {version} is a v2 checkpoint")
        wanted = [f"{version:020d}.checkpoint.parquet"] if not parts else [
            f"{version:020d}.checkpoint.{i:010d}.{int(parts):010d}.parquet" for i in range(1, int(parts) + 1)
        ]
        if not listed.issuperset(wanted):
            raise _unsupported(path, f"_last_checkpoint names version {version}, whose checkpoint file(s) "
                                     f"{sorted(set(wanted) - listed)} are not there (a v2 checkpoint, or a "
                                     "checkpoint being cleaned up)")
        return version, [log_dir / name for name in wanted]
    # No hint (it is only an optimisation): the newest complete classic or multi-part checkpoint listed.
    complete: dict[int, list[Path]] = {}
    parts_of: dict[tuple[int, int], list[Path]] = {}
    for name in names:
        if m := _CLASSIC_CHECKPOINT.match(name):
            complete[int(m.group(1))] = [log_dir / name]
        elif m := _PART_CHECKPOINT.match(name):
            parts_of.setdefault((int(m.group(1)), int(m.group(3))), []).append(log_dir / name)
    for (version, total), found in parts_of.items():
        if len(found) == total:
            complete.setdefault(version, sorted(found))
    if not complete:
        return None
    version = max(complete)
    return version, complete[version]


def _last_checkpoint(log_dir: Path) -> dict[str, Any] | None:
    """The `_last_checkpoint` hint, or None when there is none or it cannot be parsed (caught mid-write)."""
    try:
        last = json.loads((log_dir / "_last_checkpoint").read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return last if isinstance(last, dict) and "version" in last else None


def _checkpoint_actions(path: Path, log_dir: Path, parts: list[Path]) -> Iterable[tuple[str, dict[str, Any]]]:
    """The add, remove, metaData and protocol actions of a classic (or multi-part) checkpoint."""
    for part in parts:
        names = pq.ParquetFile(part).schema_arrow.names
        if "sidecar" in names or "checkpointMetadata" in names:
            raise _unsupported(path, f"{part.relative_to(log_dir.parent)} is a v2 checkpoint")
        table = pq.read_table(part, columns=[a for a in _ACTIONS if a in names])
        for row in table.to_pylist(maps_as_pydicts="lossy"):
            for action, value in row.items():
                if value is not None:
                    yield action, value


def _file_key(value: dict[str, Any]) -> tuple[str, str | None]:
    """A data file's identity in the log: its path and its deletion vector's id (one commit of a DELETE adds the
    file with a vector and removes the same path without one)."""
    vector = value.get("deletionVector")
    vector_id = None if not vector else f"{vector['storageType']}{vector['pathOrInlineDv']}@{vector.get('offset')}"
    return unquote(value["path"]), vector_id


def _apply(action: str, value: dict[str, Any], files: dict[tuple[str, str | None], dict[str, Any]],
           state: dict[str, dict[str, Any]]) -> None:
    """One log action on the replayed state; the actions that do not change the rows are skipped."""
    if action == "add":
        files[_file_key(value)] = value
    elif action == "remove":
        files.pop(_file_key(value), None)
    elif action in ("metaData", "protocol"):
        state[action] = value


def _check_state(path: Path, state: dict[str, dict[str, Any]], live: Iterable[dict[str, Any]],
                 refuse: _Refuse = _unsupported) -> pa.Schema:
    """The table's arrow schema, after refusing (with `refuse`'s error: the reader's, or the appender's) every
    feature this module does not read."""
    metadata = _check_protocol(path, state, refuse)
    configuration = dict(metadata.get("configuration") or {})
    mode = configuration.get("delta.columnMapping.mode", "none")
    if mode != "none":
        raise refuse(path, f"it uses column mapping (delta.columnMapping.mode = {mode})")
    if metadata.get("partitionColumns"):
        raise refuse(path, f"it is partitioned by {metadata['partitionColumns']}")
    with_vectors = [f["path"] for f in live if f.get("deletionVector")]
    if with_vectors:
        raise refuse(path, f"{len(with_vectors)} of its files have deletion vectors, e.g. {with_vectors[0]}")
    schema = json.loads(metadata["schemaString"])
    # Every field nullable: a column added after a file was written reads as null in that file's rows.
    return pa.schema([pa.field(f["name"], _arrow_type(path, f["type"], refuse)) for f in schema["fields"]])


def _check_protocol(path: Path, state: dict[str, dict[str, Any]], refuse: _Refuse = _unsupported,
                    ) -> dict[str, Any]:
    """The table's metaData action, after refusing a protocol whose log this reader cannot follow."""
    protocol, metadata = state.get("protocol"), state.get("metaData")
    if protocol is None or metadata is None:
        raise refuse(path, "its log has no protocol or metaData action")
    reader_version = int(protocol.get("minReaderVersion", 1))
    features = set(protocol.get("readerFeatures") or [])
    if reader_version > 3 or features - _KNOWN_READER_FEATURES:
        raise refuse(path, f"it needs reader version {reader_version} with features "
                           f"{sorted(features - _KNOWN_READER_FEATURES) or sorted(features)}")
    managed = set(protocol.get("writerFeatures") or []) & _COMMITS_ELSEWHERE
    if managed:
        raise refuse(path, f"its newest commits may not be in _delta_log yet (writer features {sorted(managed)})")
    return metadata


def _arrow_type(path: Path, spark_type: Any, refuse: _Refuse = _unsupported) -> pa.DataType:
    """The arrow type of a Delta schema type (its JSON form)."""
    if isinstance(spark_type, str):
        if spark_type in _PRIMITIVES:
            return _PRIMITIVES[spark_type]
        if m := _DECIMAL.match(spark_type):
            return pa.decimal128(int(m.group(1)), int(m.group(2)))
    elif spark_type.get("type") == "array":
        return pa.list_(_arrow_type(path, spark_type["elementType"], refuse))
    elif spark_type.get("type") == "map":
        return pa.map_(_arrow_type(path, spark_type["keyType"], refuse),
                       _arrow_type(path, spark_type["valueType"], refuse))
    elif spark_type.get("type") == "struct":
        return pa.struct([pa.field(f["name"], _arrow_type(path, f["type"], refuse)) for f in spark_type["fields"]])
    raise refuse(path, f"it has a column of type {spark_type}")


def _data_file(path: Path, name: str) -> Path:
    """The local path of a data file named (URL-decoded) in an `add` action: relative to the table, or a URI."""
    if ":" in name.split("/", 1)[0]:
        folder = local_folder(name)
        if folder is None:
            raise _unsupported(path, f"a data file is not local: {name}")
        return Path(folder)
    return path / name


def _read_file(path: Path, file: Path, schema: pa.Schema) -> pa.Table:
    """One data file cast to `schema`; a column the file lacks (added after it was written) is null."""
    present = set(pq.ParquetFile(file).schema_arrow.names)
    table = pq.read_table(file, columns=[c for c in schema.names if c in present],
                          coerce_int96_timestamp_unit="us")
    columns = []
    for field in schema:
        if field.name not in present:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        try:
            columns.append(table.column(field.name).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise _unsupported(path, f"column {field.name} of {file.name} does not cast to {field.type}: {exc}") \
                from None
    return pa.Table.from_arrays(columns, schema=schema)


# How many versions an append tries before giving up (each lost race means another writer committed meanwhile).
_APPEND_ATTEMPTS = 20
_DEFAULT_CHECKPOINT_INTERVAL = 10


@dataclass(frozen=True)
class NewTable:
    """What `append` creates a missing table with, as a Spark writer would: this schema (Spark's JSON form; every
    column nullable) and these table properties, no partitions, protocol reader 1 / writer 2."""

    schema: dict[str, Any]
    configuration: dict[str, str]


def append(uri: str, rows: Sequence[dict[str, Any]], user_metadata: str | None = None,
           create: NewTable | None = None) -> int:
    """Append `rows` (dicts keyed by the table's columns; a column left out, or None, is null) to the Delta table
    at `uri` in one commit without Spark, and return the version committed; a missing table is created by the
    same commit (version 0) when `create` says how. `user_metadata` goes into the commit's
    `commitInfo.userMetadata`, as Spark's `userMetadata` option puts it. DeltaLogUnsupported, with nothing
    written, when the table is not one this writer may append to (see the module's docstring), or does not exist
    and `create` is None: the caller writes with Spark then."""
    path = table_folder(uri)
    file: Path | None = None  # the data file, once written, kept for the next attempt when a race is lost
    written: pa.Schema | None = None  # its schema
    committed = False
    try:
        for _ in range(_APPEND_ATTEMPTS):
            replayed = _replay(uri)
            if replayed is not None:
                _, version, files, state = replayed
            elif create is not None:
                version, files, state = -1, {}, _new_table_state(create)
            else:
                raise _unwritable(path, "there is no table to append to yet")
            schema = _writable_schema(path, state, files.values(), rows)
            new = version + 1
            interval = int((state["metaData"].get("configuration") or {}).get("delta.checkpointInterval",
                                                                              _DEFAULT_CHECKPOINT_INTERVAL))
            if new > 0 and new % max(interval, 1) == 0:
                raise _unwritable(path, f"version {new} is due a checkpoint")
            if file is None or written is None or not written.equals(schema):
                # (Written again when another writer created the table, or changed it, meanwhile.)
                if file is not None:
                    file.unlink(missing_ok=True)
                file, written = _write_rows(path, rows, schema), schema
            actions = _append_actions(file, len(rows), version, user_metadata)
            if new == 0:
                actions[1:1] = [{"metaData": state["metaData"]}, {"protocol": state["protocol"]}]
            committed = _commit(path, new, actions)
            if committed:
                return new
        raise _unwritable(path, f"{_APPEND_ATTEMPTS} versions in a row went to other writers")
    finally:
        if file is not None and not committed:  # nobody will read it
            file.unlink(missing_ok=True)


def _new_table_state(create: NewTable) -> dict[str, dict[str, Any]]:
    """The protocol and metaData actions of a table `append` creates."""
    return {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}, "metaData": {
        "id": str(uuid.uuid4()), "format": {"provider": "parquet", "options": {}},
        "schemaString": json.dumps(_nullable(create.schema), separators=(",", ":")),
        "partitionColumns": [], "configuration": dict(create.configuration),
        "createdTime": int(time.time() * 1000)}}


def _write_rows(path: Path, rows: Sequence[dict[str, Any]], schema: pa.Schema) -> Path:
    """A new data file of the table at `path` holding `rows`."""
    path.mkdir(parents=True, exist_ok=True)
    file = path / f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    table = pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema} for row in rows], schema=schema)
    pq.write_table(table, file, compression="snappy")
    return file


def _append_actions(file: Path, rows: int, version: int, user_metadata: str | None) -> list[dict[str, Any]]:
    """The commitInfo and add actions of a blind append of `file` (`rows` rows) read at `version` (-1: none)."""
    stat = file.stat()
    info: dict[str, Any] = {
        "timestamp": int(time.time() * 1000), "operation": "WRITE",
        "operationParameters": {"mode": "Append", "partitionBy": "[]"},
        **({"readVersion": version} if version >= 0 else {}),  # a creation read no version, as Spark writes it
        "isolationLevel": "Serializable", "isBlindAppend": True,
        "operationMetrics": {"numFiles": "1", "numOutputRows": str(rows), "numOutputBytes": str(stat.st_size)},
        "engineInfo": "goldsmith", "txnId": str(uuid.uuid4()),
        **({"userMetadata": user_metadata} if user_metadata is not None else {}),
    }
    add = {"path": file.name, "partitionValues": {}, "size": stat.st_size,
           "modificationTime": int(stat.st_mtime * 1000), "dataChange": True,
           "stats": json.dumps({"numRecords": rows}, separators=(",", ":"))}
    return [{"commitInfo": info}, {"add": add}]


def _commit(path: Path, version: int, actions: list[dict[str, Any]]) -> bool:
    """Create the commit file of `version` with `actions` unless it exists: False when another writer made it."""
    log_dir = path / LOG_FOLDER
    log_dir.mkdir(parents=True, exist_ok=True)
    staged = log_dir / f".{version:020d}.json.{uuid.uuid4()}.tmp"
    staged.write_text("".join(json.dumps(a, separators=(",", ":")) + "\n" for a in actions), encoding="utf-8")
    try:
        os.link(staged, log_dir / f"{version:020d}.json")  # fails if the version exists: no overwrite
    except FileExistsError:
        return False
    except OSError as exc:  # a file system without hard links: no exclusive create to rely on
        raise _unwritable(path, f"its file system does not make hard links ({exc.strerror})") from None
    finally:
        staged.unlink(missing_ok=True)
    return True


def _writable_schema(path: Path, state: dict[str, dict[str, Any]], live: Iterable[dict[str, Any]],
                     rows: Sequence[dict[str, Any]]) -> pa.Schema:
    """The arrow schema to write `rows` with, after refusing a table whose writers must do more than add a file."""
    schema = _check_state(path, state, live, _unwritable)
    protocol, metadata = state["protocol"], state["metaData"]
    if int(protocol.get("minWriterVersion", 1)) > 2 or protocol.get("writerFeatures"):
        raise _unwritable(path, f"it needs writer version {protocol.get('minWriterVersion')} "
                                 f"(features {protocol.get('writerFeatures') or []})")
    configuration = metadata.get("configuration") or {}
    for key in ("delta.enableChangeDataFeed", "delta.enableInCommitTimestamps"):
        if str(configuration.get(key, "false")).lower() == "true":
            raise _unwritable(path, f"{key} is on")
    fields = json.loads(metadata["schemaString"])["fields"]
    if any("delta.invariants" in (f.get("metadata") or {}) for f in fields):
        raise _unwritable(path, "a column has an invariant")
    names = set(schema.names)
    extra = {name for row in rows for name in row} - names
    if extra:
        raise _unwritable(path, f"the rows have columns the table lacks: {sorted(extra)}")
    return schema


def _unwritable(path: Path, what: str) -> DeltaLogUnsupported:
    return DeltaLogUnsupported(f"Delta table {path}: {what}; the pure-Python writer does not append to it, write "
                               "with Spark instead")


def _nullable(spark_type: Any) -> Any:
    """A Spark schema type (JSON form) with every field, element and map value nullable."""
    if not isinstance(spark_type, dict):
        return spark_type
    kind = spark_type.get("type")
    if kind == "struct":
        return {**spark_type, "fields": [{**f, "type": _nullable(f["type"]), "nullable": True,
                                         "metadata": f.get("metadata") or {}} for f in spark_type["fields"]]}
    if kind == "array":
        return {**spark_type, "elementType": _nullable(spark_type["elementType"]), "containsNull": True}
    if kind == "map":
        return {**spark_type, "valueType": _nullable(spark_type["valueType"]), "valueContainsNull": True}
    return spark_type


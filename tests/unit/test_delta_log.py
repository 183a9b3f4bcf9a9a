"""The pure-Python Delta reader on logs written by hand as the Delta protocol lays them out: commits replayed,
checkpoints started from, and what it does not read refused (so that its caller reads with Spark); and its appender."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from goldsmith.errors import DeltaLogUnsupported, GoldsmithError
from goldsmith.io.delta_log import NewTable, append, read_rows, snapshot

PROTOCOL = {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}


def metadata(columns: dict[str, str], partitions: list[str] | None = None, **configuration: str) -> dict[str, Any]:
    fields = [{"name": n, "type": t, "nullable": True, "metadata": {}} for n, t in columns.items()]
    return {"metaData": {"id": "t", "format": {"provider": "parquet", "options": {}},
                         "schemaString": json.dumps({"type": "struct", "fields": fields}),
                         "partitionColumns": partitions or [], "configuration": configuration}}


def commit(table: Path, version: int, *actions: dict[str, Any]) -> None:
    log = table / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    info = {"commitInfo": {"operation": "WRITE"}}
    (log / f"{version:020d}.json").write_text("".join(json.dumps(a) + "\n" for a in (info, *actions)))


def data_file(table: Path, file_name: str, /, **columns: list[Any]) -> dict[str, Any]:
    """A parquet data file of the table, and the `add` action that makes it live."""
    table.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), table / file_name)
    return {"add": {"path": file_name, "partitionValues": {}, "size": (table / file_name).stat().st_size,
                    "modificationTime": 0, "dataChange": True}}


def remove(name: str) -> dict[str, Any]:
    return {"remove": {"path": name, "deletionTimestamp": 0, "dataChange": True}}


COLUMNS = {"id": "long", "name": "string"}
ADD_TYPE = pa.struct([("path", pa.string()), ("partitionValues", pa.map_(pa.string(), pa.string())),
                      ("size", pa.int64()), ("modificationTime", pa.int64()), ("dataChange", pa.bool_())])
CHECKPOINT_TYPES = {
    "protocol": pa.struct([("minReaderVersion", pa.int32()), ("minWriterVersion", pa.int32())]),
    "metaData": pa.struct([("id", pa.string()), ("schemaString", pa.string()),
                           ("partitionColumns", pa.list_(pa.string())),
                           ("configuration", pa.map_(pa.string(), pa.string()))]),
    "add": ADD_TYPE,
    "remove": pa.struct([("path", pa.string()), ("deletionTimestamp", pa.int64()), ("dataChange", pa.bool_())]),
}


def checkpoint_rows(actions: list[dict[str, Any]]) -> pa.Table:
    """Checkpoint rows: one action per row, every other action column null."""
    rows: dict[str, list[Any]] = {name: [] for name in CHECKPOINT_TYPES}
    for action in actions:
        (kind, value), = action.items()
        if kind == "metaData":
            value = {**value, "configuration": list(value["configuration"].items())}
        if kind == "add":
            value = {**value, "partitionValues": []}
        for name in rows:
            rows[name].append(value if name == kind else None)
    return pa.table({name: pa.array(rows[name], CHECKPOINT_TYPES[name]) for name in rows})


def test_commits_are_replayed_in_order(tmp_path: Path) -> None:
    table = tmp_path / "t"
    commit(table, 0, PROTOCOL, metadata(COLUMNS), data_file(table, "a.parquet", id=[1, 2], name=["x", None]))
    commit(table, 1, data_file(table, "b%20c.parquet", id=[3], name=["y"]))
    # A later column: the files written before it read it as null.
    commit(table, 2, metadata({**COLUMNS, "score": "double"}), remove("a.parquet"),
           data_file(table, "d.parquet", id=[4], name=["z"], score=[0.5]))
    (table / "b%20c.parquet").rename(table / "b c.parquet")  # a path in the log is URL-encoded
    rows = sorted(read_rows(str(table)) or [], key=lambda r: r["id"])
    assert rows == [{"id": 3, "name": "y", "score": None}, {"id": 4, "name": "z", "score": 0.5}]
    state = snapshot(f"file:{table}")
    assert state is not None and state.version == 2 and len(state.files) == 2


def test_a_checkpoint_is_the_start(tmp_path: Path) -> None:
    table = tmp_path / "t"
    first = [PROTOCOL, metadata(COLUMNS), data_file(table, "a.parquet", id=[1], name=["x"])]
    commit(table, 0, *first)
    commit(table, 1, data_file(table, "b.parquet", id=[2], name=["y"]))
    log = table / "_delta_log"
    pq.write_table(checkpoint_rows([*first, data_file(table, "b.parquet", id=[2], name=["y"])]),
                   log / f"{1:020d}.checkpoint.parquet")
    (log / "_last_checkpoint").write_text(json.dumps({"version": 1, "size": 4}))
    commit(table, 2, remove("a.parquet"), data_file(table, "c.parquet", id=[3], name=[None]))
    # The commits the checkpoint replaces may be cleaned up: the reader must not need them.
    for version in (0, 1):
        (log / f"{version:020d}.json").unlink()
    assert sorted(r["id"] for r in read_rows(str(table)) or []) == [2, 3]
    # Without the hint, the newest checkpoint listed is the start.
    (log / "_last_checkpoint").unlink()
    assert sorted(r["id"] for r in read_rows(str(table)) or []) == [2, 3]


def test_a_multi_part_checkpoint_is_read_whole(tmp_path: Path) -> None:
    table = tmp_path / "t"
    actions = [PROTOCOL, metadata(COLUMNS), data_file(table, "a.parquet", id=[1], name=["x"]),
               data_file(table, "b.parquet", id=[2], name=["y"])]
    log = table / "_delta_log"
    log.mkdir(parents=True)
    for part, chunk in ((1, actions[:2]), (2, actions[2:])):
        pq.write_table(checkpoint_rows(chunk), log / f"{3:020d}.checkpoint.{part:010d}.{2:010d}.parquet")
    (log / "_last_checkpoint").write_text(json.dumps({"version": 3, "size": 4, "parts": 2}))
    state = snapshot(str(table))
    assert state is not None and state.version == 3
    assert sorted(r["id"] for r in read_rows(str(table)) or []) == [1, 2]


def test_no_table_is_none(tmp_path: Path) -> None:
    assert read_rows(str(tmp_path / "absent")) is None
    (tmp_path / "empty" / "_delta_log").mkdir(parents=True)
    assert snapshot(str(tmp_path / "empty")) is None


def test_requested_columns_only_and_missing_ones_null(tmp_path: Path) -> None:
    table = tmp_path / "t"
    commit(table, 0, PROTOCOL, metadata(COLUMNS), data_file(table, "a.parquet", id=[1], name=["x"]))
    assert read_rows(str(table), ["name", "added_later"]) == [{"name": "x", "added_later": None}]


def refused(table: Path, match: str) -> None:
    with pytest.raises(DeltaLogUnsupported, match=match) as caught:
        read_rows(str(table))
    assert isinstance(caught.value, GoldsmithError) and "read the table with Spark" in str(caught.value)


def test_deletion_vectors_are_refused(tmp_path: Path) -> None:
    table = tmp_path / "t"
    add = data_file(table, "a.parquet", id=[1, 2], name=["x", "y"])
    add["add"]["deletionVector"] = {"storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@S}K{vb[*k^", "offset": 1,
                                    "sizeInBytes": 36, "cardinality": 1}
    protocol = {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["deletionVectors"],
                             "writerFeatures": ["deletionVectors"]}}
    commit(table, 0, protocol, metadata(COLUMNS, **{"delta.enableDeletionVectors": "true"}), add)
    refused(table, "deletion vectors")
    # As Delta's DELETE writes it: in one commit, the file again with a vector, and the file without one removed.
    later = tmp_path / "later"
    commit(later, 0, protocol, metadata(COLUMNS), data_file(later, "a.parquet", id=[1, 2], name=["x", "y"]))
    commit(later, 1, {"add": {**add["add"]}}, remove("a.parquet"))
    refused(later, "deletion vectors")


def test_column_mapping_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "t"
    commit(table, 0, {"protocol": {"minReaderVersion": 2, "minWriterVersion": 5}},
           metadata(COLUMNS, **{"delta.columnMapping.mode": "name"}),
           data_file(table, "a.parquet", id=[1], name=["x"]))
    refused(table, "column mapping")


def test_an_unknown_reader_feature_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "t"
    protocol = {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["variantType"],
                             "writerFeatures": ["variantType"]}}
    commit(table, 0, protocol, metadata(COLUMNS), data_file(table, "a.parquet", id=[1], name=["x"]))
    refused(table, "variantType")


def test_a_v2_checkpoint_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "t"
    commit(table, 0, PROTOCOL, metadata(COLUMNS), data_file(table, "a.parquet", id=[1], name=["x"]))
    log = table / "_delta_log"
    (log / f"{0:020d}.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json").write_text("{}\n")
    (log / "_last_checkpoint").write_text(json.dumps({"version": 0, "size": 3}))
    refused(table, "checkpoint file")
    (log / "_last_checkpoint").write_text(json.dumps({"version": 0, "size": 3, "v2Checkpoint": {}}))
    refused(table, "v2 checkpoint")


def test_a_gap_partitions_remote_roots_and_lost_files_are_refused(tmp_path: Path) -> None:
    table = tmp_path / "t"
    commit(table, 0, PROTOCOL, metadata(COLUMNS), data_file(table, "a.parquet", id=[1], name=["x"]))
    commit(table, 2, data_file(table, "b.parquet", id=[2], name=["y"]))
    refused(table, "gap")
    parted = tmp_path / "p"
    commit(parted, 0, PROTOCOL, metadata(COLUMNS, ["name"]), data_file(parted, "a.parquet", id=[1]))
    refused(parted, "partitioned")
    with pytest.raises(DeltaLogUnsupported, match="not a local folder"):
        read_rows("s3a://bucket/ops/model_promotions")
    vacuumed = tmp_path / "v"
    commit(vacuumed, 0, PROTOCOL, metadata(COLUMNS), data_file(vacuumed, "a.parquet", id=[1], name=["x"]))
    (vacuumed / "a.parquet").unlink()
    refused(vacuumed, "went away")


def test_an_append_creates_the_table_then_adds_to_it_and_a_race_takes_the_next_version(tmp_path: Path) -> None:
    """The appender (delta_log.append) on its own: the first append creates the table (protocol 1/2, the schema
    with every column nullable, the given properties), later ones add a file each; a version another writer made
    meanwhile is not overwritten, the append takes the next one."""
    table = tmp_path / "t"
    schema = {"type": "struct", "fields": [{"name": "id", "type": "long", "nullable": False, "metadata": {}},
                                           {"name": "tags", "type": {"type": "array", "elementType": "string",
                                                                     "containsNull": False}}]}
    new = NewTable(schema, {"delta.checkpointInterval": "100"})
    with pytest.raises(DeltaLogUnsupported, match="no table to append to"):
        append(str(table), [{"id": 1}])
    assert append(str(table), [{"id": 1, "tags": ["a"]}], "m", create=new) == 0
    first = [json.loads(line) for line in (table / "_delta_log" / f"{0:020d}.json").read_text().splitlines()]
    assert [next(iter(a)) for a in first] == ["commitInfo", "metaData", "protocol", "add"]
    assert first[0]["commitInfo"]["userMetadata"] == "m" and first[2] == PROTOCOL
    assert "readVersion" not in first[0]["commitInfo"] and first[0]["commitInfo"]["isBlindAppend"]
    written = json.loads(first[1]["metaData"]["schemaString"])
    assert [f["nullable"] for f in written["fields"]] == [True, True] and written["fields"][1]["type"]["containsNull"]
    assert first[1]["metaData"]["configuration"] == {"delta.checkpointInterval": "100"}
    commit(table, 1, data_file(table, "other.parquet", id=[2], tags=[["b"]]))  # another writer's version 1
    original = (table / "_delta_log" / f"{1:020d}.json").read_text()
    assert append(str(table), [{"id": 3}], create=new) == 2
    assert (table / "_delta_log" / f"{1:020d}.json").read_text() == original
    third = json.loads((table / "_delta_log" / f"{2:020d}.json").read_text().splitlines()[0])["commitInfo"]
    assert third["readVersion"] == 1 and third["operationMetrics"]["numOutputRows"] == "1"
    assert sorted((r["id"], r["tags"]) for r in read_rows(str(table)) or []) == [(1, ["a"]), (2, ["b"]), (3, None)]

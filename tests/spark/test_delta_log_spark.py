"""The pure-Python Delta reader against tables Spark wrote: the same rows as Spark reads, through appends, a schema
change, a delete and checkpoints; deletion vectors refused. And its appender against Spark: what it appends is what
Spark reads, Spark's writes follow it, concurrent writers lose no row, and the tables it must not write are left to
Spark."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from goldsmith.errors import DeltaLogUnsupported
from goldsmith.io.delta_log import append, read_rows, row_count, snapshot
from goldsmith.io.lakehouse import Lakehouse, Txn
from goldsmith.io.ops import OPS_TABLE_PROPERTIES, SCHEMAS, OpsLog, column_names, rows_frame
from goldsmith.ml.registry import local_moves, spark_moves

T0 = datetime(2024, 5, 1, 8, 0, 0)
BATCH = "id BIGINT, name STRING, amount DOUBLE, at TIMESTAMP, tags ARRAY<STRING>"


def spark_rows(spark: SparkSession, path: str) -> list[dict[str, Any]]:
    """Spark's reading of the table, times as UTC microseconds."""
    df = spark.read.format("delta").load(path)
    times = [f.name for f in df.schema.fields if f.dataType.typeName() == "timestamp"]
    df = df.select(*[F.unix_micros(c).alias(c) if c in times else F.col(c) for c in df.columns])
    return sorted((r.asDict(recursive=True) for r in df.collect()), key=lambda r: r["id"])


def pure_rows(path: str) -> list[dict[str, Any]]:
    """The pure reader's reading of the table, times as UTC microseconds."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rows = read_rows(path) or []
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = (value - epoch) // timedelta(microseconds=1)
    return sorted(rows, key=lambda r: r["id"])


def test_the_pure_reader_reads_what_spark_reads(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    batches = [
        [(1, "a", 1.5, T0, ["x"]), (2, None, None, None, None)],
        [(3, "c", -2.0, T0 + timedelta(hours=1), [])],
        [(4, "d", 0.25, T0 + timedelta(days=1), ["y", None]), (5, "e", 9.0, T0, ["z"])],
    ]
    spark.createDataFrame(batches[0], BATCH).write.format("delta").save(path)
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")
    for batch in batches[1:]:
        spark.createDataFrame(batch, BATCH).write.format("delta").mode("append").save(path)
    # A column added later (the older files lack it), then a delete that rewrites a file (remove + add).
    spark.createDataFrame([(6, "f", 1.0, T0, ["w"], {"k": 1})], f"{BATCH}, counts MAP<STRING, BIGINT>") \
        .write.format("delta").mode("append").option("mergeSchema", "true").save(path)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id = 4")
    spark.createDataFrame([(7, "g", None, None, None, None)], f"{BATCH}, counts MAP<STRING, BIGINT>") \
        .write.format("delta").mode("append").save(path)

    log = tmp_path / "t" / "_delta_log"
    assert (log / "_last_checkpoint").is_file() and list(log.glob("*.checkpoint.parquet"))
    state = snapshot(path)
    assert state is not None and state.version == max(int(p.stem) for p in log.glob("*.json"))
    expected = spark_rows(spark, path)
    assert [r["id"] for r in expected] == [1, 2, 3, 5, 6, 7]
    assert pure_rows(path) == expected
    assert pure_rows(f"file:{path}") == expected
    # The count from the log's statistics (checkpoint, appends, the rewrite of the delete) is Spark's count.
    assert row_count(path) == row_count(f"file:{path}") == len(expected) == 6
    assert row_count(str(tmp_path / "none")) is None


def test_model_promotions_read_without_spark_equal_spark_s(spark: SparkSession, tmp_path: Path) -> None:
    lakehouse = Lakehouse(spark, str(tmp_path / "lake"))
    ops = OpsLog(lakehouse)
    for i in range(3):
        ops.append("model_promotions", [{
            "model_name": "delay", "alias": "champion", "action": "promote", "from_version": i or None,
            "to_version": i + 1, "reason": f"move {i}", "actor": "ci@host", "mlflow_run_id": "m", "run_id": "r",
            "moved_at": T0 + timedelta(minutes=i),
        }])
    moves = local_moves(lakehouse.root)
    assert sorted(moves, key=lambda m: m["to_version"]) == sorted(spark_moves(lakehouse), key=lambda m: m["to_version"])
    assert [m["moved_at"] for m in sorted(moves, key=lambda m: m["to_version"])] == [
        T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    ]
    assert local_moves(str(tmp_path / "no_lake")) == []


def test_deletion_vectors_are_refused(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "dv")
    spark.sql(f"CREATE TABLE delta.`{path}` (id BIGINT) USING DELTA "
              "TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    spark.range(10).coalesce(1).write.format("delta").mode("append").save(path)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id = 3")
    with pytest.raises(DeltaLogUnsupported, match="deletion vectors"):
        read_rows(path)
    # A count needs no rows: the vector's cardinality is taken off the file's record count.
    assert row_count(path) == spark.read.format("delta").load(path).count() == 9


def test_the_ops_log_reads_local_tables_as_spark_does(spark: SparkSession, tmp_path: Path) -> None:
    lakehouse = Lakehouse(spark, str(tmp_path / "lake"))
    ops = OpsLog(lakehouse)
    ops.append("refined_batches", [{"silver_table": "t", "batch_id": f"b{i}", "run_id": "r",
                                     "refined_at": T0 + timedelta(minutes=i)} for i in range(3)])
    columns = ("silver_table", "batch_id", "refined_at")
    local = OpsLog(lakehouse)._rows("refined_batches", *columns)
    by_spark = OpsLog(lakehouse)._spark_rows("refined_batches", columns)
    assert sorted(local, key=str) == sorted(by_spark, key=str)
    assert sorted(r["refined_at"] for r in local) == [T0 + timedelta(minutes=i) for i in range(3)]


def test_ops_column_names_are_the_ddl_s(spark: SparkSession) -> None:
    for table, ddl in SCHEMAS.items():
        schema = StructType.fromDDL(ddl)
        assert isinstance(schema, StructType)
        assert column_names(table) == schema.fieldNames(), table


OPS_LIKE = ("id BIGINT, name STRING, amount DOUBLE, ok BOOLEAN, at TIMESTAMP, tags ARRAY<STRING>, "
            "counts MAP<STRING, BIGINT>")


def ops_schema(table: str) -> StructType:
    schema = StructType.fromDDL(SCHEMAS[table])
    assert isinstance(schema, StructType)
    return schema


def ops_like_table(spark: SparkSession, path: str, interval: int = 100) -> None:
    """A table made as goldsmith makes an ops table: Spark creates it with its first append."""
    spark.createDataFrame([(1, "spark", 1.5, True, T0, ["x"], {"k": 1})], OPS_LIKE).write.format("delta") \
        .option("delta.checkpointInterval", str(interval)).option("delta.dataSkippingNumIndexedCols", "0").save(path)


def test_rows_appended_without_spark_are_what_spark_reads_and_later_spark_writes_follow_them(
    spark: SparkSession, tmp_path: Path,
) -> None:
    path = str(tmp_path / "t")
    ops_like_table(spark, path)
    rows: list[dict[str, Any]] = [
        {"id": 2, "name": "pure", "amount": None, "ok": False, "at": T0 + timedelta(hours=1), "tags": [],
         "counts": {"a": 2, "b": None}},
        {"id": 3, "name": None, "amount": -0.5, "ok": None, "at": None, "tags": None, "counts": None}]
    assert append(path, rows, user_metadata="marker-1") == 1
    spark.createDataFrame([(4, "spark again", 2.0, True, T0, ["y", None], {})], OPS_LIKE).write.format("delta") \
        .mode("append").save(path)
    assert append(f"file:{path}", [{"id": 5, "name": "last"}]) == 3  # a column left out is null
    expected = spark_rows(spark, path)
    assert [r["id"] for r in expected] == [1, 2, 3, 4, 5]
    assert expected[1] == {"id": 2, "name": "pure", "amount": None, "ok": False,
                           "at": (T0 + timedelta(hours=1) - datetime(1970, 1, 1)) // timedelta(microseconds=1),
                           "tags": [], "counts": {"a": 2, "b": None}}
    assert expected[4]["name"] == "last" and expected[4]["counts"] is None
    assert pure_rows(path) == expected
    history = {r["version"]: r for r in spark.sql(f"describe history delta.`{path}`").collect()}
    assert sorted(history) == [0, 1, 2, 3]
    assert history[1]["userMetadata"] == "marker-1" and history[1]["operation"] == "WRITE"
    assert history[1]["operationMetrics"]["numOutputRows"] == "2"
    assert spark.read.format("delta").option("versionAsOf", 1).load(path).count() == 3
    assert row_count(path) == 5  # from the commits' statistics
    log = tmp_path / "t" / "_delta_log"
    adds = [line for line in (log / f"{1:020d}.json").read_text().splitlines() if line.startswith('{"add"')]
    assert len(adds) == 1 and not list(log.glob(".*tmp"))  # one file for the append; no staged commit left


def test_appends_without_spark_that_race_each_other_and_spark_lose_no_row(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    ops_like_table(spark, path)

    def pure(writer: int) -> None:
        for i in range(12):
            append(path, [{"id": writer * 100 + i, "name": f"w{writer}"}])

    threads = [threading.Thread(target=pure, args=(w,)) for w in (1, 2)]
    for thread in threads:
        thread.start()
    for i in range(4):  # Spark appends meanwhile: one of two writers of a version retries with the next one
        spark.createDataFrame([(900 + i, "spark", None, None, None, None, None)], OPS_LIKE).write.format("delta") \
            .mode("append").save(path)
    for thread in threads:
        thread.join()
    ids = [r["id"] for r in spark_rows(spark, path)]
    assert ids == sorted([1, *range(100, 112), *range(200, 212), *range(900, 904)])
    commits = sorted(int(p.stem) for p in (tmp_path / "t" / "_delta_log").glob("*.json"))
    assert commits == list(range(1 + 24 + 4))  # one commit per append, no gap, none overwritten
    state = snapshot(path)
    assert state is not None
    # No file with rows outside the log: an append that lost a race commits its file at the next version. (Spark
    # leaves its empty partitions' files behind, without rows.)
    unlisted = set((tmp_path / "t").glob("*.parquet")) - set(state.files)
    assert [pq.ParquetFile(f).metadata.num_rows for f in unlisted] == [0] * len(unlisted)


def test_tables_an_append_without_spark_must_not_write_are_left_to_spark(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    with pytest.raises(DeltaLogUnsupported, match="no table"):
        append(path, [{"id": 1}])
    ops_like_table(spark, path, interval=3)
    with pytest.raises(DeltaLogUnsupported, match="columns the table lacks"):
        append(path, [{"id": 2, "new_column": "x"}])
    assert append(path, [{"id": 2}]) == 1 and append(path, [{"id": 3}]) == 2
    files = sorted((tmp_path / "t").iterdir())
    with pytest.raises(DeltaLogUnsupported, match="version 3 is due a checkpoint"):
        append(path, [{"id": 4}])
    assert sorted((tmp_path / "t").iterdir()) == files  # nothing written
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')")
    with pytest.raises(DeltaLogUnsupported, match=r"writer version 7 \(features \['changeDataFeed'"):
        append(path, [{"id": 4}])
    constrained = str(tmp_path / "c")
    ops_like_table(spark, constrained)
    spark.sql(f"ALTER TABLE delta.`{constrained}` ADD CONSTRAINT positive CHECK (id > 0)")
    with pytest.raises(DeltaLogUnsupported, match="writer version"):
        append(constrained, [{"id": -1}])
    assert spark.read.format("delta").load(constrained).count() == 1


def test_the_ops_log_appends_without_spark_and_falls_back_to_it(spark: SparkSession, tmp_path: Path) -> None:
    """Appends, the first one creating the table as Spark would have, make no Spark job of their own; a marked one
    is not made twice; an ops table of an older goldsmith, without a column, gets it through Spark's schema merge;
    a session whose defaults for new tables need a table feature has its ops tables created by Spark."""
    row = {"table_name": "t", "run_id": "r", "inputs": "{}", "rows": 3, "table_version": 1, "built_at": T0,
           "mode": "full"}
    lakehouse = Lakehouse(spark, str(tmp_path / "lake"))
    ops = OpsLog(lakehouse)
    tracker = spark.sparkContext.statusTracker()
    jobs = len(tracker.getJobIdsForGroup(None))
    ops.append("gold_builds", [row])
    # Registering the new table for SQL is Delta's one job here (reading the log of a commit without a checksum
    # file); Spark's own first append makes two.
    assert len(tracker.getJobIdsForGroup(None)) - jobs == 1
    jobs = len(tracker.getJobIdsForGroup(None))
    txn = Txn("goldsmith-test", 1)
    for _ in range(2):
        ops.append("gold_builds", [{**row, "run_id": "r2"}], txn=txn)
    ops.append("gold_builds", [{**row, "run_id": "r3"}])
    assert len(tracker.getJobIdsForGroup(None)) == jobs
    assert sorted(r["run_id"] for r in OpsLog(lakehouse)._spark_rows("gold_builds", ("run_id",))) == ["r", "r2", "r3"]
    assert lakehouse.find_commit("ops", "gold_builds", txn) is not None
    assert spark.sql("select count(*) as n from ops.gold_builds").collect()[0]["n"] == 3  # registered for SQL

    # The same table as Spark's own first append makes it: protocol, properties, schema, no partitions.
    by_spark = Lakehouse(spark, str(tmp_path / "spark"))
    by_spark.write(rows_frame(spark, [row], ops_schema("gold_builds")).coalesce(1), "ops", "gold_builds",
                   options={"mergeSchema": "true", **OPS_TABLE_PROPERTIES}, metrics=False)

    def detail(root: Path) -> tuple[Any, ...]:
        d = spark.sql(f"describe detail delta.`{root}/ops/gold_builds`").first()
        assert d is not None
        return d["minReaderVersion"], d["minWriterVersion"], d["properties"], d["partitionColumns"]

    assert detail(tmp_path / "lake") == detail(tmp_path / "spark")
    assert spark.read.format("delta").load(f"{tmp_path}/lake/ops/gold_builds").schema == \
        spark.read.format("delta").load(f"{tmp_path}/spark/ops/gold_builds").schema

    older = str(tmp_path / "older")
    spark.createDataFrame([("t", "r")], "table_name STRING, run_id STRING").write.format("delta") \
        .save(f"{older}/ops/gold_builds")
    OpsLog(Lakehouse(spark, older)).append("gold_builds", [{**row, "run_id": "r4"}])
    merged = spark.read.format("delta").load(f"{older}/ops/gold_builds")
    assert "mode" in merged.columns and merged.where("run_id = 'r4'").collect()[0]["mode"] == "full"

    spark.conf.set("spark.databricks.delta.properties.defaults.enableDeletionVectors", "true")
    try:
        OpsLog(Lakehouse(spark, str(tmp_path / "featured"))).append("gold_builds", [row])
    finally:
        spark.conf.unset("spark.databricks.delta.properties.defaults.enableDeletionVectors")
    featured = spark.sql(f"describe detail delta.`{tmp_path}/featured/ops/gold_builds`").first()
    assert featured is not None and "deletionVectors" in (featured["tableFeatures"] or [])

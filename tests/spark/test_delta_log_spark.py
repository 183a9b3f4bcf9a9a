"""The pure-Python Delta reader against tables Spark wrote: the same rows as Spark reads, through appends, a schema
change, a delete and checkpoints; deletion vectors refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from goldsmith.errors import DeltaLogUnsupported
from goldsmith.io.delta_log import read_rows, row_count, snapshot
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.io.ops import SCHEMAS, OpsLog, column_names
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

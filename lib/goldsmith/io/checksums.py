"""Content checksums of a lakehouse's tables: what "the same tables" means when two runs are compared (a run
killed and completed against one never interrupted, a lakehouse before and after a move).

A table's checksum is its row count and the sum of a 64-bit hash of each row, so row order and file layout do
not matter, a lost or doubled row does. A local table is hashed in Python from its parquet files (no Spark
job); others with Spark's `xxhash64`; compare checksums of one kind with each other. Columns that name a run
rather than the data are left out (`VOLATILE`: run and batch ids, the times a run stamps, the registry version a
prediction came from); `_source_file` counts by the file's name, so the same landing files reached through
another path are the same.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from goldsmith.errors import DeltaLogUnsupported
from goldsmith.io import delta_log
from goldsmith.io.lakehouse import Lakehouse

VOLATILE = frozenset({
    "_batch_id", "_ingested_at", "_run_id", "run_id", "batch_id", "ingested_at", "refined_at", "scored_at",
    "scoring_run_id", "model_run_id", "model_version", "mlflow_run_id", "recorded_at", "built_at",
})


def frame_checksum(df: DataFrame) -> tuple[int, int]:
    """(rows, sum of xxhash64 over each row's columns but the volatile ones)."""
    if "_source_file" in df.columns:
        df = df.withColumn("_source_file", F.element_at(F.split("_source_file", "/"), -1))
    if "path" in df.columns:
        df = df.withColumn("path", F.element_at(F.split("path", "/"), -1))
    df = df.drop(*VOLATILE)
    row = df.agg(F.count(F.lit(1)), F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)"))).first()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def local_checksum(path: str) -> tuple[int, int] | None:
    """`frame_checksum`'s counterpart for a table in a local folder, read without Spark (pyarrow): milliseconds
    for the small tables of a test. Its hash is its own (compare it only with itself); None when the pure
    reader cannot read the table."""
    try:
        table = delta_log.read_table(path)
    except DeltaLogUnsupported:
        return None
    if table is None:
        return None
    columns = [c for c in table.column_names if c not in VOLATILE]
    total = 0
    for row in table.select(columns).to_pylist():
        for name in ("_source_file", "path"):
            if isinstance(row.get(name), str):
                row[name] = row[name].rsplit("/", 1)[-1]
        digest = hashlib.blake2b(repr(sorted(row.items())).encode(), digest_size=8).digest()
        total += int.from_bytes(digest, "little")
    return table.num_rows, total


def lakehouse_checksums(spark: SparkSession, root: str, layers: tuple[str, ...] = ("bronze", "silver", "gold"),
                        ) -> dict[str, Any]:
    """`frame_checksum` of every table of `layers` under `root`, and of the bookkeeping ops tables (their
    `batch_id` left out, `refined_batches` as its row and distinct-batch counts)."""
    lakehouse = Lakehouse(spark, root)
    sums: dict[str, Any] = {}

    def checksum(layer: str, table: str) -> tuple[int, int]:
        local = local_checksum(lakehouse.path(layer, table))
        return local if local is not None else frame_checksum(lakehouse.read(layer, table))

    for layer in layers:
        for table in lakehouse._list_tables(layer):
            sums[f"{layer}.{table}"] = checksum(layer, table)
    if lakehouse.exists("ops", "ingested_files"):
        sums["ops.ingested_files"] = checksum("ops", "ingested_files")
    refined = delta_log.read_rows(lakehouse.path("ops", "refined_batches"), ["silver_table", "batch_id"]) \
        if not lakehouse.catalog else None
    if refined is not None:
        sums["ops.refined_batches"] = (len(refined), len({(r["silver_table"], r["batch_id"]) for r in refined}))
    elif lakehouse.exists("ops", "refined_batches"):
        rows = lakehouse.read("ops", "refined_batches")
        sums["ops.refined_batches"] = (rows.count(), rows.select("silver_table", "batch_id").distinct().count())
    return sums

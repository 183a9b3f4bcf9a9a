"""The engine's own records, in `ops.*` Delta tables (append-only; blind appends never conflict)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import functions as F

from goldsmith.io.lakehouse import Lakehouse

SCHEMAS: dict[str, str] = {
    "ingested_files": (
        "source STRING, path STRING, size_bytes BIGINT, modified_at TIMESTAMP, batch_id STRING, "
        "run_id STRING, ingested_at TIMESTAMP"
    ),
    "refined_batches": "silver_table STRING, batch_id STRING, run_id STRING, refined_at TIMESTAMP",
    "quality_metrics": (
        "run_id STRING, pipeline STRING, stage STRING, table_name STRING, batch_ids ARRAY<STRING>, "
        "records_in BIGINT, records_out BIGINT, quarantined BIGINT, duplicates BIGINT, "
        "inserted BIGINT, updated BIGINT, rule_violations MAP<STRING, BIGINT>, status STRING, "
        "duration_seconds DOUBLE, recorded_at TIMESTAMP"
    ),
    "gold_builds": (
        "table_name STRING, run_id STRING, inputs STRING, rows BIGINT, table_version BIGINT, built_at TIMESTAMP"
    ),
    "run_log": (
        "run_id STRING, pipeline STRING, stages STRING, status STRING, message STRING, "
        "started_at TIMESTAMP, finished_at TIMESTAMP, duration_seconds DOUBLE"
    ),
}


def now() -> datetime:
    """The current UTC time, as ops records store it."""
    return datetime.now(UTC).replace(tzinfo=None)


class OpsLog:
    """Appends and reads the `ops.*` records of one lakehouse."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse
        self.spark = lakehouse.spark

    def append(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows (dicts keyed by column) to `ops.<table>`."""
        if not rows:
            return
        schema = SCHEMAS[table]
        columns = [part.strip().split(" ")[0] for part in _split_ddl(schema)]
        df = self.spark.createDataFrame([tuple(r.get(c) for c in columns) for r in rows], schema)
        self.lakehouse.write(df, "ops", table, mode="append")

    def ingested_files(self, source: str) -> set[tuple[str, int, int]]:
        """(path, size, modified_ms) of every file already ingested for `source`."""
        if not self.lakehouse.exists("ops", "ingested_files"):
            return set()
        rows = (
            self.lakehouse.read("ops", "ingested_files")
            .where(F.col("source") == source)
            .select("path", "size_bytes", (F.unix_millis(F.col("modified_at"))).alias("ms"))
            .collect()  # one row per landing file: small by construction
        )
        return {(r["path"], int(r["size_bytes"]), int(r["ms"])) for r in rows}

    def batches(self, source: str) -> set[str]:
        """Batch ids ingested for `source`."""
        if not self.lakehouse.exists("ops", "ingested_files"):
            return set()
        rows = (
            self.lakehouse.read("ops", "ingested_files").where(F.col("source") == source)
            .select("batch_id").distinct().collect()
        )
        return {r["batch_id"] for r in rows}

    def refined_batches(self, silver_table: str) -> set[str]:
        """Batch ids already merged into `silver.<silver_table>`."""
        if not self.lakehouse.exists("ops", "refined_batches"):
            return set()
        rows = (
            self.lakehouse.read("ops", "refined_batches").where(F.col("silver_table") == silver_table)
            .select("batch_id").distinct().collect()
        )
        return {r["batch_id"] for r in rows}

    def last_gold_inputs(self, table: str) -> dict[str, Any] | None:
        """The input versions recorded by the latest build of `gold.<table>`, or None."""
        if not self.lakehouse.exists("ops", "gold_builds"):
            return None
        row = (
            self.lakehouse.read("ops", "gold_builds").where(F.col("table_name") == table)
            .orderBy(F.col("built_at").desc()).select("inputs").first()
        )
        return json.loads(row["inputs"]) if row else None


def _split_ddl(ddl: str) -> Iterable[str]:
    """Split a DDL column list on top-level commas (not those inside MAP<..., ...>)."""
    depth, start = 0, 0
    for i, ch in enumerate(ddl):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "," and depth == 0:
            yield ddl[start:i]
            start = i + 1
    yield ddl[start:]

"""Lineage: the columns that say where a row came from, added at ingest and kept through silver."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

LINEAGE_COLUMNS = ("_source_file", "_ingested_at", "_batch_id")


def with_lineage(df: DataFrame, batch_id: str, ingested_at: datetime) -> DataFrame:
    """Add `_ingested_at` and `_batch_id` (`_source_file` comes from the reader)."""
    return df.withColumn("_ingested_at", F.lit(ingested_at).cast("timestamp")).withColumn(
        "_batch_id", F.lit(batch_id)
    )

"""Quarantine records: a rejected row as `<layer>.<table>_quarantine` keeps it, with the rule, the reason and the
raw record (`QUARANTINE_COLUMNS`, the same in every layer)."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from goldsmith.config.models import Expectation, SourceConfig
from goldsmith.io.landing import CORRUPT_COLUMN
from goldsmith.quality.expectations import failed_rule_names
from goldsmith.transforms.lineage import LINEAGE_COLUMNS
from goldsmith.transforms.records import csv_malformed_reason, with_unparsable_detail

# A quarantine `reason` is at most this long (the raw record keeps the data); a value quoted in it, at most
# QUOTED_VALUE_CHARS.
REASON_CHARS = 1000
QUOTED_VALUE_CHARS = 80

QUARANTINE_COLUMNS = (
    "_source_file", "_batch_id", "_ingested_at", "_run_id", "layer", "table_name", "rule", "action",
    "reason", "raw_record",
)


def to_bronze_quarantine(
    df: DataFrame, source: SourceConfig, schema: StructType, run_id: str, name: str
) -> DataFrame:
    """Malformed landing rows (ingest) as quarantine records: the raw record and the reason it was rejected."""
    # A row that parsed but has invalid UTF-8 has no raw text from the reader: keep its parsed fields.
    raw = F.coalesce(F.col(CORRUPT_COLUMN), F.to_json(F.struct(*schema.fieldNames())))
    options = {**source.options}
    if source.format == "csv":
        reason = F.when(F.col(CORRUPT_COLUMN).isNull(), F.lit("invalid UTF-8 byte sequence in a text field")) \
            .otherwise(csv_malformed_reason(F.col(CORRUPT_COLUMN), schema, options))
    else:
        reason = F.when(F.col(CORRUPT_COLUMN).isNull(), F.lit("invalid UTF-8 byte sequence in a text field")) \
            .otherwise(F.lit(f"malformed {source.format.upper()} record or a value of the wrong type"))
    quarantine_df = df.select(
        *LINEAGE_COLUMNS,
        F.lit(run_id).alias("_run_id"),
        F.lit("bronze").alias("layer"),
        F.lit(name).alias("table_name"),
        F.lit("parse").alias("rule"),
        F.lit("quarantine").alias("action"),
        reason.alias("reason"),
        raw.alias("raw_record"),
    )
    if source.format == "csv":
        quarantine_df = with_unparsable_detail(quarantine_df, "raw_record", "reason", schema, options,
                                               QUOTED_VALUE_CHARS)
    return quarantine_df.withColumn("reason", bounded(F.col("reason"))).select(*QUARANTINE_COLUMNS)


def bounded(reason: Column, most: int = REASON_CHARS) -> Column:
    """A reason cut to `most` characters, saying how long it was."""
    return F.when(
        F.length(reason) > most,
        F.concat(F.substring(reason, 1, most), F.format_string(" ... (%d characters)", F.length(reason))),
    ).otherwise(reason)


def file_quarantine(
    spark: SparkSession, rejected: list[tuple[str, str, str | None]], batch_id: str, ingested_at: datetime,
    run_id: str, name: str,
) -> DataFrame:
    """Landing files rejected whole, as quarantine records: every line of a text file but its header line, or
    one record naming a file that is not text. `rejected`: (path, reason, header line or None)."""
    frames = []
    for path, reason, header in rejected:
        if header is None:
            lines = spark.range(1).select(F.lit(None).cast("string").alias("raw_record"))
        else:
            lines = spark.read.text(path).where(F.col("value") != F.lit(header)).select(
                F.col("value").alias("raw_record"))
        frames.append(lines.select(
            F.lit(path).alias("_source_file"), F.lit(batch_id).alias("_batch_id"),
            F.lit(ingested_at).cast("timestamp").alias("_ingested_at"), F.lit(run_id).alias("_run_id"),
            F.lit("bronze").alias("layer"), F.lit(name).alias("table_name"), F.lit("file").alias("rule"),
            F.lit("quarantine").alias("action"), bounded(F.lit(reason)).alias("reason"), "raw_record",
        ))
    if not frames:
        schema = ", ".join(f"{c} {'TIMESTAMP' if c == '_ingested_at' else 'STRING'}" for c in QUARANTINE_COLUMNS)
        return spark.createDataFrame([], schema)
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result.select(*QUARANTINE_COLUMNS)


def to_silver_quarantine(
    df: DataFrame, run_id: str, table: str, expectations: list[Expectation], actions: tuple[str, ...],
    columns: list[str],
) -> DataFrame:
    """Rows that failed expectations (refine) as quarantine records (the row itself as JSON in `raw_record`)."""
    names = failed_rule_names(expectations, actions)
    return df.select(
        *LINEAGE_COLUMNS,
        F.lit(run_id).alias("_run_id"),
        F.lit("silver").alias("layer"),
        F.lit(table).alias("table_name"),
        F.split(names, ", ").getItem(0).alias("rule"),
        F.lit(actions[0]).alias("action"),
        F.concat(F.lit("failed expectation(s): "), names).alias("reason"),
        F.to_json(F.struct(*[c for c in columns if c not in LINEAGE_COLUMNS])).alias("raw_record"),
    ).select(*QUARANTINE_COLUMNS)

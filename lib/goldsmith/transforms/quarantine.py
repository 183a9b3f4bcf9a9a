"""Quarantine records: a rejected row as `<layer>.<table>_quarantine` keeps it, with the rule, the reason and the
raw record (`QUARANTINE_COLUMNS`, the same in every layer)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from goldsmith.config.models import Expectation, SourceConfig
from goldsmith.io.landing import CORRUPT_COLUMN
from goldsmith.quality.expectations import failed_rule_names
from goldsmith.transforms.lineage import LINEAGE_COLUMNS
from goldsmith.transforms.records import csv_malformed_reason, with_unparsable_detail

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
        quarantine_df = with_unparsable_detail(quarantine_df, "raw_record", "reason", schema, options)
    return quarantine_df.select(*QUARANTINE_COLUMNS)


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

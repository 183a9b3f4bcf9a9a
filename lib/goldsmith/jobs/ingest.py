"""ingest: new landing files -> `bronze.<source>`, malformed records -> `bronze.<source>_quarantine`."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructType

from goldsmith.config.models import LINEAGE_COLUMNS, SourceConfig
from goldsmith.io.landing import CORRUPT_COLUMN, list_files, read_source
from goldsmith.io.ops import now
from goldsmith.jobs.context import RunContext, TableResult, Timer, log, observed
from goldsmith.jobs.parallel import for_each_table
from goldsmith.transforms.records import (
    QUARANTINE_COLUMNS,
    csv_malformed_reason,
    has_invalid_encoding,
    with_unparsable_detail,
)


def run(ctx: RunContext) -> list[TableResult]:
    """Ingest every source's new files, sources side by side; a file already ingested (same path, size,
    mtime) is skipped."""
    # A session per source: observed metrics (below) give a session a member that Java cannot serialise, and
    # Spark ML's models capture their training session in their closures (Spark 4.1).
    return for_each_table(ctx, list(ctx.config.sources.items()), ingest_logged, own_session=True)


def ingest_logged(ctx: RunContext, name: str, source: SourceConfig) -> TableResult:
    with Timer() as timer:
        result = ingest_source(ctx, name, source)
    result.seconds = timer.seconds
    if result.status != "skipped":
        ctx.record(result)
        log.info(
            "  bronze.%-24s %9s rows  %7s quarantined  (%s, %.1f s)",
            name, f"{result.records_out:,}", f"{result.quarantined:,}", result.detail, timer.seconds,
        )
    else:
        log.info("  bronze.%-24s %s", name, result.detail)
    return result


def ingest_source(ctx: RunContext, name: str, source: SourceConfig) -> TableResult:
    """Read one source's new files into bronze and its quarantine; check that no record was lost."""
    files = list_files(ctx.spark, source)
    seen = ctx.ops.ingested_files(name)
    new = [f for f in files if (f.path, f.size, f.modified_ms) not in seen]
    if not new:
        detail = f"no new files ({len(files)} already ingested)" if files else f"no files in {source.path}"
        return TableResult("ingest", f"bronze.{name}", status="skipped", detail=detail)

    batch_id = f"{ctx.run_id}-{name}"
    raw_df, schema = read_source(ctx.spark, name, source, [f.path for f in new])
    marked_df = raw_df.transform(with_lineage, batch_id, ctx.started_at).transform(with_malformed_flag, schema)
    # One pass over the files: the good records are written while the same scan counts every record and the
    # malformed ones (Spark's observed metrics). Only a batch with malformed records is read a second time,
    # for its quarantine rows; the count check below holds the two passes to the same total.
    tally = [F.count(F.lit(1)).alias("records"), F.sum(F.col("_is_malformed").cast("long")).alias("malformed")]
    observation = Observation(f"ingest-{batch_id}")
    good_df = marked_df.observe(observation, *tally).where(~F.col("_is_malformed")).select(
        *schema.fieldNames(), *LINEAGE_COLUMNS
    )
    written = ctx.lakehouse.write(good_df, "bronze", name)
    counts = observed(observation) or marked_df.agg(*tally).first().asDict()  # type: ignore[union-attr]
    quarantined: dict[str, str] = {}
    bad_df = marked_df.where(F.col("_is_malformed")).transform(to_quarantine_records, source, schema, ctx.run_id, name)
    if counts["malformed"]:
        quarantined = ctx.lakehouse.write(bad_df, "bronze", f"{name}_quarantine")
    elif not ctx.lakehouse.exists("bronze", f"{name}_quarantine"):
        ctx.lakehouse.create_empty("bronze", f"{name}_quarantine", bad_df.schema)

    result = TableResult(
        "ingest", f"bronze.{name}", records_in=int(counts["records"]),
        records_out=int(written.get("numOutputRows", 0)),
        quarantined=int(quarantined.get("numOutputRows", 0)),
        batch_ids=[batch_id], detail=f"{len(new)} new file(s)",
    )
    result.inserted = result.records_out
    result.check_accounting()
    ctx.ops.append("ingested_files", [{
        "source": name, "path": f.path, "size_bytes": f.size,
        "modified_ms": f.modified_ms, "batch_id": batch_id,
        "run_id": ctx.run_id, "ingested_at": now(), "batch_rows": result.records_out,
    } for f in new])
    return result


def with_lineage(df: DataFrame, batch_id: str, ingested_at: datetime) -> DataFrame:
    """Add `_ingested_at` and `_batch_id` (`_source_file` comes from the reader)."""
    return df.withColumn("_ingested_at", F.lit(ingested_at).cast("timestamp")).withColumn(
        "_batch_id", F.lit(batch_id)
    )


def with_malformed_flag(df: DataFrame, schema: StructType) -> DataFrame:
    """`_is_malformed`: the reader could not parse the record, or a text field holds invalid UTF-8."""
    text_columns = [F.col(f.name) for f in schema.fields if isinstance(f.dataType, StringType)]
    return df.withColumn(
        "_is_malformed", F.col(CORRUPT_COLUMN).isNotNull() | has_invalid_encoding(text_columns)
    )


def to_quarantine_records(
    df: DataFrame, source: SourceConfig, schema: StructType, run_id: str, name: str
) -> DataFrame:
    """Malformed rows as quarantine records: the raw record and the reason it was rejected."""
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

"""refine: new bronze batches -> typed, checked, deduplicated rows MERGEd into `silver.<table>`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from goldsmith.config.models import LINEAGE_COLUMNS, Expectation, SilverTable
from goldsmith.errors import AccountingError, ConfigError, ExpectationFailed
from goldsmith.io.lakehouse import CHANGE_FEED
from goldsmith.jobs.context import RunContext, TableResult, Timer, log, observed
from goldsmith.jobs.parallel import for_each_table
from goldsmith.quality.expectations import (
    any_of,
    failed_rule_names,
    flag_column,
    key_rule,
    with_duplicate_flag,
    with_expectation_flags,
)
from goldsmith.transforms.records import QUARANTINE_COLUMNS

INPUT_VIEW = "bronze_batch"
INTERNAL_COLUMNS = ("_dropped", "_duplicate")
KEPT = "not _dropped and not _duplicate"  # the rows a batch writes to silver


def run(ctx: RunContext) -> list[TableResult]:
    """Refine every silver table from the bronze batches it has not merged yet, tables side by side (each
    in a session of its own: every table's SQL reads its own `bronze_batch` view)."""
    return for_each_table(ctx, list(ctx.config.silver.items()), refine_logged, own_session=True)


def refine_logged(ctx: RunContext, name: str, table: SilverTable) -> TableResult:
    with Timer() as timer:
        result = refine_table(ctx, name, table)
    result.seconds = timer.seconds
    if result.status == "skipped":
        log.info("  silver.%-24s %s", name, result.detail)
    else:
        log.info(
            "  silver.%-24s %9s in  %9s merged (%s new, %s updated)  %7s quarantined  %6s duplicates  (%.1f s)",
            name, f"{result.records_in:,}", f"{result.records_out:,}", f"{result.inserted:,}",
            f"{result.updated:,}", f"{result.quarantined:,}", f"{result.duplicates:,}", timer.seconds,
        )
        for rule, count in result.rule_violations.items():
            if count:
                log.warning("    expectation %s: %s row(s) failed", rule, f"{count:,}")
    return result


def refine_table(ctx: RunContext, name: str, table: SilverTable) -> TableResult:
    """Run one silver table's SQL over its pending bronze batches, check, dedup, quarantine and MERGE."""
    started = time.perf_counter()
    lakehouse, source = ctx.lakehouse, table.source
    if not lakehouse.exists("bronze", source):
        return TableResult("refine", f"silver.{name}", status="skipped", detail=f"bronze.{source} does not exist yet")
    pending = sorted(ctx.ops.batches(source) - ctx.ops.refined_batches(name))
    if not pending:
        return TableResult("refine", f"silver.{name}", status="skipped", detail="up to date (no new bronze batches)")

    bronze_df = lakehouse.read("bronze", source).where(F.col("_batch_id").isin(pending))
    bronze_df.createOrReplaceTempView(INPUT_VIEW)
    typed_df = run_silver_sql(ctx, name, table)
    expectations = [key_rule(table.keys), *table.expectations]
    flagged_df = typed_df.transform(with_expectation_flags, expectations)
    checked_df = flagged_df.transform(with_duplicate_flag, table.keys, table.sequence_by)
    # A first batch creates the table in one pass over the SQL: its rows are written while the same query
    # counts them (observed metrics), and the checks run on the counts, undoing the commit when they fail. A
    # later batch is MERGEd: kept in memory, as the counts, the quarantine and the MERGE each read it.
    create = not lakehouse.exists("silver", name)
    if not create:
        checked_df = checked_df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _check_and_write(
            ctx, name, table, expectations, checked_df, flagged_df if create else checked_df, create,
            pending, started, ctx.ops.batch_rows(source, pending), bronze_df.count,
        )
    finally:
        checked_df.unpersist()
        ctx.spark.catalog.dropTempView(INPUT_VIEW)


def run_silver_sql(ctx: RunContext, name: str, table: SilverTable) -> DataFrame:
    """The silver SQL's result over the `bronze_batch` view; it must keep the lineage columns and keys."""
    path = ctx.config.sql_path(table.sql)
    try:
        df = ctx.spark.sql(ctx.lakehouse.resolve_sql(path.read_text(encoding="utf-8")))
    except Exception as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in (*LINEAGE_COLUMNS, *table.keys, *table.sequence_by) if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{path}: the query must return {', '.join(missing)} (keys, sequence_by and the lineage columns "
            f"{', '.join(LINEAGE_COLUMNS)} of {INPUT_VIEW})"
        )
    return df


def _check_and_write(
    ctx: RunContext, name: str, table: SilverTable, expectations: list[Expectation],
    checked_df: DataFrame, rejected_from: DataFrame, create: bool, pending: list[str], started: float,
    recorded_rows: int | None, count_bronze: Callable[[], int],
) -> TableResult:
    """Count, check, quarantine and write (create or MERGE) one batch. `rejected_from` is where the
    quarantined rows are read from: the flagged rows before the dedup window when the batch was not kept.
    `recorded_rows` is the batches' bronze row count as ingest recorded it (None: not on record), checked
    against the SQL's rows without a scan; `count_bronze` counts bronze when it is missing or disagrees."""
    lakehouse = ctx.lakehouse
    previous = None if create else lakehouse.version("silver", name)
    tally = [
        F.count(F.lit(1)).alias("records_in"),
        F.sum(F.col("_dropped").cast("long")).alias("dropped"),
        F.sum(F.col("_duplicate").cast("long")).alias("duplicates"),
        *[F.sum(F.col(flag_column(e.name)).cast("long")).alias(flag_column(e.name)) for e in expectations],
    ]
    silver_columns = [c for c in checked_df.columns if not c.startswith(("_fails_", *INTERNAL_COLUMNS))]
    written: dict[str, str] = {}
    if create:
        observation = Observation(f"refine-{name}-{ctx.run_id}")
        rows_df = checked_df.observe(observation, *tally).where(KEPT)
        written = lakehouse.write(rows_df.select(*silver_columns), "silver", name, mode="append",
                                  options={CHANGE_FEED: "true"})
        counts = observed(observation) or checked_df.agg(*tally).first().asDict()  # type: ignore[union-attr]
    else:
        counts = checked_df.agg(*tally).first().asDict()  # type: ignore[union-attr]
    try:
        result = _checked_result(ctx, name, table, expectations, counts, rejected_from, pending, started,
                                 recorded_rows, count_bronze, silver_columns, previous)
    except (AccountingError, ExpectationFailed):
        if create:  # the rows just written fail a check: the table is not created
            lakehouse.undo_commit("silver", name, None)
        raise

    if int(counts["dropped"] or 0):
        quarantined = lakehouse.write(
            to_quarantine(rejected_from.where("_dropped"), ctx.run_id, name, expectations, ("drop",),
                          silver_columns),
            "silver", f"{name}_quarantine",
        )
        result.quarantined = int(quarantined.get("numOutputRows", 0))
    elif not lakehouse.exists("silver", f"{name}_quarantine"):
        schema = to_quarantine(rejected_from, ctx.run_id, name, expectations, ("drop",), silver_columns).schema
        lakehouse.create_empty("silver", f"{name}_quarantine", schema)
    if create:
        result.records_out = result.inserted = int(written.get("numOutputRows", 0))
    else:
        rows_df = checked_df.where(KEPT).select(*silver_columns)
        merged = merge_into_silver(ctx, name, table, rows_df)
        result.records_out = int(merged.get("numSourceRows", 0))
        result.inserted = int(merged.get("numTargetRowsInserted", 0))
        result.updated = int(merged.get("numTargetRowsUpdated", 0))
    result.check_accounting()
    ctx.record(result)
    ctx.ops.append("refined_batches", [
        {"silver_table": name, "batch_id": b, "run_id": ctx.run_id, "refined_at": ctx.started_at} for b in pending
    ])
    return result


def _checked_result(
    ctx: RunContext, name: str, table: SilverTable, expectations: list[Expectation], counts: dict[str, Any],
    rejected_from: DataFrame, pending: list[str], started: float, recorded_rows: int | None,
    count_bronze: Callable[[], int], silver_columns: list[str], previous: int | None,
) -> TableResult:
    """The batch's result from its counts; raise when the SQL lost or added rows, or a `fail` rule failed
    (its rows quarantined first)."""
    lakehouse = ctx.lakehouse
    # Bronze changed since ingest, or a SQL that drops rows: only then is bronze counted.
    bronze_rows = recorded_rows if recorded_rows == int(counts["records_in"]) else count_bronze()
    if int(counts["records_in"]) != bronze_rows:
        raise AccountingError(
            f"silver.{name}: {ctx.config.sql_path(table.sql).name} returned {counts['records_in']:,} rows for "
            f"{bronze_rows:,} bronze rows; a silver SQL must keep one row per bronze row (reject rows with "
            "expectations, which quarantine them, instead of filtering or joining in the SQL)"
        )
    violations = {e.name: int(counts[flag_column(e.name)] or 0) for e in expectations}
    result = TableResult(
        "refine", f"silver.{name}", records_in=int(counts["records_in"]),
        duplicates=int(counts["duplicates"] or 0), rule_violations=violations, batch_ids=pending, started=started,
    )
    failing = [e for e in expectations if e.action == "fail" and violations[e.name]]
    if failing:
        bad_df = rejected_from.where(any_of([F.col(flag_column(e.name)) for e in failing]))
        written = lakehouse.write(
            to_quarantine(bad_df, ctx.run_id, name, expectations, ("fail",), silver_columns),
            "silver", f"{name}_quarantine",
        )
        result.status, result.quarantined = "failed", int(written.get("numOutputRows", 0))
        ctx.record(result)
        first = failing[0]
        raise ExpectationFailed(
            f"silver.{name}: expectation '{first.name}' (action=fail) rejected {violations[first.name]:,} rows; "
            f"see silver.{name}_quarantine. silver.{name} stays at "
            + (f"version {previous}" if previous is not None else "its previous state (not created)")
        )
    return result


def to_quarantine(
    df: DataFrame, run_id: str, table: str, expectations: list[Expectation], actions: tuple[str, ...],
    columns: list[str],
) -> DataFrame:
    """Rows that failed expectations as quarantine records (the row itself as JSON in `raw_record`)."""
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


def merge_into_silver(ctx: RunContext, name: str, table: SilverTable, rows_df: DataFrame) -> dict[str, str]:
    """Upsert `rows_df` (unique on keys) into `silver.<name>`; return the MERGE's metrics."""
    lakehouse = ctx.lakehouse
    condition = " and ".join(f"t.`{k}` = s.`{k}`" for k in table.keys)
    (
        lakehouse.delta_table("silver", name).alias("t")
        .merge(rows_df.alias("s"), condition)
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
    return lakehouse.last_commit_metrics("silver", name)

"""refine: new bronze batches -> typed, checked, deduplicated rows MERGEd into `silver.<table>`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from goldsmith import faults
from goldsmith.config.models import Expectation, SilverTable
from goldsmith.errors import AccountingError, ConfigError, ExpectationFailed, message_line
from goldsmith.io.lakehouse import CHANGE_FEED, Txn
from goldsmith.io.ops import now
from goldsmith.jobs.context import RunContext, TableResult, Timer, log, observed
from goldsmith.jobs.parallel import for_each_table
from goldsmith.quality.expectations import (
    any_of,
    flag_column,
    key_rule,
    with_duplicate_flag,
    with_expectation_flags,
)
from goldsmith.transforms.lineage import LINEAGE_COLUMNS
from goldsmith.transforms.quarantine import to_silver_quarantine

INPUT_VIEW = "bronze_batch"
INTERNAL_COLUMNS = ("_dropped", "_duplicate")
KEPT = "not _dropped and not _duplicate"  # the rows a batch writes to silver


@dataclass(frozen=True)
class Batch:
    """The pending bronze batches of one silver table, checked and ready to write.

    `checked_df` has the expectation flags, `_dropped` and `_duplicate`. `rejected_from` is where the quarantined
    rows are read from: the flagged rows before the dedup window when the batch was not kept in memory.
    `recorded_rows` is the batches' bronze row count as ingest recorded it (None: not on record), checked
    against the SQL's rows without a scan; `count_bronze` counts bronze when it is missing or disagrees.
    """

    name: str
    table: SilverTable
    expectations: list[Expectation]
    checked_df: DataFrame
    rejected_from: DataFrame
    create: bool  # the table does not exist yet: created in one pass, undone when a check fails
    pending: list[str]
    started: float
    recorded_rows: int | None
    count_bronze: Callable[[], int]
    txn: Txn

    @property
    def silver_columns(self) -> list[str]:
        """The columns silver keeps (the flags and internal columns left out)."""
        return [c for c in self.checked_df.columns if not c.startswith(("_fails_", *INTERNAL_COLUMNS))]

    def quarantine(self, rows_df: DataFrame, run_id: str, actions: tuple[str, ...]) -> DataFrame:
        """`rows_df` (rows of `rejected_from`) as quarantine records of the rules with these actions."""
        return to_silver_quarantine(rows_df, run_id, self.name, self.expectations, actions, self.silver_columns)


def run(ctx: RunContext) -> list[TableResult]:
    """Refine every silver table from the bronze batches it has not merged yet, tables side by side (each
    in a session of its own: every table's SQL reads its own `bronze_batch` view)."""
    return for_each_table(ctx, list(ctx.config.silver.items()), refine_logged, "refine", "silver",
                          own_session=True)


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
    """Complete a batch a killed run left unfinished, then refine the bronze batches not merged yet as one."""
    lakehouse, source = ctx.lakehouse, table.source
    if not lakehouse.exists("bronze", source):
        return TableResult("refine", f"silver.{name}", status="skipped", detail=f"bronze.{source} does not exist yet")
    refined = ctx.ops.refined_batches(name)
    plans = ctx.ops.plans("refine", f"silver.{name}")
    inputs = [(int(p["seq"]), json.loads(p["inputs"])) for p in plans]
    failed = {seq for seq, i in inputs if i.get("failed")}  # a failed check closes its plan: a new one follows
    unfinished = [(seq, i["batches"]) for seq, i in inputs
                  if "batches" in i and seq not in failed and not set(i["batches"]) <= refined]
    results = []
    for seq, batch_ids in unfinished:
        log.info("  silver.%-24s completing %d bronze batch(es) of a run that did not finish", name, len(batch_ids))
        results.append(refine_batches(ctx, name, table, batch_ids, seq))
    pending = sorted(ctx.ops.batches(source) - ctx.ops.refined_batches(name))
    if pending:
        seq = max((int(p["seq"]) for p in plans), default=0) + 1
        # The batches are fixed before the first write: a killed run is completed with exactly these.
        ctx.ops.append("batch_plans", [_plan_row(ctx, name, seq, {"batches": pending})])
        results.append(refine_batches(ctx, name, table, pending, seq))
    if not results:
        return TableResult("refine", f"silver.{name}", status="skipped", detail="up to date (no new bronze batches)")
    for extra in results[1:]:
        results[0].absorb(extra)
    return results[0]


def _plan_row(ctx: RunContext, name: str, seq: int, inputs: dict[str, Any]) -> dict[str, Any]:
    """An `ops.batch_plans` row of this table: its bronze batches, or `failed` (which closes the plan)."""
    return {"stage": "refine", "table_name": f"silver.{name}", "seq": seq, "batch_id": f"{ctx.run_id}-{name}",
            "inputs": json.dumps(inputs), "run_id": ctx.run_id, "planned_at": now()}


def refine_batches(ctx: RunContext, name: str, table: SilverTable, pending: list[str], seq: int) -> TableResult:
    """Run one silver table's SQL over these bronze batches, check, dedup, quarantine and MERGE, every commit
    marked with the batch's identity (`goldsmith-refine-<table>@<seq>`)."""
    started = time.perf_counter()
    lakehouse, source = ctx.lakehouse, table.source
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
    batch = Batch(
        name, table, expectations, checked_df, rejected_from=flagged_df if create else checked_df, create=create,
        pending=pending, started=started, recorded_rows=ctx.ops.batch_rows(source, pending),
        count_bronze=bronze_df.count, txn=Txn(f"goldsmith-refine-{name}", seq),
    )
    try:
        return _check_and_write(ctx, batch)
    except (AccountingError, ExpectationFailed):
        ctx.ops.append("batch_plans", [_plan_row(ctx, name, seq, {"failed": True})])
        raise
    finally:
        checked_df.unpersist()
        ctx.spark.catalog.dropTempView(INPUT_VIEW)


def run_silver_sql(ctx: RunContext, name: str, table: SilverTable) -> DataFrame:
    """The silver SQL's result over the `bronze_batch` view; it must keep the lineage columns and keys."""
    path = ctx.config.sql_path(table.sql)
    try:
        df = ctx.spark.sql(ctx.lakehouse.resolve_sql(path.read_text(encoding="utf-8")))
    except Exception as exc:
        raise ConfigError(f"{path}: {message_line(exc)}") from None
    missing = [c for c in (*LINEAGE_COLUMNS, *table.keys, *table.sequence_by) if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{path}: the query must return {', '.join(missing)} (keys, sequence_by and the lineage columns "
            f"{', '.join(LINEAGE_COLUMNS)} of {INPUT_VIEW})"
        )
    return df


def _check_and_write(ctx: RunContext, batch: Batch) -> TableResult:
    """Count, check, quarantine and write (create or MERGE) one batch."""
    lakehouse, name = ctx.lakehouse, batch.name
    previous = None if batch.create else lakehouse.version("silver", name)
    tally = [
        F.count(F.lit(1)).alias("records_in"),
        F.sum(F.expr(KEPT).cast("long")).alias("kept"),
        F.sum(F.col("_dropped").cast("long")).alias("dropped"),
        F.sum(F.col("_duplicate").cast("long")).alias("duplicates"),
        *[F.sum(F.col(flag_column(e.name)).cast("long")).alias(flag_column(e.name)) for e in batch.expectations],
    ]
    silver_columns = batch.silver_columns
    written: dict[str, str] = {}
    if batch.create:
        observation = Observation(f"refine-{name}-{ctx.run_id}")
        rows_df = batch.checked_df.observe(observation, *tally).where(KEPT)
        written = lakehouse.write(rows_df.select(*silver_columns), "silver", name, mode="append",
                                  options={CHANGE_FEED: "true"}, txn=batch.txn)
        counts = observed(observation) or batch.checked_df.agg(*tally).first().asDict()  # type: ignore[union-attr]
    else:
        counts = batch.checked_df.agg(*tally).first().asDict()  # type: ignore[union-attr]
    try:
        result = _checked_result(ctx, batch, counts, previous)
    except (AccountingError, ExpectationFailed):
        if batch.create:  # the rows just written fail a check: the table is not created
            lakehouse.undo_commit("silver", name, None)
        raise

    if int(counts["dropped"] or 0):
        quarantined = lakehouse.write(
            batch.quarantine(batch.rejected_from.where("_dropped"), ctx.run_id, ("drop",)),
            "silver", f"{name}_quarantine", txn=batch.txn,
        )
        result.quarantined = int(quarantined.get("numOutputRows", 0))
    elif not lakehouse.exists("silver", f"{name}_quarantine"):
        schema = batch.quarantine(batch.rejected_from, ctx.run_id, ("drop",)).schema
        lakehouse.create_empty("silver", f"{name}_quarantine", schema)
    if batch.create:
        result.records_out = result.inserted = int(written.get("numOutputRows", 0))
    else:
        rows_df = batch.checked_df.where(KEPT).select(*silver_columns)
        merged = merge_into_silver(ctx, name, batch.table, rows_df, batch.txn)
        if merged.get("skipped"):  # committed by a killed run: its commit's counts (a MERGE's, or the create's)
            result.records_out = int(counts["kept"] or 0)
            result.inserted = int(merged.get("numTargetRowsInserted", merged.get("numOutputRows", 0)))
        else:
            result.records_out = int(merged.get("numSourceRows", 0))
            result.inserted = int(merged.get("numTargetRowsInserted", 0))
        result.updated = int(merged.get("numTargetRowsUpdated", 0))
    result.check_accounting()
    ctx.record(result)
    ctx.ops.append("refined_batches", [
        {"silver_table": name, "batch_id": b, "run_id": ctx.run_id, "refined_at": ctx.started_at}
        for b in batch.pending
    ], txn=batch.txn)
    return result


def _checked_result(ctx: RunContext, batch: Batch, counts: dict[str, Any], previous: int | None) -> TableResult:
    """The batch's result from its counts; raise when the SQL lost or added rows, or a `fail` rule failed
    (its rows quarantined first). `previous` is the table's version before this batch (None: not created)."""
    lakehouse, name, expectations = ctx.lakehouse, batch.name, batch.expectations
    # Bronze changed since ingest, or a SQL that drops rows: only then is bronze counted.
    records_in = int(counts["records_in"])
    bronze_rows = batch.recorded_rows if batch.recorded_rows == records_in else batch.count_bronze()
    if records_in != bronze_rows:
        raise AccountingError(
            f"silver.{name}: {ctx.config.sql_path(batch.table.sql).name} returned {counts['records_in']:,} rows "
            f"for {bronze_rows:,} bronze rows; a silver SQL must keep one row per bronze row (reject rows with "
            "expectations, which quarantine them, instead of filtering or joining in the SQL)"
        )
    violations = {e.name: int(counts[flag_column(e.name)] or 0) for e in expectations}
    result = TableResult(
        "refine", f"silver.{name}", records_in=records_in, duplicates=int(counts["duplicates"] or 0),
        rule_violations=violations, batch_ids=batch.pending, started=batch.started,
    )
    failing = [e for e in expectations if e.action == "fail" and violations[e.name]]
    if failing:
        bad_df = batch.rejected_from.where(any_of([F.col(flag_column(e.name)) for e in failing]))
        written = lakehouse.write(batch.quarantine(bad_df, ctx.run_id, ("fail",)), "silver", f"{name}_quarantine",
                                  txn=batch.txn)
        result.status, result.quarantined = "failed", int(written.get("numOutputRows", 0))
        ctx.record(result)
        first = failing[0]
        raise ExpectationFailed(
            f"silver.{name}: expectation '{first.name}' (action=fail) rejected {violations[first.name]:,} rows; "
            f"see silver.{name}_quarantine. silver.{name} stays at "
            + (f"version {previous}" if previous is not None else "its previous state (not created)")
        )
    return result


def merge_into_silver(
    ctx: RunContext, name: str, table: SilverTable, rows_df: DataFrame, txn: Txn
) -> dict[str, str]:
    """Upsert `rows_df` (unique on keys) into `silver.<name>` once per `txn`; return the MERGE's metrics."""
    lakehouse = ctx.lakehouse
    done = lakehouse.find_commit("silver", name, txn)
    if done is not None:  # merged by a run that was killed after it
        return {**done, "skipped": "true"}
    condition = " and ".join(f"t.`{k}` = s.`{k}`" for k in table.keys)
    with lakehouse.marked(txn):
        (
            lakehouse.delta_table("silver", name).alias("t")
            .merge(rows_df.alias("s"), condition)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    faults.committed("silver", name)
    return lakehouse.last_commit_metrics("silver", name)

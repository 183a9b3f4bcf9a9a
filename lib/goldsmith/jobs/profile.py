"""profile: describe every profiled table (default: all silver and gold tables) into `ops.profiles` and
`ops.profile_correlations`, computed with Spark aggregations. A table is profiled again only when its Delta
version changed since its last profile, so re-running a pipeline with no new data writes nothing."""

from __future__ import annotations

from typing import Any

from pyspark.sql import functions as F

from goldsmith.io.lakehouse import Txn
from goldsmith.io.ops import now
from goldsmith.io.tables import TableRef
from goldsmith.jobs.context import RunContext, TableResult, log
from goldsmith.jobs.parallel import for_each_table
from goldsmith.quality.profile import profile_frame


def _profiled_versions(ctx: RunContext) -> tuple[dict[str, int], int]:
    """The newest profiled Delta version of each table, and how many runs wrote profiles."""
    if not ctx.lakehouse.exists("ops", "profiles"):
        return {}, 0
    rows = (
        ctx.lakehouse.read("ops", "profiles").groupBy("table_name")
        .agg(F.max("table_version").alias("version"), F.collect_set("run_id").alias("runs")).collect()
    )
    runs = {run for r in rows for run in r["runs"]}
    return {r["table_name"]: int(r["version"]) for r in rows if r["version"] is not None}, len(runs)


def run(ctx: RunContext) -> list[TableResult]:
    """Profile the pipeline's tables whose version is new, side by side (`for_each_table`: a profile of a small
    table is mostly driver work); one commit per ops table for the whole stage.

    `ops.profiles` is written last: it is what says a table version was profiled. Both commits are marked
    with the identity of this profile run (`goldsmith-profile-<pipeline>`, the number of runs that
    wrote profiles + 1), so a run killed between them leaves correlations that the next run does not repeat."""
    done, runs = _profiled_versions(ctx)
    results: list[TableResult] = []
    todo: list[tuple[str, tuple[TableRef, int | None]]] = []
    for ref in ctx.config.profiled_tables():
        table = TableRef.parse(ref)
        result = TableResult(stage="profile", table=ref)
        if not ctx.lakehouse.exists(table.layer, table.table):
            result.status, result.detail = "skipped", "not built yet"
            log.info("  %-34s not built yet, not profiled", ref)
            results.append(result)
            continue
        version = ctx.lakehouse.version(table.layer, table.table)
        if version is not None and done.get(ref) == version:
            result.status, result.detail = "skipped", f"v{version} already profiled"
            log.info("  %-34s v%s already profiled", ref, version)
            results.append(result)
            continue
        todo.append((ref, (table, version)))
    profiled = for_each_table(ctx, todo, _profile_table, "profile", None) if todo else []
    columns = [row for table_columns, _ in profiled for row in table_columns]
    correlations = [row for _, table_correlations in profiled for row in table_correlations]
    txn = Txn(f"goldsmith-profile-{ctx.config.name}", runs + 1)
    ctx.ops.append("profile_correlations", correlations, txn=txn)
    ctx.ops.append("profiles", columns, txn=txn)
    return results


def _profile_table(
    ctx: RunContext, ref: str, item: tuple[TableRef, int | None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `ops.profiles` and `ops.profile_correlations` rows of one table at `version`."""
    (table, version), config = item, ctx.config.profile
    result = TableResult(stage="profile", table=ref)
    profile = profile_frame(ctx.lakehouse.read(table.layer, table.table, version),
                            top_k=config.top_values, bins=config.histogram_bins,
                            correlation_columns=config.correlation_columns)
    common = {"run_id": ctx.run_id, "pipeline": ctx.config.name, "table_name": ref, "table_version": version,
              "profiled_at": now()}
    result.records_in = result.records_out = profile.rows
    result.detail = f"{len(profile.columns)} columns"
    log.info("  %-34s v%s: %s rows, %d columns profiled", ref, version, f"{profile.rows:,}", len(profile.columns))
    ctx.record(result)
    return [{**row, **common} for row in profile.columns], [{**row, **common} for row in profile.correlations]

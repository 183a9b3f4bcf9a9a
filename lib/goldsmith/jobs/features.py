"""features: gold tables from SQL files over silver (and earlier gold) tables, rebuilt when inputs change."""

from __future__ import annotations

import hashlib
import json
import time
from graphlib import CycleError, TopologicalSorter

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.config.loader import sql_table_refs
from goldsmith.config.models import GoldTable
from goldsmith.errors import ConfigError, KeyNotUnique
from goldsmith.io.ops import now
from goldsmith.jobs.context import RunContext, TableResult, Timer, log


def build_order(gold: dict[str, GoldTable], sql_texts: dict[str, str]) -> list[str]:
    """Gold tables in dependency order (a table that reads `gold.x` comes after `x`)."""
    graph = {
        name: {ref.split(".", 1)[1] for ref in sql_table_refs(sql_texts[name]) if ref.startswith("gold.")}
        for name in gold
    }
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise ConfigError(f"gold tables read each other in a cycle: {' -> '.join(exc.args[1])}") from None


def run(ctx: RunContext) -> list[TableResult]:
    """Build each gold table whose inputs changed since its last build."""
    sql_texts = {n: ctx.config.sql_path(t.sql).read_text(encoding="utf-8") for n, t in ctx.config.gold.items()}
    results = []
    for name in build_order(ctx.config.gold, sql_texts):
        with Timer() as timer:
            result = build_table(ctx, name, ctx.config.gold[name], sql_texts[name])
        result.seconds = timer.seconds
        if result.status == "skipped":
            log.info("  gold.%-26s %s", name, result.detail)
        else:
            log.info("  gold.%-26s %9s rows  (%.1f s)", name, f"{result.records_out:,}", timer.seconds)
        results.append(result)
    return results


def input_versions(ctx: RunContext, sql_text: str) -> dict[str, int | None]:
    """The current Delta version of every table the SQL reads."""
    versions: dict[str, int | None] = {}
    for ref in sorted(sql_table_refs(sql_text)):
        layer, table = ref.split(".", 1)
        versions[ref] = ctx.lakehouse.version(layer, table)
    return versions


def build_table(ctx: RunContext, name: str, table: GoldTable, sql_text: str) -> TableResult:
    """Run the SQL, check keys and grain, overwrite `gold.<name>`; skip when no input changed."""
    started = time.perf_counter()
    versions = input_versions(ctx, sql_text)
    missing = [ref for ref, v in versions.items() if v is None]
    if missing:
        raise ConfigError(
            f"gold.{name}: input table(s) {', '.join(missing)} do not exist yet; run ingest and refine first"
        )
    # What the table is built from: its inputs' versions, the SQL text and its parameters.
    fingerprint = {
        "tables": versions,
        "sql_sha256": hashlib.sha256(sql_text.encode()).hexdigest(),
        "params": dict(sorted(table.params.items())),
    }
    if ctx.lakehouse.exists("gold", name) and ctx.ops.last_gold_inputs(name) == fingerprint:
        return TableResult(
            "features", f"gold.{name}", status="skipped", detail="up to date (inputs, SQL and params unchanged)"
        )

    path = ctx.config.sql_path(table.sql)
    try:
        gold_df = ctx.spark.sql(ctx.lakehouse.resolve_sql(sql_text), args=dict(table.params) or None)
    except Exception as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    gold_df = gold_df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows = check_keys(gold_df, name, table.keys)
        if table.grain:
            layer, grain_table = table.grain.split(".", 1)
            grain_rows = ctx.lakehouse.read(layer, grain_table).count()
            if grain_rows != rows:
                raise KeyNotUnique(
                    f"gold.{name}: {rows:,} rows but its grain {table.grain} has {grain_rows:,}; "
                    "a join fanned out or dropped rows"
                )
        written = ctx.lakehouse.write(gold_df, "gold", name, mode="overwrite")
    finally:
        gold_df.unpersist()
    result = TableResult(
        "features", f"gold.{name}", records_in=rows, records_out=int(written.get("numOutputRows", 0)), started=started
    )
    result.inserted = result.records_out
    result.check_accounting()
    ctx.record(result)
    ctx.ops.append("gold_builds", [{
        "table_name": name, "run_id": ctx.run_id, "inputs": json.dumps(fingerprint, sort_keys=True), "rows": rows,
        "table_version": ctx.lakehouse.version("gold", name), "built_at": now(),
    }])
    return result


def check_keys(df: DataFrame, name: str, keys: list[str]) -> int:
    """Row count of `df`; raise `KeyNotUnique` when `keys` repeat (one pass over the data)."""
    if not keys:
        return int(df.count())
    row = df.agg(
        F.count(F.lit(1)).alias("rows"), F.count_distinct(F.struct(*keys)).alias("distinct_keys")
    ).first()
    assert row is not None
    rows, distinct = int(row["rows"]), int(row["distinct_keys"])
    if rows != distinct:
        raise KeyNotUnique(f"gold.{name}: keys ({', '.join(keys)}) repeat: {rows:,} rows, {distinct:,} distinct keys")
    return rows

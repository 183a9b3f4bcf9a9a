"""features: gold tables from SQL files over silver (and earlier gold) tables, rebuilt when inputs change."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from graphlib import CycleError, TopologicalSorter
from typing import Any, Literal

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from goldsmith.config.loader import sql_table_refs
from goldsmith.config.models import GoldTable
from goldsmith.errors import ConfigError, KeyNotUnique, message_line
from goldsmith.io.lakehouse import CHANGE_FEED
from goldsmith.io.ops import now
from goldsmith.io.tables import TableRef
from goldsmith.jobs.context import RunContext, TableResult, Timer, log
from goldsmith.quality.keys import check_grain, check_keys, check_rebuilt_keys

# How `ops.gold_builds` records a build: the whole table, the rows from :since on, or no change at all.
BuildMode = Literal["full", "incremental", "unchanged"]


def build_order(gold: dict[str, GoldTable], sql_texts: dict[str, str]) -> list[str]:
    """Gold tables in dependency order (a table that reads `gold.x` comes after `x`)."""
    graph = {
        name: {TableRef.parse(ref).table for ref in sql_table_refs(sql_texts[name]) if ref.startswith("gold.")}
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
            log.info("  gold.%-26s %9s rows  (%s, %.1f s)", name, f"{result.records_out:,}", result.detail,
                     timer.seconds)
        results.append(result)
    return results


def input_versions(ctx: RunContext, sql_text: str) -> dict[str, int | None]:
    """The current Delta version of every table the SQL reads."""
    versions: dict[str, int | None] = {}
    for ref in sorted(sql_table_refs(sql_text)):
        parsed = TableRef.parse(ref)
        versions[ref] = ctx.lakehouse.version(parsed.layer, parsed.table)
    return versions


# A full build of an incremental table passes the earliest timestamp as :since.
FULL_BUILD_SINCE = datetime(1, 1, 1, tzinfo=UTC)


def build_table(ctx: RunContext, name: str, table: GoldTable, sql_text: str) -> TableResult:
    """Run the SQL into `gold.<name>`, check its keys and grain (a failed check undoes the commit); skip when
    no input changed.

    An `incremental` table whose only changes are rows of its listed inputs gets only the rows at or after
    the earliest changed time recomputed and replaced; anything else is a full rebuild.
    """
    started = time.perf_counter()
    versions = input_versions(ctx, sql_text)
    missing = [ref for ref, v in versions.items() if v is None]
    if missing:
        raise ConfigError(
            f"gold.{name}: input table(s) {', '.join(missing)} do not exist yet; run ingest and refine first"
        )
    # What the table is built from: its inputs' versions, the SQL text and its parameters.
    fingerprint: dict[str, Any] = {
        "tables": versions,
        "sql_sha256": hashlib.sha256(sql_text.encode()).hexdigest(),
        "params": dict(sorted(table.params.items())),
    }
    if table.incremental:
        fingerprint["incremental"] = table.incremental.model_dump()
    previous = ctx.ops.last_gold_inputs(name) if ctx.lakehouse.exists("gold", name) else None
    if previous == fingerprint:
        return TableResult(
            "features", f"gold.{name}", status="skipped", detail="up to date (inputs, SQL and params unchanged)"
        )
    since: int | None = None
    if table.incremental and previous is not None:
        since, why = incremental_since(ctx, table, previous, fingerprint)
        if since is None and why == NOTHING_CHANGED:
            record_build(ctx, name, fingerprint, rows=None, mode="unchanged", since=None)
            return TableResult("features", f"gold.{name}", status="skipped", detail=why)
        if since is None:
            log.info("  gold.%-26s full rebuild: %s", name, why)

    params: dict[str, Any] = dict(table.params)
    if table.incremental:
        params["since"] = FULL_BUILD_SINCE if since is None else micros_to_datetime(since)
    path = ctx.config.sql_path(table.sql)
    try:
        gold_df = ctx.spark.sql(ctx.lakehouse.resolve_sql(sql_text), args=params or None)
    except Exception as exc:
        raise ConfigError(f"{path}: {message_line(exc)}") from None
    # Written in one pass (no cache, no ranging pass: at SF10 a plain write is 59-65 s, cached + checked
    # first 69-76 s), then checked on the committed table, which only the key columns are read of; a check
    # that fails undoes the commit (the previous version restored, or a new table removed) before it raises.
    previous_version = ctx.lakehouse.version("gold", name)
    if since is None:
        written = ctx.lakehouse.write(gold_df, "gold", name, mode="overwrite", options={CHANGE_FEED: "true"})
        new_rows = int(written.get("numOutputRows", 0))
    else:
        new_rows = replace_since(ctx, name, table, gold_df, since, path)
    try:
        built = ctx.lakehouse.read("gold", name)
        if since is None:
            total = check_keys(built.select(*table.keys), name, table.keys)
        else:
            assert table.incremental is not None
            total = check_rebuilt_keys(built, name, table.keys, table.incremental.column, since)
        if table.grain:
            grain = TableRef.parse(table.grain)
            check_grain(name, table.grain, total, ctx.lakehouse.read(grain.layer, grain.table))
    except KeyNotUnique:
        ctx.lakehouse.undo_commit("gold", name, previous_version)
        raise
    result = TableResult(
        "features", f"gold.{name}", records_in=new_rows, records_out=new_rows, started=started,
        detail="full build" if since is None else f"incremental: rows from {micros_to_datetime(since):%Y-%m-%d %H:%M}",
    )
    result.inserted = result.records_out
    result.check_accounting()
    ctx.record(result)
    record_build(ctx, name, fingerprint, rows=total, mode="full" if since is None else "incremental", since=since)
    return result


NOTHING_CHANGED = "up to date (the inputs' new versions changed no rows)"


def incremental_since(
    ctx: RunContext, table: GoldTable, previous: dict[str, Any], fingerprint: dict[str, Any]
) -> tuple[int | None, str]:
    """The earliest changed time (microseconds since the epoch) over the inputs' change feeds since the last
    build, or None with the reason a full rebuild is needed (or `NOTHING_CHANGED`)."""
    assert table.incremental is not None
    for part in ("sql_sha256", "params", "incremental"):
        if previous.get(part) != fingerprint[part]:
            return None, f"its {part.replace('_sha256', '')} changed since the last build"
    earliest: list[int] = []
    for ref, version in fingerprint["tables"].items():
        before = previous["tables"].get(ref)
        if before == version:
            continue
        column = table.incremental.inputs.get(ref)
        if column is None:
            return None, f"{ref} changed and is not one of incremental.inputs"
        if before is None or version is None or version <= before:
            return None, f"{ref} is at version {version}, not after the last build's {before}"
        changed_table = TableRef.parse(ref)
        try:
            changed = ctx.lakehouse.changes(changed_table.layer, changed_table.table, before, version).agg(
                F.unix_micros(F.min(F.col(column))).alias("earliest"),
                F.count(F.lit(1)).alias("rows"),
                F.count(F.col(column)).alias("timed"),
            ).first()
        except Exception as exc:  # no change feed for those versions (enabled later, or vacuumed)
            if ctx.lakehouse.enable_change_feed(changed_table.layer, changed_table.table):
                log.info("  turned on the change feed of %s: later builds can be incremental", ref)
            reason = message_line(exc, 80)
            return None, f"{ref} has no change feed for versions {before + 1}-{version} ({reason})"
        assert changed is not None
        if changed["timed"] != changed["rows"]:
            return None, f"a changed row of {ref} has no {column}"
        if changed["earliest"] is not None:
            earliest.append(int(changed["earliest"]))
    return (min(earliest), "") if earliest else (None, NOTHING_CHANGED)


def replace_since(ctx: RunContext, name: str, table: GoldTable, new_df: DataFrame, since: int, path: Any) -> int:
    """Replace the rows at or after `since` with `new_df` in one commit; the number of rows written."""
    assert table.incremental is not None
    condition = f"`{table.incremental.column}` >= timestamp_micros({since})"
    try:
        written = ctx.lakehouse.write(new_df, "gold", name, mode="overwrite", options={"replaceWhere": condition})
    except AnalysisException as exc:
        if exc.getCondition() == "DELTA_REPLACE_WHERE_MISMATCH":
            raise ConfigError(
                f"{path}: returned rows with {table.incremental.column} before :since; an incremental SQL must "
                "return only the rows at or after :since"
            ) from None
        raise
    # Rows of rewritten files that were kept are counted as output too.
    return int(written.get("numOutputRows", 0)) - int(written.get("numCopiedRows", 0))


def record_build(
    ctx: RunContext, name: str, fingerprint: dict[str, Any], rows: int | None, mode: BuildMode, since: int | None
) -> None:
    ctx.ops.append("gold_builds", [{
        "table_name": name, "run_id": ctx.run_id, "inputs": json.dumps(fingerprint, sort_keys=True), "rows": rows,
        "table_version": ctx.lakehouse.version("gold", name), "mode": mode,
        "since": micros_to_datetime(since).replace(tzinfo=None) if since is not None else None, "built_at": now(),
    }])


def micros_to_datetime(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)

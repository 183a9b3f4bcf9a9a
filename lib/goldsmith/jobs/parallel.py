"""The tables of one stage side by side in one Spark application.

A small table's ingest or refine is mostly driver work (planning, Delta log reads and commits) and leaves the
cores idle; run beside a big table's scan, it costs almost nothing. Each table's jobs go to their own fair
scheduler pool (`spark.scheduler.mode=FAIR`), so a small table's few tasks do not queue behind a big table's
hundreds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from py4j.protocol import Py4JError, Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from goldsmith.errors import StageFailed, StorageUnavailable, message_line, storage_failure
from goldsmith.jobs.context import RunContext, log
from goldsmith.transforms.text import register_sql_functions

T = TypeVar("T")
R = TypeVar("R")

# At most this many tables at once (`GOLDSMITH_TABLES_IN_PARALLEL=1` runs them one by one).
DEFAULT_TABLES_IN_PARALLEL = 4


def tables_in_parallel() -> int:
    value = os.environ.get("GOLDSMITH_TABLES_IN_PARALLEL", "")
    return max(1, int(value)) if value.isdigit() else DEFAULT_TABLES_IN_PARALLEL


def for_each_table(
    ctx: RunContext, items: Sequence[tuple[str, T]], work: Callable[[RunContext, str, T], R], stage: str,
    layer: str | None, own_session: bool = False,
) -> list[R]:
    """`work(ctx, name, item)` for every item, in threads; results in the items' order.

    `layer`: the layer of every item's table, or None when the items' names are whole references.
    `own_session`: each table gets a session of its own (same application, same settings) for its temporary
    views and observed metrics. Every table runs to its end; then the first failure, in the items' order, is
    raised. A failure of Spark's (a task that failed every attempt) is raised as `StageFailed` naming the stage
    and the table, in one line.
    """
    workers = min(tables_in_parallel(), len(items))

    def named(table_ctx: RunContext, name: str, item: T) -> R:
        try:
            return work(table_ctx, name, item)
        except (PySparkException, Py4JJavaError) as exc:
            where = f"{layer}.{name}" if layer else name
            log.debug("stage %s, table %s failed", stage, where, exc_info=True)
            failed = storage_failure(exc)
            if failed is not None:
                raise StorageUnavailable(f"stage {stage} failed on {where}: storage {ctx.lakehouse.root} "
                                         f"failed: {failed}") from exc
            if not isinstance(exc, PySparkException):
                raise
            raise StageFailed(f"stage {stage} failed on {where}: {message_line(exc)}") from exc

    if workers <= 1:
        return [named(session_context(ctx) if own_session else ctx, name, item) for name, item in items]

    def call(name: str, item: T) -> R:
        table_ctx = session_context(ctx) if own_session else ctx
        table_ctx.spark.sparkContext.setLocalProperty("spark.scheduler.pool", name)
        try:
            return named(table_ctx, name, item)
        finally:
            table_ctx.spark.sparkContext.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="goldsmith-table") as pool:
        futures = [pool.submit(call, name, item) for name, item in items]
    results: list[R] = []
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
        results.append(future.result())
    return results


def session_context(ctx: RunContext) -> RunContext:
    """A copy of `ctx` on a new session of the same application: its own temporary views, the same settings,
    SQL functions and catalog, and the same results and ops log as `ctx`."""
    session = new_session(ctx.spark)
    lakehouse = dataclasses.replace(ctx.lakehouse, spark=session, _registered=ctx.lakehouse._registered)
    copy = dataclasses.replace(ctx, spark=session, lakehouse=lakehouse)  # the same results and pending lists
    copy.ops = ctx.ops  # one ops log (not an init field): its appends are serialised, its cache shared
    return copy


def new_session(spark: SparkSession) -> SparkSession:
    """A session of `spark`'s application with its settings, SQL functions and temporary views as they are now,
    its own from then on: a copy of the JVM session's state in one call (`cloneSession`). Copying the settings
    from Python instead was three calls per setting, ~60 ms per table on a small pipeline."""
    try:
        return type(spark)(spark.sparkContext, spark._jsparkSession.cloneSession())
    except Py4JError:  # a Spark without it: a new session, given the settings and functions one by one
        log.debug("cloneSession unavailable", exc_info=True)
    session = spark.newSession()
    for key, value in spark.conf.getAll.items():
        if session.conf.isModifiable(key) and session.conf.get(key, None) != value:
            session.conf.set(key, value)
    register_sql_functions(session)
    return session

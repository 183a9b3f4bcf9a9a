"""Spark task failures: a task that fails once and succeeds on its retry changes nothing in the result; a task
that fails every attempt stops the run with one line naming the stage and the table, and leaves the tables at
their previous versions. The test session allows a retry (`local[2,2]`, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from items_pipeline import GOOD, ITEMS_SQL, Items
from pyspark import TaskContext
from pyspark.sql import SparkSession

from goldsmith.errors import StageFailed
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.jobs import parallel
from goldsmith.jobs.pipeline import run_pipeline

STAGES = ["ingest", "refine"]


def with_udfs(monkeypatch: pytest.MonkeyPatch, marker: Path) -> None:
    """`flaky(x)`: fails in the first attempt of a task (and leaves `marker` to prove it did); `broken(x)`: fails
    in every attempt. Registered in each table's session, where the pipeline's SQL runs."""
    original = parallel.new_session

    def flaky(value: str) -> str:
        if TaskContext.get().attemptNumber() == 0:  # type: ignore[union-attr]
            marker.touch()
            raise RuntimeError("injected failure of a first attempt")
        return value

    def broken(value: str) -> str:
        raise RuntimeError("injected failure of every attempt")

    def new_session(spark: SparkSession) -> SparkSession:
        session = original(spark)
        session.udf.register("flaky", flaky)
        session.udf.register("broken", broken)
        return session

    monkeypatch.setattr(parallel, "new_session", new_session)


def silver(spark: SparkSession, items: Items) -> list[tuple]:
    df = spark.read.format("delta").load(str(items.lake / "silver/items"))
    return sorted((r["item_id"], r["name"], r["qty"]) for r in df.collect())


def test_a_task_retried_once_changes_nothing(spark: SparkSession, items: Items,
                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    items.write()
    items.land("a.csv", GOOD)
    marker = tmp_path / "failed-once"
    with_udfs(monkeypatch, marker)
    items.sql("items", ITEMS_SQL.replace("upper(name)", "flaky(upper(name))"))
    ctx = run_pipeline(items.load(), STAGES, spark)
    assert marker.exists()  # a task did fail
    # What GOOD gives without a failure (test_pipeline_stages runs it so): each row once.
    assert silver(spark, items) == [(1, "APPLE", 3), (2, "PEAR", 5), (3, "FIG", None)]
    assert [(r.records_in, r.records_out) for r in ctx.results] == [(3, 3), (3, 3)]


def test_a_task_failing_every_attempt_names_stage_and_table_and_changes_no_table(
    spark: SparkSession, items: Items, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    items.write()
    items.land("a.csv", GOOD)
    run_pipeline(items.load(), STAGES, spark)
    with_udfs(monkeypatch, tmp_path / "unused")
    items.sql("items", ITEMS_SQL.replace("upper(name)", "broken(upper(name))"))
    items.land("b.csv", "4,kiwi,2,2024-02-01T00:00:00Z\n")
    lakehouse = Lakehouse(spark, str(items.lake))
    tables = [("silver", "items"), ("silver", "items_quarantine"), ("ops", "refined_batches")]
    before = {t: lakehouse.version(*t) for t in tables}
    with pytest.raises(StageFailed) as failed:
        run_pipeline(items.load(), STAGES, spark)
    message = str(failed.value)
    assert message.startswith("stage refine failed on silver.items: ") and "\n" not in message
    assert message.endswith("a Python function failed: RuntimeError: injected failure of every attempt"), message
    assert {t: lakehouse.version(*t) for t in tables} == before

"""goldsmith watch: one application runs the pipeline at start and again after each change, once the change
held still for a poll; a failed run is reported and the next change is run.

The waits between polls are the test's hook: each one makes the next change (new landing files, broken SQL,
fixed SQL) or none, so the test knows exactly which poll sees what.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from handmade_flights import ETL, Handmade, add_changes, write_landing
from pyspark.sql import SparkSession

from goldsmith.config import load_pipeline
from goldsmith.jobs.watch import input_signature, watch


def test_watch_runs_at_start_and_after_each_change(
    spark: SparkSession, repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, handmade: Handmade,
) -> None:
    landing, lake, sql = tmp_path / "landing", tmp_path / "lake", tmp_path / "flight_features.sql"
    # From the shared hand-made lakehouse and its landing files (their times kept: the files it ingested): the
    # run at start finds nothing new (the same SQL text, so the same gold build) and changes no table.
    shutil.copytree(handmade.landing, landing)
    shutil.copytree(handmade.lake, lake)
    good_sql = (repo / "conf/pipelines/sql/flights/gold/flight_features.sql").read_text()
    sql.write_text(good_sql)

    def load():  # type: ignore[no-untyped-def]
        return load_pipeline(repo / "conf/pipelines/flights.yml", [
            f"storage.root={lake}", f"vars.landing={landing}", f"gold.flight_features.sql={sql}"])

    actions: list[Callable[[], object] | None] = [
        None,  # after the run at start: nothing changed, so no run
        lambda: add_changes(landing),  # new and re-delivered flights, a weather row
        None,  # the change held still: run 2 (incremental)
        lambda: sql.write_text("select * from silver.no_such_table"),
        None,  # the pipeline no longer loads: reported once, no run
        lambda: sql.write_text(  # loads (it reads the incremental inputs and :since), fails in Spark
            "select no_such_column from silver.flights, silver.weather where sched_dep_at >= :since"),
        None,  # run 3 fails on the SQL
        None,  # a failed run is not retried while nothing changes
        lambda: sql.write_text("-- fixed\n" + good_sql),
        None,  # run 4: the SQL changed, a full rebuild
    ]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        assert len(waits) <= len(actions), "a wait the test did not plan: a change was missed or run twice"
        action = actions[len(waits) - 1]
        if action is not None:
            action()

    assert watch(load, ETL, interval=0.5, max_runs=4, sleep=sleep) == 0
    assert waits == [0.5] * len(actions)  # every wait happened, no run between the waits planned above
    unloadable = [r for r in caplog.records if "no_such_table" in r.getMessage()]
    assert len(unloadable) == 1  # reported once, not at every poll

    log = spark.read.format("delta").load(str(lake / "ops" / "run_log")).orderBy("started_at").collect()
    # the hand-made build's run; the run at start changed nothing, so it wrote no row; then runs 2, 3 and 4
    assert [r["status"] for r in log] == ["ok", "ok", "failed", "ok"]
    assert "no_such_column" in log[2]["message"]
    builds = spark.read.format("delta").load(str(lake / "ops" / "gold_builds")).orderBy("built_at").collect()
    assert [b["mode"] for b in builds] == ["full", "incremental", "full"]  # the hand-made build, run 2, run 4
    gold = spark.read.format("delta").load(str(lake / "gold" / "flight_features"))
    # 6 flights, then 3 new ones and one re-delivered (an update, not a new row)
    assert gold.count() == 9
    assert {r["flight"] for r in gold.select("flight").collect()} == {1, 2, 3, 4, 5, 6, 8, 9, 10}


def test_the_signature_follows_landing_files_settings_and_sql(spark: SparkSession, repo: Path,
                                                              tmp_path: Path) -> None:
    landing, sql = tmp_path / "landing", tmp_path / "flight_features.sql"
    write_landing(landing)
    shutil.copy(repo / "conf/pipelines/sql/flights/gold/flight_features.sql", sql)

    def signature(*overrides: str) -> str:
        config = load_pipeline(repo / "conf/pipelines/flights.yml", [
            f"storage.root={tmp_path / 'lake'}", f"vars.landing={landing}", f"gold.flight_features.sql={sql}",
            *overrides])
        return input_signature(spark, config)

    first = signature()
    assert signature() == first  # nothing changed
    assert signature("gold.flight_features.params.delay_threshold_minutes=30") != first
    sql.write_text(sql.read_text() + "\n-- a comment\n")
    second = signature()
    assert second != first
    (landing / "planes" / "planes_2.csv").write_text("tailnum,year\nN9,2001\n")
    assert signature() != second


def test_watch_refuses_a_bad_pipeline_before_starting(repo: Path, tmp_path: Path) -> None:
    from goldsmith.errors import ConfigError

    def load():  # type: ignore[no-untyped-def]
        return load_pipeline(tmp_path / "missing.yml")

    with pytest.raises(ConfigError):
        watch(load, ETL, max_runs=1, sleep=lambda s: None)

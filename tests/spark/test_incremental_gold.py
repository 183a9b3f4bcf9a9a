"""Incremental gold builds: after new and changed rows, only the rows from the earliest change on are rebuilt,
and the table equals a full rebuild of the same inputs.

The expected table is computed by a full build into a second lakehouse from the same landing files, so the
test holds whatever the features are; which rows are rebuilt is worked out here from the changed rows' times.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from handmade_flights import ETL, Handmade, add_changes
from pyspark.sql import SparkSession

from goldsmith.config import load_pipeline
from goldsmith.jobs.context import RunContext
from goldsmith.jobs.pipeline import run_pipeline


def run(repo: Path, spark: SparkSession, lake: Path, landing: Path) -> RunContext:
    config = load_pipeline(repo / "conf/pipelines/flights.yml", [f"storage.root={lake}", f"vars.landing={landing}"])
    return run_pipeline(config, ETL, spark)


def gold_rows(spark: SparkSession, lake: Path) -> dict[str, dict[str, Any]]:
    df = spark.read.format("delta").load(str(lake / "gold" / "flight_features"))
    return {r["flight_id"]: r.asDict() for r in df.collect()}


def last_build(spark: SparkSession, lake: Path) -> dict[str, Any]:
    builds = spark.read.format("delta").load(str(lake / "ops" / "gold_builds"))
    row = builds.orderBy("built_at", ascending=False).first()
    assert row is not None
    return row.asDict()


@pytest.fixture(scope="module")
def lakes(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, repo: Path, handmade: Handmade,
          ) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("incremental")
    landing = tmp / "landing"
    # The first build is the shared hand-made lakehouse's: copied with its landing files (modification times
    # kept, so they are the files it ingested), then changed here.
    shutil.copytree(handmade.landing, landing)
    shutil.copytree(handmade.lake, tmp / "lake")
    first = last_build(spark, tmp / "lake")
    gold_path = str(tmp / "lake" / "gold" / "flight_features")
    before = {r["flight"] for r in spark.read.format("delta").load(gold_path).select("flight").collect()}
    add_changes(landing)
    ctx = run(repo, spark, tmp / "lake", landing)
    second = last_build(spark, tmp / "lake")
    commit = DeltaTable.forPath(spark, gold_path).history(1).first()
    assert commit is not None
    incremental = gold_rows(spark, tmp / "lake")
    run(repo, spark, tmp / "full", landing)  # the same landing files, built from nothing
    return {"first": first, "second": second, "ctx": ctx, "commit": commit.asDict(), "before": before,
            "incremental": incremental, "full": gold_rows(spark, tmp / "full"), "tmp": tmp, "landing": landing}


def test_first_build_is_full(lakes: dict[str, Any]) -> None:
    assert lakes["first"]["mode"] == "full" and lakes["first"]["since"] is None
    assert lakes["before"] == {1, 2, 3, 4, 5, 6}


def test_changes_rebuild_from_the_earliest_changed_time(lakes: dict[str, Any]) -> None:
    assert lakes["second"]["mode"] == "incremental"
    assert lakes["second"]["since"] == datetime(2013, 1, 1, 16, 0)  # the new weather observation
    gold = next(r for r in lakes["ctx"].results if r.table == "gold.flight_features")
    # At or after 16:00: flights 2 (17:00), 6 (18:00), 4 (23:00) again, and the new 9, 8 and 10.
    assert (gold.records_in, gold.records_out) == (6, 6)
    assert "incremental" in gold.detail
    metrics = lakes["commit"]["operationMetrics"]
    assert int(metrics["numDeletedRows"]) == 3  # 2, 6 and 4; flights 1, 3 and 5 (before 16:00) were kept
    assert lakes["second"]["rows"] == 9


def test_incremental_table_equals_a_full_rebuild(lakes: dict[str, Any]) -> None:
    assert len(lakes["full"]) == 9
    assert lakes["incremental"] == lakes["full"]


def test_unchanged_inputs_skip_and_other_inputs_rebuild_in_full(
    lakes: dict[str, Any], spark: SparkSession, repo: Path
) -> None:
    tmp, landing = lakes["tmp"], lakes["landing"]
    ctx = run(repo, spark, tmp / "lake", landing)
    gold = next(r for r in ctx.results if r.table == "gold.flight_features")
    assert gold.status == "skipped"
    # silver.planes is not one of incremental.inputs: a plane's year can change any flight's age.
    (landing / "planes" / "planes_2.csv").write_text(
        "tailnum,year,type,manufacturer,model,engines,seats,speed,engine\nN9,2005,Fixed wing,ACME,A1,2,100,NA,Jet\n"
    )
    run(repo, spark, tmp / "lake", landing)
    assert last_build(spark, tmp / "lake")["mode"] == "full"
    run(repo, spark, tmp / "full2", landing)
    assert gold_rows(spark, tmp / "lake") == gold_rows(spark, tmp / "full2")


@pytest.mark.parametrize("broadcast_up_to", [10**6, 0], ids=["broadcast", "shuffled"])
def test_rebuilt_keys_are_checked_among_themselves_and_against_the_kept_rows(
    spark: SparkSession, broadcast_up_to: int
) -> None:
    from pyspark.sql import functions as F

    from goldsmith.errors import KeyNotUnique
    from goldsmith.quality.keys import check_rebuilt_keys

    def table(*rows: tuple[str | None, int | None]) -> Any:
        df = spark.createDataFrame(list(rows), "k string, hour int")
        return df.select("k", F.expr("timestamp_seconds(hour * 3600)").alias("at"))

    since = 2 * 3600 * 10**6  # rows at hour 2 and later were rebuilt
    four = table(("a", 0), ("b", 1), ("c", 2), ("d", 3))
    assert check_rebuilt_keys(four, "t", ["k"], "at", since, broadcast_up_to) == 4
    # A row with no time stays with the kept rows (replaceWhere keeps it): it is unique, so no clash.
    assert check_rebuilt_keys(table(("a", None), ("c", 2)), "t", ["k"], "at", since, broadcast_up_to) == 2
    with pytest.raises(KeyNotUnique, match=r"gold.t: 1 kept row\(s\) before :since have the key \(k\) of a rebuilt"):
        check_rebuilt_keys(table(("a", 0), ("b", 1), ("a", 3)), "t", ["k"], "at", since, broadcast_up_to)
    with pytest.raises(KeyNotUnique, match=r"keys \(k\) repeat among the rebuilt rows: 3 rows, 2 distinct keys"):
        check_rebuilt_keys(table(("a", 0), ("c", 2), ("d", 3), ("c", 4)), "t", ["k"], "at", since, broadcast_up_to)
    # Null keys match each other, as in the full build's distinct count.
    with pytest.raises(KeyNotUnique, match="1 kept row"):
        check_rebuilt_keys(table((None, 0), (None, 2)), "t", ["k"], "at", since, broadcast_up_to)

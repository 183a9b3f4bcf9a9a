"""The folder is the catalog: attaching registers what is there, skips what is being created."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from goldsmith.io.lakehouse import Lakehouse


def test_attach_registers_tables_and_skips_one_being_created(spark: SparkSession, tmp_path: Path) -> None:
    spark.range(3).write.format("delta").save(str(tmp_path / "silver" / "done"))
    (tmp_path / "silver" / "half_made" / "_delta_log").mkdir(parents=True)  # a writer's first commit pending
    (tmp_path / "gold" / "not_delta").mkdir(parents=True)
    assert Lakehouse(spark, str(tmp_path)).attach() == ["silver.done"]
    assert spark.sql("select count(*) from silver.done").first()[0] == 3


def test_attaching_another_root_repoints_names_and_keeps_data(spark: SparkSession, tmp_path: Path) -> None:
    for name, rows in (("a", 2), ("b", 5)):
        spark.range(rows).write.format("delta").save(str(tmp_path / name / "gold" / "t"))
    Lakehouse(spark, str(tmp_path / "a")).attach()
    assert spark.sql("select count(*) from gold.t").first()[0] == 2
    Lakehouse(spark, str(tmp_path / "b")).attach()
    assert spark.sql("select count(*) from gold.t").first()[0] == 5
    assert spark.read.format("delta").load(str(tmp_path / "a" / "gold" / "t")).count() == 2


def test_version_and_commit_metrics_read_from_the_log_match_delta_history(
    spark: SparkSession, tmp_path: Path
) -> None:
    from delta.tables import DeltaTable

    lakehouse = Lakehouse(spark, str(tmp_path))
    assert lakehouse.version("silver", "t") is None and lakehouse.last_commit_metrics("silver", "t") == {}
    assert lakehouse.write(spark.range(7), "silver", "t")["numOutputRows"] == "7"
    lakehouse.write(spark.range(5, 12), "silver", "t", mode="overwrite")
    (DeltaTable.forPath(spark, lakehouse.path("silver", "t")).alias("t")
     .merge(spark.range(10, 14).alias("s"), "t.id = s.id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    history = DeltaTable.forPath(spark, lakehouse.path("silver", "t")).history(1).first()
    assert lakehouse.version("silver", "t") == history["version"] == 2
    metrics = lakehouse.last_commit_metrics("silver", "t")
    assert metrics == dict(history["operationMetrics"])
    assert (metrics["numTargetRowsInserted"], metrics["numTargetRowsUpdated"]) == ("2", "2")

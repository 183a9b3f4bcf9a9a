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


def test_ops_rows_of_every_column_kind_are_appended_as_given_in_one_commit(
    spark: SparkSession, tmp_path: Path
) -> None:
    import math
    from datetime import datetime, timedelta, timezone

    from goldsmith.io.ops import OpsLog

    lakehouse = Lakehouse(spark, str(tmp_path))
    at = datetime(2024, 5, 6, 7, 8, 9, 123456)
    first = {"run_id": 'r "1"\né', "rows": 5, "nulls": 0, "mean": math.nan, "stddev": math.inf,
             "min_value": True, "max_value": 7, "quantiles": {"0.5": 1, "0.9": -math.inf},
             "top_values": [{"value": "a", "count": 3}], "histogram": [], "profiled_at": at}
    rest = [{"run_id": f"r{i}", "column_name": f"c{i}", "mean": i / 3} for i in range(40)]
    rest[0]["profiled_at"] = datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))  # 07:08:09 UTC
    OpsLog(lakehouse).append("profiles", [first, *rest])
    assert lakehouse.version("ops", "profiles") == 0
    rows = {r["run_id"]: r for r in lakehouse.read("ops", "profiles").collect()}
    assert len(rows) == 41
    got = rows['r "1"\né']
    assert (got["rows"], got["nulls"], got["min_value"], got["max_value"]) == (5, 0, "true", "7")
    assert math.isnan(got["mean"]) and got["stddev"] == math.inf
    assert got["quantiles"] == {"0.5": 1.0, "0.9": -math.inf}
    assert [tuple(v) for v in got["top_values"]] == [("a", 3)] and got["histogram"] == []
    assert got["profiled_at"] == at  # naive UTC in a UTC session, to the microsecond
    assert rows["r0"]["profiled_at"] == datetime(2024, 5, 6, 7, 8, 9)
    assert rows["r39"]["mean"] == 13.0 and rows["r39"]["column_name"] == "c39" and rows["r39"]["rows"] is None

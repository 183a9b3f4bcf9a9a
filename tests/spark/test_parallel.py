"""A stage's tables run side by side, each in a session of its own (goldsmith.jobs.parallel)."""

from __future__ import annotations

from pyspark.sql import SparkSession

from goldsmith.jobs.parallel import new_session


def test_a_table_session_starts_with_the_stage_session_state_then_keeps_its_own(spark: SparkSession) -> None:
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "3")  # set at run time, not at the session's start
    spark.range(2).createOrReplaceTempView("stage_view")
    try:
        table = new_session(spark)
        assert table is not spark and not table._jsparkSession.equals(spark._jsparkSession)
        assert table.sparkContext is spark.sparkContext
        assert table.conf.get("spark.sql.shuffle.partitions") == "3"
        assert table.sql("select html_unescape('a &amp; b') as t").first()["t"] == "a & b"  # goldsmith's function
        assert table.table("stage_view").count() == 2
        table.range(5).createOrReplaceTempView("table_view")
        table.conf.set("spark.sql.shuffle.partitions", "5")
        assert not spark.catalog.tableExists("table_view")
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
        spark.catalog.dropTempView("stage_view")

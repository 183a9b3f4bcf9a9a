"""ingest -> refine -> features on the small items pipeline (items_pipeline.py): idempotence, increments,
malformed records, duplicates, expectations and record accounting.

The first four tests continue from one lakehouse in the order they are written (first run, re-run, a later file,
changed gold SQL, a gold build that fails its key check); the others start from nothing."""

from __future__ import annotations

import pytest
from items_pipeline import GOOD, Items
from pyspark.sql import SparkSession

from goldsmith.config import load_pipeline
from goldsmith.errors import AccountingError, ExpectationFailed, KeyNotUnique, StageFailed
from goldsmith.io.lakehouse import Lakehouse
from goldsmith.jobs.pipeline import run_pipeline


def count(spark: SparkSession, table: str) -> int:
    return spark.sql(f"select count(*) as n from {table}").first()["n"]  # type: ignore[index]


def versions(lakehouse: Lakehouse) -> dict[str, int | None]:
    return {t: lakehouse.version(*t.split(".")) for t in ("bronze.items", "silver.items", "gold.totals")}


@pytest.fixture(scope="module")
def chained(tmp_path_factory: pytest.TempPathFactory) -> Items:
    """One items lakehouse the first tests of this module continue from."""
    return Items(tmp_path_factory.mktemp("chained"))


def test_first_run_then_rerun_changes_nothing(spark: SparkSession, chained: Items) -> None:
    config = chained.write()
    chained.land("a.csv", GOOD)
    ctx = run_pipeline(config, spark=spark)
    assert count(spark, "bronze.items") == 3
    assert count(spark, "silver.items") == 3
    assert spark.sql("select total_qty from gold.totals where name = 'PEAR'").first()[0] == 5
    lineage = spark.sql(
        "select count(*) from bronze.items where _source_file like '%a.csv' and _batch_id is not null "
        "and _ingested_at is not null"
    ).first()[0]
    assert lineage == 3
    before = versions(ctx.lakehouse)

    again = run_pipeline(config, spark=spark)
    assert versions(again.lakehouse) == before
    # ingest, refine and features of the one table each, then profile of silver.items and gold.totals
    assert [(r.stage, r.status) for r in again.results] == [
        ("ingest", "skipped"), ("refine", "skipped"), ("features", "skipped"), ("profile", "skipped"),
        ("profile", "skipped"),
    ]
    assert count(spark, "bronze.items") == 3
    assert count(spark, "ops.ingested_files") == 1


def test_incremental_file_updates_and_inserts(spark: SparkSession, chained: Items) -> None:
    chained.land("b.csv", "2,pear,9,2024-02-01T00:00:00Z\n4,kiwi,1,2024-02-01T00:00:00Z\n")
    ctx = run_pipeline(chained.load(), ["ingest", "refine", "features"], spark=spark)
    refine = next(r for r in ctx.results if r.stage == "refine")
    assert (refine.records_in, refine.inserted, refine.updated) == (2, 1, 1)
    assert count(spark, "bronze.items") == 5
    assert count(spark, "silver.items") == 4
    assert spark.sql("select qty from silver.items where item_id = 2").first()[0] == 9
    assert spark.sql("select total_qty from gold.totals where name = 'PEAR'").first()[0] == 9


def test_gold_is_rebuilt_when_its_sql_changes(spark: SparkSession, chained: Items) -> None:
    chained.sql("totals", "select name, sum(qty) * 10 as total_qty, count(*) as items from silver.items group by name")
    ctx = run_pipeline(chained.load(), spark=spark, stages=["features"])
    assert [r.status for r in ctx.results] == ["ok"]
    assert spark.sql("select total_qty from gold.totals where name = 'PEAR'").first()[0] == 90


def test_gold_keys_that_repeat_undo_the_build(spark: SparkSession, chained: Items) -> None:
    lakehouse = Lakehouse(spark, str(chained.lake))
    good_version = lakehouse.version("gold", "totals")
    assert good_version is not None
    good = sorted(tuple(r) for r in lakehouse.read("gold", "totals").select("name", "total_qty").collect())
    # Every item twice: each name repeats, so the key check on the written table fails.
    chained.sql("totals", "select name, qty as total_qty, 1 as items from silver.items union all "
                          "select name, qty as total_qty, 1 as items from silver.items")
    with pytest.raises(KeyNotUnique, match=r"gold.totals: keys \(name\) repeat: 8 rows, 4 distinct keys.*undone"):
        run_pipeline(chained.load(), spark=spark, stages=["features"])
    assert lakehouse.version("gold", "totals") == good_version + 2  # the bad overwrite, then its restore
    assert sorted(tuple(r) for r in lakehouse.read("gold", "totals").select("name", "total_qty").collect()) == good


def test_catalog_mode_writes_and_reads_tables_by_catalog_name(spark: SparkSession, items: Items) -> None:
    # The local session catalog stands in for Unity Catalog: `spark_catalog.t_<layer>` are its schemas, placed
    # under the test's folder; the pipeline's SQL still says `silver.items`.
    items.write()
    config = load_pipeline(items.tmp / "mini.yml", ["storage.catalog=spark_catalog", "storage.schema_prefix=t_"])
    layers = ("bronze", "silver", "gold", "ops")
    for layer in layers:
        spark.sql(f"create schema if not exists spark_catalog.t_{layer} location '{items.tmp / 'uc' / layer}'")
    try:
        items.land("a.csv", GOOD)
        first = run_pipeline(config, ["ingest", "refine", "features"], spark=spark)
        assert first.lakehouse.location("gold", "totals") == "spark_catalog.t_gold.totals"
        assert count(spark, "spark_catalog.t_bronze.items") == 3
        assert count(spark, "spark_catalog.t_silver.items") == 3
        got = {r["name"]: r["total_qty"] for r in spark.table("spark_catalog.t_gold.totals").collect()}
        assert got == {"APPLE": 3, "PEAR": 5, "FIG": None}
        assert count(spark, "spark_catalog.t_ops.ingested_files") == 1
        assert not (items.lake / "silver").exists()  # nothing written by path
        assert (items.tmp / "uc" / "silver" / "items" / "_delta_log").is_dir()

        items.land("b.csv", "2,pear,9,2024-02-01T00:00:00Z\n")
        second = run_pipeline(config, ["ingest", "refine", "features"], spark=spark)
        refine = next(r for r in second.results if r.stage == "refine")
        assert (refine.records_in, refine.inserted, refine.updated) == (1, 0, 1)  # a MERGE by name
        assert spark.sql("select total_qty from spark_catalog.t_gold.totals where name = 'PEAR'").first()[0] == 9
        assert second.lakehouse.version("silver", "items") == 1
        first_version = second.lakehouse.read("silver", "items", version=0).where("item_id = 2").first()
        assert first_version is not None and first_version["qty"] == 5

        third = run_pipeline(config, ["ingest", "refine", "features"], spark=spark)
        assert not third.changed
    finally:
        for layer in layers:
            spark.sql(f"drop schema if exists spark_catalog.t_{layer} cascade")


def test_duplicates_in_a_batch_keep_the_latest(spark: SparkSession, items: Items) -> None:
    config = items.write()
    items.land(
        "a.csv",
        "1,old,1,2024-01-01T00:00:00Z\n1,new,2,2024-03-01T00:00:00Z\n1,mid,3,2024-02-01T00:00:00Z\n",
    )
    ctx = run_pipeline(config, spark=spark, stages=["ingest", "refine"])
    refine = next(r for r in ctx.results if r.stage == "refine")
    assert (refine.records_in, refine.records_out, refine.duplicates, refine.quarantined) == (3, 1, 2, 0)
    assert spark.sql("select name from silver.items").first()[0] == "NEW"
    metrics = spark.sql(
        "select records_in, records_out, quarantined, duplicates from ops.quality_metrics "
        "where table_name = 'silver.items'"
    ).first()
    assert tuple(metrics) == (3, 1, 0, 2)


def test_malformed_records_are_quarantined_with_reasons(spark: SparkSession, items: Items) -> None:
    config = items.write()
    body = (
        b"1,apple,3,2024-01-01T00:00:00Z\n"
        b"2,pear,5\n"  # too few fields
        b"3,fig,1,2024-01-01T00:00:00Z,extra\n"  # too many fields
        b"4,kiwi,many,2024-01-01T00:00:00Z\n"  # not an int
        b'5,"plum,1,2024-01-01T00:00:00Z\n'  # quote never closed
        b"6,l\xffme,2,2024-01-01T00:00:00Z\n"  # invalid UTF-8
        b"7,grape,2,2024-01-01T00:00:00Z\n"
    )
    items.land("a.csv", body)
    ctx = run_pipeline(config, spark=spark, stages=["ingest", "refine"])
    ingest = next(r for r in ctx.results if r.stage == "ingest")
    assert (ingest.records_in, ingest.records_out, ingest.quarantined) == (7, 2, 5)
    reasons = sorted(r["reason"] for r in spark.sql("select reason from bronze.items_quarantine").collect())
    assert reasons == sorted([
        "wrong field count: expected 4, found 3",
        "wrong field count: expected 4, found 5",
        "unparsable value: qty=many (not int)",
        "broken quoting: a quote is opened and never closed",
        "invalid UTF-8 byte sequence in a text field",
    ])
    raw = {r["raw_record"] for r in spark.sql("select raw_record from bronze.items_quarantine").collect()}
    assert "2,pear,5" in raw and "4,kiwi,many,2024-01-01T00:00:00Z" in raw
    assert sorted(r[0] for r in spark.sql("select item_id from silver.items").collect()) == [1, 7]


def test_drop_expectation_quarantines_with_rule_name(spark: SparkSession, items: Items) -> None:
    config = items.write()
    items.land(
        "a.csv",
        "1,apple,-3,2024-01-01T00:00:00Z\n2,pear,5,2024-01-01T00:00:00Z\n,nokey,1,2024-01-01T00:00:00Z\n",
    )
    ctx = run_pipeline(config, spark=spark, stages=["ingest", "refine"])
    refine = next(r for r in ctx.results if r.stage == "refine")
    assert (refine.records_in, refine.records_out, refine.quarantined) == (3, 1, 2)
    assert refine.rule_violations["qty_not_negative"] == 1
    assert refine.rule_violations["keys_not_null"] == 1
    rules = sorted(r["rule"] for r in spark.sql("select rule from silver.items_quarantine").collect())
    assert rules == ["keys_not_null", "qty_not_negative"]


def test_fail_expectation_leaves_the_table_unchanged(spark: SparkSession, items: Items) -> None:
    config = items.write(name_action="fail")
    items.land("a.csv", GOOD)
    ctx = run_pipeline(config, spark=spark, stages=["ingest", "refine"])
    silver_version = ctx.lakehouse.version("silver", "items")
    items.land("b.csv", "8,NA,1,2024-01-02T00:00:00Z\n9,ok,1,2024-01-02T00:00:00Z\n")
    with pytest.raises(ExpectationFailed, match=r"expectation 'has_name' \(action=fail\) rejected 1 rows"):
        run_pipeline(config, spark=spark, stages=["ingest", "refine"])
    assert ctx.lakehouse.version("silver", "items") == silver_version
    assert count(spark, "silver.items") == 3
    assert spark.sql("select action from silver.items_quarantine").first()[0] == "fail"
    status = spark.sql("select status from ops.run_log order by started_at desc limit 1").first()[0]
    assert status == "failed"


def test_a_silver_sql_that_filters_rows_breaks_accounting(spark: SparkSession, items: Items) -> None:
    items.write()
    items.sql("items", "select * from bronze_batch where qty > 3")
    items.land("a.csv", GOOD)
    with pytest.raises(AccountingError, match="returned 1 rows for 3 bronze rows"):
        run_pipeline(items.load(), spark=spark, stages=["ingest", "refine"])
    # The first batch's rows were written in the same pass that counted them: the commit was undone.
    assert not (items.lake / "silver" / "items").exists()
    items.write()  # the SQL fixed: the same batch is refined again
    ctx = run_pipeline(items.load(), spark=spark, stages=["refine"])
    assert (ctx.results[0].records_in, ctx.results[0].records_out) == (3, 3)


def test_a_fail_expectation_on_the_first_batch_creates_no_table(spark: SparkSession, items: Items) -> None:
    config = items.write(name_action="fail")
    items.land("a.csv", GOOD + "8,NA,1,2024-01-02T00:00:00Z\n")
    with pytest.raises(ExpectationFailed, match=r"rejected 1 rows.*stays at its previous state \(not created\)"):
        run_pipeline(config, spark=spark, stages=["ingest", "refine"])
    assert not (items.lake / "silver" / "items").exists()
    assert not spark.catalog.tableExists("silver.items")
    rows = spark.sql("select action, rule, raw_record from silver.items_quarantine").collect()
    assert [(r["action"], r["rule"]) for r in rows] == [("fail", "has_name")] and '"item_id":8' in rows[0][2]


def test_refine_takes_the_bronze_row_count_ingest_recorded(spark: SparkSession, items: Items) -> None:
    config = items.write()
    items.land("a.csv", GOOD)
    items.land("b.csv", "4,kiwi,1,2024-01-02T00:00:00Z\n")
    run_pipeline(config, spark=spark, stages=["ingest"])
    lakehouse = Lakehouse(spark, str(items.lake))
    files = lakehouse.read("ops", "ingested_files").select("path", "batch_id", "batch_rows").collect()
    per_batch = {r["batch_id"]: r["batch_rows"] for r in files}
    bronze = {r["_batch_id"]: r["n"] for r in
              lakehouse.read("bronze", "items").groupBy("_batch_id").count().withColumnRenamed("count", "n").collect()}
    assert len(files) == 2 and per_batch == bronze == {next(iter(bronze)): 4}  # one batch of two files
    # A row deleted from bronze after ingest: the recorded count no longer holds; refine counts bronze instead.
    lakehouse.delta_table("bronze", "items").delete("item_id = 4")
    ctx = run_pipeline(config, spark=spark, stages=["refine"])
    assert (ctx.results[0].records_in, ctx.results[0].records_out) == (3, 3)
    assert count(spark, "silver.items") == 3


def test_refine_counts_bronze_for_batches_ingested_without_a_count(spark: SparkSession, items: Items) -> None:
    config = items.write()
    items.land("a.csv", GOOD)
    run_pipeline(config, spark=spark, stages=["ingest"])
    lakehouse = Lakehouse(spark, str(items.lake))
    older = lakehouse.read("ops", "ingested_files").drop("batch_rows")  # as an older goldsmith wrote it
    lakehouse.write(older.localCheckpoint(), "ops", "ingested_files", mode="overwrite", metrics=False)
    ctx = run_pipeline(config, spark=spark, stages=["refine"])
    assert (ctx.results[0].records_in, ctx.results[0].records_out) == (3, 3)
    items.sql("items", "select * from bronze_batch where qty > 3")
    items.land("b.csv", "5,plum,1,2024-01-03T00:00:00Z\n6,lime,9,2024-01-03T00:00:00Z\n")
    with pytest.raises(AccountingError, match="returned 1 rows for 2 bronze rows"):
        run_pipeline(items.load(), spark=spark, stages=["ingest", "refine"])


def test_a_bad_cast_in_sql_is_one_clear_stage_error(spark: SparkSession, items: Items) -> None:
    items.write()
    items.sql("items", "select *, cast(name as int) as n from bronze_batch")
    items.land("a.csv", GOOD)
    with pytest.raises(StageFailed, match=r"stage refine failed on silver.items: .*CAST_INVALID_INPUT"):
        run_pipeline(items.load(), spark=spark, stages=["ingest", "refine"])


def test_a_first_gold_build_that_fails_its_check_leaves_no_table(spark: SparkSession, items: Items) -> None:
    items.write()
    items.sql("totals", "select name, qty as total_qty, 1 as items from silver.items")
    items.land("a.csv", GOOD + "4,apple,1,2024-01-01T00:00:00Z\n")  # APPLE twice
    with pytest.raises(KeyNotUnique, match=r"keys \(name\) repeat: 4 rows, 3 distinct keys"):
        run_pipeline(items.load(), spark=spark)
    assert not (items.lake / "gold" / "totals").exists()
    assert not spark.catalog.tableExists("gold.totals")

"""Landing files that break their contract: a reordered or wrong header, no records, only malformed records,
compressed data, a huge field, a SQL typo. Each: the good records of other files are kept, the bad file is
quarantined or reported in one line naming it, the pipeline is not blocked, and a re-run adds nothing."""

from __future__ import annotations

import gzip
import logging
import shutil
import zipfile
from pathlib import Path

import pytest
from items_pipeline import GOOD, HEADER, Items
from pyspark.sql import SparkSession

from goldsmith.config import load_pipeline
from goldsmith.errors import ConfigError
from goldsmith.jobs.pipeline import run_pipeline

STAGES = ["ingest", "refine"]


def rows(spark: SparkSession, lake: Path, table: str) -> list[dict]:
    return [r.asDict() for r in spark.read.format("delta").load(str(lake / table)).collect()]


def landed(items: Items, name: str, data: bytes) -> None:
    (items.tmp / "landing" / "items" / name).write_bytes(data)


@pytest.fixture
def started(spark: SparkSession, items: Items) -> Items:
    """The items pipeline with a good file, already run once."""
    items.write()
    items.land("a.csv", GOOD)
    run_pipeline(items.load(), STAGES, spark)
    return items


def test_a_reordered_header_is_read_by_name(spark: SparkSession, started: Items) -> None:
    landed(started, "b.csv", b"updated_at,qty,name,item_id\n2024-03-01T00:00:00Z,11,quince,7\n")
    ctx = run_pipeline(started.load(), STAGES, spark)
    quince = [r for r in rows(spark, started.lake, "silver/items") if r["item_id"] == 7]
    assert [(r["name"], r["qty"]) for r in quince] == [("QUINCE", 11)]
    assert "1 with reordered columns, read by name" in ctx.results[0].detail


def test_a_header_that_does_not_fit_quarantines_the_file_whole(
    spark: SparkSession, started: Items, caplog: pytest.LogCaptureFixture
) -> None:
    landed(started, "b.csv", b"item_id,title,qty,updated_at\n8,melon,1,2024-03-01T00:00:00Z\n"
                             b"9,grape,2,2024-03-01T00:00:00Z\n")
    landed(started, "c.csv", HEADER.encode() + b"10,date,4,2024-03-01T00:00:00Z\n")
    with caplog.at_level(logging.WARNING, logger="goldsmith"):
        run_pipeline(started.load(), STAGES, spark)
    quarantine = rows(spark, started.lake, "bronze/items_quarantine")
    assert sorted(r["raw_record"] for r in quarantine) == ["8,melon,1,2024-03-01T00:00:00Z",
                                                            "9,grape,2,2024-03-01T00:00:00Z"]
    assert {r["reason"] for r in quarantine} == {
        "the header does not match sources.items.schema: missing name; unexpected title"}
    assert "b.csv: quarantined whole" in caplog.text
    assert 10 in {r["item_id"] for r in rows(spark, started.lake, "silver/items")}  # the good file is kept
    before = len(quarantine)
    ctx = run_pipeline(started.load(), STAGES, spark)
    assert all(r.status == "skipped" for r in ctx.results)
    assert len(rows(spark, started.lake, "bronze/items_quarantine")) == before


@pytest.mark.parametrize("case,data,quarantined", [
    ("empty", b"", 0),
    ("header_only", HEADER.encode(), 0),
    ("all_malformed", HEADER.encode() + b"1,2\n3\n", 2),
    ("gzip_named_csv", gzip.compress(HEADER.encode() + GOOD.encode()), 1),
])
def test_a_file_without_good_records_is_recorded_once(
    spark: SparkSession, started: Items, case: str, data: bytes, quarantined: int
) -> None:
    landed(started, f"{case}.csv", data)
    first = run_pipeline(started.load(), STAGES, spark)
    ingest = first.results[0]
    assert (ingest.records_out, ingest.quarantined) == (0, quarantined)
    files = rows(spark, started.lake, "ops/ingested_files")
    assert sorted(Path(r["path"]).name for r in files) == sorted(["a.csv", f"{case}.csv"])
    assert [r["batch_rows"] for r in files if r["path"].endswith(f"{case}.csv")] == [0]
    reasons = [r["reason"] for r in rows(spark, started.lake, "bronze/items_quarantine")]
    if case == "gzip_named_csv":
        assert reasons == ["the file holds gzip-compressed data in a file whose name does not end in .gz"]
    again = run_pipeline(started.load(), STAGES, spark)  # not blocked, and nothing added
    assert all(r.status == "skipped" for r in again.results)
    assert len(rows(spark, started.lake, "bronze/items_quarantine")) == quarantined


def test_compressed_files_are_read_or_reported(
    spark: SparkSession, started: Items, caplog: pytest.LogCaptureFixture
) -> None:
    landed(started, "b.csv.gz", gzip.compress(HEADER.encode() + b"11,cherry,6,2024-03-01T00:00:00Z\n"))
    archive = started.tmp / "landing" / "items" / "c.csv.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("c.csv", HEADER + "12,lemon,1,2024-03-01T00:00:00Z\n")
    with caplog.at_level(logging.INFO, logger="goldsmith"):
        run_pipeline(started.load(), STAGES, spark)
    assert 11 in {r["item_id"] for r in rows(spark, started.lake, "silver/items")}
    assert "1 file(s) compressed in a format Spark does not read, not ingested" in caplog.text
    assert "c.csv.zip" in caplog.text


def test_a_huge_field_keeps_its_data_but_not_in_the_reason(spark: SparkSession, started: Items) -> None:
    huge = "9" * 200_000
    landed(started, "b.csv", (HEADER + f"{huge},big,1,2024-03-01T00:00:00Z\n").encode())
    run_pipeline(started.load(), STAGES, spark)
    (bad,) = rows(spark, started.lake, "bronze/items_quarantine")
    assert len(bad["raw_record"]) > 200_000
    assert len(bad["reason"]) <= 1100 and bad["reason"].startswith("unparsable value: item_id=999")


def test_a_sql_typo_stops_the_run_before_any_stage(spark: SparkSession, items: Items) -> None:
    items.write()
    items.land("a.csv", GOOD)
    items.sql("items", "select item_id,, name from bronze_batch")
    with pytest.raises(ConfigError) as error:
        run_pipeline(items.load(), STAGES, spark)
    message = str(error.value)
    assert "items.sql" in message and "Syntax error" in message, message
    assert not message.rstrip().endswith(":")
    assert not (items.lake / "bronze").exists()


def test_a_moved_lakehouse_and_landing_reached_by_another_path_ingest_nothing_again(
    spark: SparkSession, started: Items
) -> None:
    moved = started.tmp.parent / (started.tmp.name + "-moved")
    shutil.move(started.tmp, moved)  # a rename keeps the files' modification times
    elsewhere = moved.parent / (moved.name + "-link")
    elsewhere.symlink_to(moved / "landing", target_is_directory=True)
    config = load_pipeline(moved / "mini.yml", [f"storage.root={moved / 'lake'}",
                                                f"sources.items.path=file://{elsewhere}/items"])
    ctx = run_pipeline(config, STAGES, spark)
    assert [r.status for r in ctx.results] == ["skipped", "skipped"], [r.detail for r in ctx.results]
    assert len(rows(spark, moved / "lake", "bronze/items")) == 3
